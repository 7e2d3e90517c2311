package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/filter"
	"github.com/kafka-connector/kafka-connector/gateway"
)

// partitionWorker delivers one claimed partition of one trigger: it gathers
// messages into batches in offset order, invokes the function with each
// batch until it succeeds, and only then marks the batch's offsets for
// commit. Sarama runs one per claim in its own goroutine; nothing in it is
// shared with another partition.
type partitionWorker struct {
	t     *trigger
	sess  sarama.ConsumerGroupSession
	claim sarama.ConsumerGroupClaim
	// ctx aborts an invocation in flight: it ends when the trigger is
	// removed or the shutdown grace period is over. The session's context
	// ending (revocation, shutdown) only stops the worker between attempts,
	// so that an invocation in flight can finish and be committed.
	ctx     context.Context
	log     *slog.Logger
	metrics *partitionMetrics
	state   *partitionState
	meta    string // commit metadata: when the function subscribed to the topic
	batch   batch
	timer   *time.Timer
	// msg and headers are the filter's view of the message being matched.
	msg     filter.Message
	headers []filter.Header
}

func (t *trigger) newPartitionWorker(ctx context.Context, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) *partitionWorker {
	s := t.settings
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	m := t.metrics.partition(t.function, claim.Topic(), claim.Partition())
	return &partitionWorker{
		t:       t,
		sess:    sess,
		claim:   claim,
		ctx:     ctx,
		log:     t.log.With("topic", claim.Topic(), "partition", claim.Partition()),
		metrics: m,
		state:   newPartitionState(claim.Topic(), claim.Partition(), m, claim.InitialOffset()),
		meta:    t.startMetadata(claim.Topic()),
		batch:   batch{maxMessages: s.MaxMessages, maxBytes: s.MaxBytes, extras: s.RecordExtras},
		timer:   timer,
	}
}

// run returns when the claim ends (revocation, shutdown, removal). A batch
// that was not delivered by then is not marked: the partition's next owner
// reads it again from the last committed offset.
func (w *partitionWorker) run() {
	defer w.timer.Stop()
	defer w.metrics.release()
	w.t.claimed.add(w.state)
	defer w.t.claimed.remove(w.state)
	w.logStart()
	msgs := w.claim.Messages()
	done := w.sess.Context().Done()
	var next *sarama.ConsumerMessage // read, but did not fit in the last batch
	for {
		// Once the session is over, messages already fetched may still be
		// readable: starting a batch with them would go on delivering a
		// partition that is being handed to another member.
		if w.sess.Context().Err() != nil {
			return
		}
		w.batch.reset()
		if next == nil {
			if next = w.await(msgs, done); next == nil {
				return
			}
		}
		w.batch.add(next)
		next = nil
		w.showOldest()
		w.timer.Reset(w.t.settings.MaxWait)
	fill:
		for !w.batch.full() {
			var m *sarama.ConsumerMessage
			var ok bool
			select {
			case m, ok = <-msgs:
				// Messages already fetched go first: a busy partition fills
				// its batches without waiting on the timer.
			default:
				select {
				case m, ok = <-msgs:
				case <-w.timer.C:
					break fill
				case <-done:
					return
				}
			}
			if !ok {
				return
			}
			if !w.accept(m) {
				w.batch.skip(m.Offset)
				continue
			}
			if !w.batch.add(m) {
				next = m
				break fill
			}
		}
		if w.sess.Context().Err() != nil {
			return // the batch is dropped, uncommitted, for the next owner
		}
		w.batch.seal()
		w.metrics.consumed.Add(float64(w.batch.len()))
		if w.batch.skipped > 0 {
			w.metrics.filtered.Add(float64(w.batch.skipped))
		}
		if w.batch.oversized() {
			w.log.Warn("message larger than max_bytes; delivering it alone", "offset", w.batch.first,
				"bytes", len(w.batch.body()), "max_bytes", w.t.settings.MaxBytes)
		}
		if !w.deliver() {
			return
		}
		w.commit(w.batch.end + 1)
	}
}

// logStart says where the partition starts when that is not its committed
// offset: the oldest message, for a group that starts at the earliest or
// whose committed offset is no longer in the partition.
func (w *partitionWorker) logStart() {
	if w.claim.InitialOffset() != sarama.OffsetOldest {
		return
	}
	if w.t.settings.StartOffset.Earliest {
		w.log.Info("partition starts at its oldest message", "initial_offset", "earliest")
		return
	}
	w.log.Warn("the committed offset is no longer in the partition (retention removed it); resuming at the oldest message left")
}

