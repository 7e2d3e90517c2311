package connector

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/IBM/sarama"

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
	ctx   context.Context
	log   *slog.Logger
	batch batch
	timer *time.Timer
}

func (t *trigger) newPartitionWorker(ctx context.Context, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) *partitionWorker {
	s := t.settings
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	return &partitionWorker{
		t:     t,
		sess:  sess,
		claim: claim,
		ctx:   ctx,
		log:   t.log.With("topic", claim.Topic(), "partition", claim.Partition()),
		batch: batch{maxMessages: s.MaxMessages, maxBytes: s.MaxBytes, extras: s.RecordExtras},
		timer: timer,
	}
}

// run returns when the claim ends (revocation, shutdown, removal). A batch
// that was not delivered by then is not marked: the partition's next owner
// reads it again from the last committed offset.
func (w *partitionWorker) run() {
	defer w.timer.Stop()
	msgs := w.claim.Messages()
	done := w.sess.Context().Done()
	var next *sarama.ConsumerMessage // read, but did not fit in the last batch
	for {
		w.batch.reset()
		if next == nil {
			select {
			case m, ok := <-msgs:
				if !ok {
					return
				}
				next = m
			case <-done:
				return
			}
		}
		w.batch.add(next)
		next = nil
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
			if !w.batch.add(m) {
				next = m
				break fill
			}
		}
		if !w.deliver() {
			return
		}
		w.sess.MarkOffset(w.claim.Topic(), w.claim.Partition(), w.batch.last+1, "")
	}
}

// deliver invokes the function with the batch until it succeeds or the
// retries are spent, and reports whether the batch may be committed. It
// reports false when the worker must stop first: the partition was revoked,
// the trigger is stopping or was removed.
func (w *partitionWorker) deliver() bool {
	b := &w.batch
	s := w.t.settings
	body := b.body()
	header := http.Header{
		"Content-Type":         {s.ContentType},
		"X-Connector":          {"kafka-connector"},
		"X-Topic":              {w.claim.Topic()},
		"X-Kafka-Partition":    {strconv.Itoa(int(w.claim.Partition()))},
		"X-Kafka-First-Offset": {strconv.FormatInt(b.first, 10)},
		"X-Kafka-Last-Offset":  {strconv.FormatInt(b.last, 10)},
		"X-Idempotency-Key":    {idempotencyKey(w.t.function, w.claim.Topic(), w.claim.Partition(), b.first, b.last)},
	}
	log := w.log.With("first_offset", b.first, "last_offset", b.last, "messages", b.n)
	for attempt := 1; ; attempt++ {
		header.Set("X-Delivery-Attempt", strconv.Itoa(attempt))
		ctx, cancel := context.WithTimeout(w.ctx, s.UpstreamTimeout)
		start := time.Now()
		resp, err := w.t.gateway.Invoke(ctx, gateway.Request{Function: w.t.function, Body: body, Header: header})
		cancel()
		elapsed := time.Since(start)
		if err == nil && resp.OK() {
			if w.t.printResponse {
				attrs := []any{"status", resp.Status, "attempt", attempt, "duration", elapsed}
				if w.t.printResponseBody {
					attrs = append(attrs, "body", string(resp.Body))
				}
				log.Info("invoked", attrs...)
			}
			return true
		}
		if w.ctx.Err() != nil {
			return false // removed or out of grace time: abandon, uncommitted
		}
		failure := describeFailure(resp, err)
		if s.MaxRetries >= 0 && attempt > s.MaxRetries {
			log.Error("giving up on batch: retries spent; its offsets are committed and the partition moves on",
				"attempts", attempt, "last_failure", failure)
			return true
		}
		delay := backoff(s.RetryBackoffInitial, s.RetryBackoffMax, attempt)
		log.Warn("invocation failed; retrying", "attempt", attempt, "failure", failure, "retry_in", delay.Round(time.Millisecond))
		w.timer.Reset(delay)
		select {
		case <-w.timer.C:
		case <-w.sess.Context().Done():
			return false // revoked or stopping: stop retrying, commit nothing
		case <-w.ctx.Done():
			return false
		}
	}
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
// every other batch of the function.
func idempotencyKey(function, topic string, partition int32, first, last int64) string {
	return fmt.Sprintf("%s/%s/%d/%d-%d", function, topic, partition, first, last)
}

func describeFailure(resp gateway.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	if len(resp.Body) > 0 {
		return fmt.Sprintf("status %d: %.200q", resp.Status, resp.Body)
	}
	return fmt.Sprintf("status %d", resp.Status)
}