// commit marks offset as the partition's next one to consume; sarama
// flushes marks to Kafka every second and when the session ends. Every
// mark carries the subscription time, so that it stays recorded in the
// group (see startFor).
func (w *partitionWorker) commit(offset int64) {
	w.sess.MarkOffset(w.claim.Topic(), w.claim.Partition(), offset, w.meta)
	w.state.advance(offset)
	w.state.oldest.Store(0)
	w.metrics.committed.Set(float64(offset))
	w.state.showLag()
}

// showOldest records when the first message of the batch was written: the
// oldest message not yet delivered.
func (w *partitionWorker) showOldest() {
	if w.batch.len() == 0 {
		w.state.oldest.Store(0)
		return
	}
	ts := w.batch.msgs[0].Timestamp
	if ts.IsZero() || ts.Unix() <= 0 {
		ts = time.Now() // a producer that sets no time: count from reading it
	}
	w.state.oldest.Store(ts.UnixNano())
}

// outcome is what one attempt at a batch came to.
type outcome struct {
	ok bool
	// failedFrom is, for a partial success, the offset of the first record
	// the function reported failed; -1 otherwise.
	failedFrom int64
	failure    string // why the attempt failed, for the logs
}

// deliver invokes the function with the batch until it succeeds or the
// retries are spent, and reports whether the batch may be committed. It
// reports false when the worker must stop first: the partition was revoked,
// the trigger is stopping or was removed.
//
// A partial success commits the records before the first failed one and
// goes on with the rest as a new batch. Every record left in the batch has
// been in every attempt so far, so the attempt count and the backoff carry
// on from one to the next.
func (w *partitionWorker) deliver() bool {
	s := w.t.settings
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			w.metrics.retries.Inc()
		}
		out := w.invoke(attempt)
		if out.ok {
			w.metrics.delivered.Inc()
			w.metrics.batchSize.Observe(float64(w.batch.len()))
			return true
		}
		w.metrics.failures.Inc()
		if out.failedFrom >= 0 {
			w.commit(out.failedFrom)
			w.batch.keepFrom(out.failedFrom)
			w.showOldest()
		}
		if w.ctx.Err() != nil {
			return false // removed or out of grace time: abandon, uncommitted
		}
		if s.MaxRetries >= 0 && attempt > s.MaxRetries {
			w.metrics.giveUps.Inc()
			return w.giveUp(attempt, out.failure)
		}
		delay := backoff(s.RetryBackoffInitial, s.RetryBackoffMax, attempt)
		w.batchLog().Warn("invocation failed; retrying", "attempt", attempt, "failure", out.failure, "retry_in", delay.Round(time.Millisecond))
		if !w.sleep(delay) {
			return false
		}
	}
}

// sleep waits d and reports false if the worker must stop first: the
// partition was revoked, the trigger drains or was removed. Nothing is
// committed then.
func (w *partitionWorker) sleep(d time.Duration) bool {
	w.metrics.retrying.Inc()
	defer w.metrics.retrying.Dec()
	w.timer.Reset(d)
	select {
	case <-w.timer.C:
		return true
	case <-w.sess.Context().Done():
		return false
	case <-w.ctx.Done():
		return false
	}
}

func (w *partitionWorker) batchLog() *slog.Logger {
	return w.log.With("first_offset", w.batch.first, "last_offset", w.batch.last, "messages", w.batch.len())
}

// invoke makes one attempt at delivering the batch.
func (w *partitionWorker) invoke(attempt int) outcome {
	b := &w.batch
	s := w.t.settings
	header := http.Header{
		"Content-Type":         {s.ContentType},
		"X-Connector":          {"kafka-connector"},
		"X-Topic":              {w.claim.Topic()},
		"X-Kafka-Partition":    {w.metrics.partition},
		"X-Kafka-First-Offset": {strconv.FormatInt(b.first, 10)},
		"X-Kafka-Last-Offset":  {strconv.FormatInt(b.last, 10)},
		"X-Idempotency-Key":    {idempotencyKey(w.t.function, w.claim.Topic(), w.claim.Partition(), b.first, b.last, s.Filter)},
		"X-Delivery-Attempt":   {strconv.Itoa(attempt)},
	}
	if s.Async && s.CallbackURL != "" {
		header.Set("X-Callback-Url", s.CallbackURL)
	}
	ctx, cancel := context.WithTimeout(w.ctx, s.UpstreamTimeout)
	start := time.Now()
	resp, err := w.t.gateway.Invoke(ctx, gateway.Request{Function: w.t.function, Async: s.Async, Body: b.body(), Header: header})
	cancel()
	elapsed := time.Since(start)
	w.metrics.invoked(resp.Status, elapsed.Seconds())
	if w.t.printResponse {
		attrs := []any{"status", resp.Status, "attempt", attempt, "duration", elapsed}
		if w.t.printResponseBody {
			attrs = append(attrs, "body", string(resp.Body))
		}
		w.batchLog().Info("invoked", attrs...)
	}
	switch {
	case err != nil:
		return outcome{failedFrom: -1, failure: err.Error()}
	case !resp.OK():
		if s.Async && resp.Status == http.StatusNotFound {
			w.t.noQueue.Do(func() {
				w.t.log.Error("the gateway answers 404 Not Found on /async-function/: asynchronous_invocation=true needs the gateway's queue worker, which this gateway may not run; " +
					"deploy the queue worker or set asynchronous_invocation=false (a 404 also means the gateway does not know the function). Retrying meanwhile")
			})
		}
		return outcome{failedFrom: -1, failure: describeStatus(resp)}
	case s.Async:
		return outcome{ok: true, failedFrom: -1}
	}
	if from, ok := w.firstFailed(resp.Body); ok {
		return outcome{failedFrom: from, failure: fmt.Sprintf("status %d, the function reported a failure from offset %d", resp.Status, from)}
	}
	return outcome{ok: true, failedFrom: -1}
}

// batchItemFailures is the body by which a function reports that part of a
// batch failed, in the shape AWS Lambda users know.
type batchItemFailures struct {
	BatchItemFailures []struct {
		Partition *int32 `json:"partition"`
		Offset    *int64 `json:"offset"`
	} `json:"batchItemFailures"`
}

// firstFailed reads a partial batch result from a 2xx body and returns the
// lowest failed offset of this batch. A body that does not mention
// batchItemFailures, or an empty list, means the whole batch succeeded. A
// report that cannot be read, an entry without a numeric partition and
// offset, or one that names no record of this batch, fails the whole batch:
// the function said something failed, and guessing what would lose it. A
// function that counts its records 0, 1, 2... instead of giving their
// offsets is the usual cause of the last.
func (w *partitionWorker) firstFailed(body []byte) (int64, bool) {
	if !bytes.Contains(body, []byte(`"batchItemFailures"`)) {
		return 0, false // the common case, without parsing
	}
	var r batchItemFailures
	if err := json.Unmarshal(body, &r); err != nil {
		w.batchLog().Warn("cannot read the batchItemFailures in the answer; retrying the whole batch", "error", err)
		return w.batch.first, true
	}
	first, found := int64(0), false
	for _, f := range r.BatchItemFailures {
		switch {
		case f.Partition == nil || f.Offset == nil:
			w.batchLog().Warn(`a batchItemFailures entry lacks a numeric "partition" and "offset"; retrying the whole batch`)
			return w.batch.first, true
		case *f.Partition != w.claim.Partition() || *f.Offset < w.batch.first || *f.Offset > w.batch.last:
			w.batchLog().Warn(`batchItemFailures names a record that is not in this batch; retrying the whole batch. `+
				`Name each failed record by the "partition" and "offset" it has in the event, not by its position`,
				"item_partition", *f.Partition, "item_offset", *f.Offset, "answer", fmt.Sprintf("%.200q", body))
			return w.batch.first, true
		}
		if !found || *f.Offset < first {
			first, found = *f.Offset, true
		}
	}
	return first, found
}

// giveUp ends the retries of a batch: its messages go to the dead-letter
// topic if there is one, or are logged, and it may then be committed. It
// reports false if the worker must stop before the dead letters are written.
func (w *partitionWorker) giveUp(attempts int, failure string) bool {
	log := w.batchLog()
	if w.t.settings.DeadLetterTopic == "" {
		log.Error("giving up on batch: retries spent; committing it without delivery", "attempts", attempts, "last_failure", failure)
		return true
	}
	return w.deadLetter(attempts, failure)
}

// backoff is the delay before retry number attempt (1 for the first retry):
// initial doubled at each retry, capped at max, less up to a fifth at random
// so that partitions failing together do not retry in lockstep. Each delay
// is longer than the one before until the cap is reached.
func backoff(initial, max time.Duration, attempt int) time.Duration {
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// idempotencyKey names a batch: the same on every retry of it, different for
// every other batch of the function. Under a filter, the same first and last
// offsets hold other records when the filter changes, so the key names the
// filter too.
func idempotencyKey(function, topic string, partition int32, first, last int64, expr string) string {
	if expr == "" {
		return fmt.Sprintf("%s/%s/%d/%d-%d", function, topic, partition, first, last)
	}
	h := fnv.New32a()
	h.Write([]byte(expr))
	return fmt.Sprintf("%s/%s/%d/%d-%d/%08x", function, topic, partition, first, last, h.Sum32())
}

func describeStatus(resp gateway.Response) string {
	if len(resp.Body) > 0 {
		return fmt.Sprintf("status %d: %.200q", resp.Status, resp.Body)
	}
	return fmt.Sprintf("status %d", resp.Status)
}
