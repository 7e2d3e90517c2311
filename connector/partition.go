package connector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/answer"
	"github.com/kafka-connector/kafka-connector/filter"
	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/respond"
	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/tracing"
)

// partitionWorker delivers one claimed partition of one trigger. Its
// goroutine (sarama's, one per claim) reads the messages into the
// partition's scheduler, starts the batches the scheduler allows, each in a
// goroutine of its own that invokes the function until the batch succeeds
// or is given up on, and marks for commit what the scheduler says is
// finished. Only that goroutine touches the scheduler and marks offsets;
// the batches report to it on a channel. Nothing in it is shared with
// another partition but the function's max_inflight gate.
type partitionWorker struct {
	t     *trigger
	sess  sarama.ConsumerGroupSession
	claim sarama.ConsumerGroupClaim
	// ctx aborts an invocation in flight: it ends when the trigger is
	// removed or the shutdown grace period is over. The session's context
	// ending (revocation, shutdown) only stops the worker between attempts,
	// so that an invocation in flight can finish and be committed.
	ctx context.Context
	// stop ends with ctx, the session or the claim: a batch waiting to
	// retry, or for an invocation slot, gives up then, uncommitted, and
	// nothing new starts. Under cooperative rebalancing the session lives on
	// through rebalances and only a revoked partition's claim ends.
	stop    context.Context
	log     *slog.Logger
	metrics *partitionMetrics
	state   *partitionState
	meta    string // commit metadata: when the function subscribed to the topic

	sched   *schedule.Scheduler[record]
	gate    *schedule.Gate // this partition's batches in flight, lowered by back-pressure
	keyed   bool           // ordering=key: batches are named by their offsets
	enc     encoder
	reports chan report // from the batches in flight
	flights sync.WaitGroup
	running int         // batches whose goroutine has not reported its end
	timer   *time.Timer // max_wait, while a batch could start but is not full
	timing  bool
	marked  int64 // the last offset marked, -1 before any
	// filtered counts the messages the filter rejected since they were last
	// added to the metric.
	filtered int
	// msg and headers are the filter's view of the message being matched.
	msg     filter.Message
	headers []filter.Header
	// dec decodes keys and values; nil when the trigger passes them on.
	dec    *decoder
	traced partitionTrace
	// resp writes the function's answers; nil without a response topic.
	resp *partitionResponses
}

// report is what a batch in flight tells its worker: that it is finished
// (done), that its records before failedFrom are (a partial success, the
// batch going on), or that it was abandoned, uncommitted.
type report struct {
	id         uint64
	done       bool
	abandoned  bool
	failedFrom int64
}

func (t *trigger) newPartitionWorker(ctx context.Context, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) *partitionWorker {
	s := t.settings
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	m := t.metrics.partition(t.function, claim.Topic(), claim.Partition())
	concurrency := s.InFlightPerPartition()
	sched, err := schedule.New[record](schedule.Policy{
		Ordering:    s.Ordering,
		Concurrency: concurrency,
		MaxMessages: s.MaxMessages,
		MaxBytes:    bodyBudget(s.MaxBytes),
		Window:      windowOf(s, concurrency),
		WindowBytes: windowBytes(s, concurrency),
	})
	if err != nil {
		// The settings were checked when they were read.
		panic(fmt.Sprintf("connector: settings the scheduler refuses: %v", err))
	}
	return &partitionWorker{
		t:       t,
		sess:    sess,
		claim:   claim,
		ctx:     ctx,
		log:     t.log.With("topic", claim.Topic(), "partition", claim.Partition()),
		metrics: m,
		state:   newPartitionState(claim.Topic(), claim.Partition(), m, claim.InitialOffset()),
		meta:    t.startMetadata(claim.Topic()),
		sched:   sched,
		gate:    schedule.NewGate(concurrency),
		keyed:   s.Ordering == schedule.OrderKey,
		enc:     newEncoder(s.RecordExtras, sched.Policy()),
		reports: make(chan report, concurrency),
		timer:   timer,
		marked:  -1,
		dec:     newDecoder(t.decoding, t.function, claim.Topic()),
	}
}

// run returns when the claim ends (revocation, shutdown, removal), once
// the batches in flight have finished or been abandoned. What was not
// delivered by then is not marked: the partition's next owner reads it
// again from the last committed offset.
func (w *partitionWorker) run() {
	defer w.timer.Stop()
	defer w.metrics.release()
	defer w.dec.close()
	w.t.claimed.add(w.state)
	defer w.t.claimed.remove(w.state)
	w.t.metrics.partitions.add(w.state)
	defer w.t.metrics.partitions.remove(w.state)
	w.t.health.claims.Add(1)
	defer w.t.health.claims.Add(-1)
	select {
	case w.t.measure <- struct{}{}: // its lag, at once
	default:
	}
	w.logStart()
	stop, cancel := context.WithCancel(w.ctx)
	defer cancel()
	defer context.AfterFunc(w.sess.Context(), cancel)()
	endWithClaim(w.claim, w.log, cancel)
	w.stop = stop
	defer w.closeResponses()
	if !w.openResponses() {
		return
	}

	w.loop()
	w.sched.Stop()
	for w.running > 0 {
		w.handle(<-w.reports)
	}
	w.flights.Wait()
	w.awaitAnswer()
	w.mark()
	if w.sess.Context().Err() == nil && w.ctx.Err() == nil {
		w.log.Info("released partition in a rebalance")
	}
}

// loop reads and delivers until the claim ends. It returns with batches
// possibly in flight.
func (w *partitionWorker) loop() {
	msgs := w.claim.Messages()
	done := w.stop.Done()
	for {
		if !w.start() {
			return
		}
		in := msgs
		if w.sched.Full() || w.dec.holding() {
			in = nil // until the oldest work finishes, or the registry answers
		}
		// Each of the two looks first at one channel alone, which costs
		// no lock while it is empty: a select over both takes both
		// channels' locks, for every message.
		select {
		case r := <-w.reports:
			// Finished work goes first: it moves the committed offset and
			// frees room in the window.
			w.handle(r)
			continue
		default:
		}
		var m *sarama.ConsumerMessage
		var ok bool
		select {
		case m, ok = <-in:
			// Messages already fetched go next: a busy partition fills
			// its batches without waiting on the timer.
		default:
			w.mark()
			if w.idle() {
				if !w.dec.holding() {
					w.state.oldest.Store(0) // everything read is delivered, and nothing waits
				}
				w.enc.release()
				w.sched.Trim()
			}
			select {
			case m, ok = <-in:
			case r := <-w.reports:
				w.handle(r)
				continue
			case <-w.timer.C:
				w.timing = false
				if !w.flush() {
					return
				}
				continue
			case <-w.dec.retry():
				m, ok = w.dec.take(), true
			case <-w.resp.due():
				if !w.flushResponses() {
					return
				}
				continue
			case <-w.resp.written():
				if !w.awaitAnswer() {
					return
				}
				continue
			case <-done:
				return
			}
		}
		if !ok {
			return // the claim ended; w.stop is about to say so
		}
		if !w.read(m) {
			return
		}
	}
}

// read puts a message in the window. It reports false on a failure of the
// scheduler's rules, which would be a bug: the worker then stops, leaving
// the rest uncommitted.
func (w *partitionWorker) read(m *sarama.ConsumerMessage) bool {
	if w.resp.skipped(m.Offset) {
		return true
	}
	d, lettered, ok := w.decode(m)
	if !ok {
		return w.stop.Err() == nil // held for the registry, or stopping
	}
	var err error
	if lettered {
		err = w.sched.Skip(m.Offset)
	} else if d.failed() || w.accept(m, d) {
		// A message that could not be decoded is delivered whatever the
		// filter says, which cannot read it: it must not vanish.
		r := w.enc.encodeDecoded(m, d)
		err = w.sched.Add(schedule.Message[record]{Offset: m.Offset, Key: m.Key, Size: recordSize(r), Payload: r})
		if err == nil && w.sched.Len() == 1 {
			w.showOldest()
		}
	} else {
		w.filtered++
		w.traceFiltered(m)
		err = w.sched.Skip(m.Offset)
		if w.filtered >= w.t.settings.MaxMessages {
			w.mark() // a long stretch of rejected messages is committed as it goes
		}
	}
	if err != nil {
		w.log.Error("cannot schedule a message; leaving the partition uncommitted from here", "offset", m.Offset, "error", err)
		return false
	}
	return true
}

// start starts every batch the scheduler allows, and runs the max_wait
// timer while a batch could start but is not full. It reports false once
// the claim is over: messages already fetched may still be readable then,
// and starting a batch with them would go on delivering a partition that
// is being handed to another member.
func (w *partitionWorker) start() bool {
	if w.sched.Policy().Concurrency > 1 {
		// Back-pressure moves the limit between 1 and the concurrency; at
		// a concurrency of 1 it stays 1, and the gate's lock is not taken
		// for every message.
		w.sched.SetLimit(w.gate.Limit())
	}
	for {
		b, ok := w.sched.Next(false)
		if !ok {
			break
		}
		if !w.launch(b) {
			return false
		}
	}
	switch ready := w.sched.Ready(); {
	case ready && !w.timing:
		w.timer.Reset(w.t.settings.MaxWait)
		w.timing = true
	case !ready && w.timing:
		w.timer.Stop()
		w.timing = false
	}
	return true
}

// flush starts what max_wait lets go before it is full.
func (w *partitionWorker) flush() bool {
	for {
		b, ok := w.sched.Next(true)
		if !ok {
			return true
		}
		if !w.launch(b) {
			return false
		}
	}
}

// launch hands a batch to a goroutine of its own.
func (w *partitionWorker) launch(b schedule.Batch[record]) bool {
	if w.stop.Err() != nil {
		return false
	}
	f := &flight{w: w, batch: b}
	f.body, f.lease = w.enc.body(b.Items)
	f.lent = f.lease != nil
	w.traceLaunch(f)
	w.metrics.consumed.Add(float64(b.Len()))
	if b.Len() == 1 && len(f.body) > w.t.settings.MaxBytes {
		w.log.Warn("message larger than max_bytes; delivering it alone", "offset", b.First(),
			"bytes", len(f.body), "max_bytes", w.t.settings.MaxBytes)
	}
	w.running++
	if w.sched.Policy().Concurrency == 1 {
		// One batch at a time (ordering=partition): a goroutine and a
		// channel hop per batch would buy nothing, so the worker delivers
		// it itself, as the same code, and reads on once it is finished.
		f.inline = true
		f.deliver()
		return true
	}
	w.flights.Go(f.deliver)
	return true
}

// handle applies a batch's report to the scheduler.
func (w *partitionWorker) handle(r report) {
	if r.done || r.abandoned {
		w.running--
	}
	var err error
	switch {
	case r.abandoned:
		// Left open and uncommitted, its keys blocked: the worker is
		// stopping, and the next owner delivers the batch again.
		return
	case r.done:
		err = w.sched.Done(r.id)
	default:
		_, err = w.sched.Partial(r.id, r.failedFrom)
	}
	if err != nil {
		w.log.Error("a batch reported what the scheduler does not know", "error", err)
	}
	w.mark()
}

// mark marks what the scheduler says may be committed, if it moved, and
// updates the partition's figures.
func (w *partitionWorker) mark() {
	if w.filtered > 0 {
		w.metrics.filtered.Add(float64(w.filtered))
		w.filtered = 0
	}
	w.metrics.window.Set(float64(w.sched.Len()))
	if offset, ok := w.sched.Committable(); ok && offset > w.marked {
		w.commit(offset)
	}
}

// idle reports whether the window holds no record and no batch is in
// flight: the partition has nothing to do until a message comes.
func (w *partitionWorker) idle() bool { return w.sched.Len() == 0 && w.running == 0 }

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
// flushes marks to Kafka every commit_interval and when the session ends. Every
// mark carries the subscription time, so that it stays recorded in the
// group (see startFor).
//
// Under exactly-once responses the offset is committed in the partition's
// transaction instead, with the answers (see hold), and never marked.
func (w *partitionWorker) commit(offset int64) {
	w.marked = offset
	switch {
	case w.resp.transactional():
		w.hold(offset)
	case w.resp.unwritten(offset):
		// Marked once the answer being written is acknowledged (see
		// awaitAnswer).
	default:
		w.markOffset(offset)
	}
}

// markOffset marks offset for sarama to commit.
func (w *partitionWorker) markOffset(offset int64) {
	w.sess.MarkOffset(w.claim.Topic(), w.claim.Partition(), offset, w.meta)
	w.committed(offset)
}

// committed shows offset as the partition's committed one.
func (w *partitionWorker) committed(offset int64) {
	w.state.advance(offset)
	w.showOldest()
	w.metrics.committed.Set(float64(offset))
}

// showOldest records when the oldest message of the window was written:
// the oldest message not yet delivered. An empty window leaves the last
// one: while a backlog drains the next message is read at once, and the
// age says 0 only once the worker finds nothing more to read (see loop).
func (w *partitionWorker) showOldest() {
	r, ok := w.sched.Oldest()
	if !ok {
		return
	}
	ts := r.msg.Timestamp
	if ts.IsZero() || ts.Unix() <= 0 {
		ts = time.Now() // a producer that sets no time: count from reading it
	}
	w.state.oldest.Store(ts.UnixNano())
}

// flight is one batch in flight, delivered by a goroutine of its own. It
// reads the worker's settings and metrics but touches neither its
// scheduler nor its offsets: it reports to the worker.
type flight struct {
	w     *partitionWorker
	batch schedule.Batch[record]
	body  []byte
	// lease, when body is a run, gives the run back to the encoder once
	// the batch is finished; it stays held through a partial success,
	// whose records are still read from the run. lent is whether body is
	// that run, lent to the transport, and not keepFrom's copy.
	lease *lease
	lent  bool
	timer *time.Timer // for the waits between attempts, made on the first
	// long and longErr are the report of the last answer too long for the
	// gateway client to keep, read by scanLong as it arrived.
	long    answer.Report
	longErr error
	// inline is a batch delivered on the worker's own goroutine, the only
	// one of its partition in flight: it reports to the scheduler
	// directly, which only that goroutine touches.
	inline bool
	// trace is the batch's span, zero when tracing is off; filtered, the
	// messages filtered before it, for the span.
	trace    tracing.BatchSpan
	filtered int
	// lastAnswer is the start of the function's last answer, for the
	// dead letters (see noteAnswer).
	lastAnswer []byte
}

func (f *flight) first() int64 { return f.batch.First() }
func (f *flight) last() int64  { return f.batch.Last() }

// outcome is what one attempt at a batch came to.
type outcome struct {
	ok bool
	// failedFrom is, for a partial success, the offset of the first record
	// the function reported failed; -1 otherwise.
	failedFrom int64
	failure    string // why the attempt failed, for the logs
	// wait, when throttled, is how long the function asked to be left
	// alone (its Retry-After), 0 when it did not say.
	throttled bool
	wait      time.Duration
	// answer is what a successful answer asks to write to the response
	// topic.
	answer []respond.Record
}

// deliver invokes the function with the batch until it succeeds, the
// retries are spent, or the worker must stop first (the partition was
// revoked, the trigger is stopping or was removed), and reports which to
// the worker.
//
// A partial success reports the records before the first failed one as
// finished and goes on with the rest. Every record left in the batch has
// been in every attempt so far, so the attempt count and the backoff carry
// on from one to the next.
//
// Back-pressure (a 429, or a 503 with Retry-After) is not a failure of the
// batch: the attempt is not counted against max_retries, the wait is at
// least the Retry-After, and the gates lower the invocations in flight.
func (f *flight) deliver() {
	w := f.w
	s := w.t.settings
	f.startTrace()
	defer func() {
		if f.timer != nil {
			f.timer.Stop()
		}
	}()
	failures, throttles := 0, 0
	failed := false // the last attempt failed: the next one is a retry
	for attempt := 1; ; attempt++ {
		if failed {
			w.metrics.retries.Inc()
		}
		out, started := f.attempt(attempt)
		if !started {
			f.report(report{id: f.batch.ID, abandoned: true})
			return
		}
		if (out.ok || out.failedFrom >= 0) && !f.writeAnswer(out.answer) {
			f.report(report{id: f.batch.ID, abandoned: true})
			return
		}
		if out.ok {
			w.metrics.delivered.Inc()
			w.metrics.batchSize.Observe(float64(f.batch.Len()))
			f.report(report{id: f.batch.ID, done: true})
			return
		}
		failed = !out.throttled
		if failed {
			w.metrics.failures.Inc()
		}
		if out.failedFrom >= 0 {
			f.report(report{id: f.batch.ID, failedFrom: out.failedFrom})
			f.keepFrom(out.failedFrom)
		}
		if w.ctx.Err() != nil {
			f.report(report{id: f.batch.ID, abandoned: true}) // removed or out of grace time
			return
		}
		var delay time.Duration
		if out.throttled {
			throttles++
			w.metrics.backPressure.Inc()
			delay = max(out.wait, backoff(s.RetryBackoffInitial, s.RetryBackoffMax, throttles))
			f.trace.BackPressure(attempt, delay, w.gate.Limit())
			w.t.throttled(f.log(), attempt, out.failure, delay, w.gate.Limit())
		} else {
			failures++
			if s.MaxRetries >= 0 && failures > s.MaxRetries {
				w.metrics.giveUps.Inc()
				f.trace.GiveUp(attempt)
				if !f.giveUp(attempt, out.failure) {
					f.report(report{id: f.batch.ID, abandoned: true})
					return
				}
				f.report(report{id: f.batch.ID, done: true})
				return
			}
			delay = backoff(s.RetryBackoffInitial, s.RetryBackoffMax, failures)
			f.trace.Retry(attempt, delay)
			f.log().Warn("invocation failed; retrying", "attempt", attempt, "failure", out.failure, "retry_in", delay.Round(time.Millisecond))
		}
		if !f.sleep(delay) {
			f.report(report{id: f.batch.ID, abandoned: true})
			return
		}
	}
}

// report hands a report to the worker, which always listens until every
// batch has reported its end; an inline batch applies it itself. Once the
// batch is done, the flight reads nothing of it again and lets go of its
// run first, so that the run is back by the time the worker, seeing
// nothing more to do, drops what its encoder keeps (see lease).
func (f *flight) report(r report) {
	if r.done {
		f.lease.release()
	}
	f.traceReport(r)
	if f.inline {
		f.w.handle(r)
		return
	}
	f.w.reports <- r
}

// lend holds the lease for one invocation while the body is its run, and
// returns what lets go of it (see gateway.Request.Released).
func (f *flight) lend() func() {
	if !f.lent {
		return nil
	}
	return f.lease.hold()
}

// keepFrom drops the records before offset, which the worker was told are
// finished, as the scheduler's Partial does.
func (f *flight) keepFrom(offset int64) {
	i := 0
	for i < len(f.batch.Items) && f.batch.Items[i].Offset < offset {
		i++
	}
	f.batch.Items = f.batch.Items[i:]
	f.body, f.lent = body(f.batch.Items), false
}

// attempt makes one attempt inside the partition's and the function's
// gates. It reports false when the worker must stop before a slot is free.
func (f *flight) attempt(n int) (outcome, bool) {
	w := f.w
	p, err := w.gate.Acquire(w.stop)
	if err != nil {
		return outcome{}, false
	}
	fp, err := w.t.inflight.Acquire(w.stop)
	if err != nil {
		p.Release(schedule.Failed)
		return outcome{}, false
	}
	w.t.inFlight.Inc()
	out := f.invoke(n)
	f.trace.AttemptEnded(out.throttled, out.failedFrom)
	w.t.inFlight.Dec()
	result := schedule.Failed
	switch {
	case out.ok:
		result = schedule.Succeeded
	case out.throttled:
		result = schedule.Throttled
	}
	fp.Release(result)
	p.Release(result)
	return out, true
}

// sleep waits d and reports false if the worker must stop first: the
// partition was revoked, the trigger drains or was removed. Nothing is
// committed then.
func (f *flight) sleep(d time.Duration) bool {
	w := f.w
	if f.inline && !w.flushResponses() {
		return false // no transaction stays open while the partition waits
	}
	return sleep(w.stop, &f.timer, d, w.metrics)
}

// sleep waits d on *timer, made on first use, counted as a retry wait; it
// reports false if ctx ends first.
func sleep(ctx context.Context, timer **time.Timer, d time.Duration, m *partitionMetrics) bool {
	m.retrying.Inc()
	defer m.retrying.Dec()
	if *timer == nil {
		*timer = time.NewTimer(d)
	} else {
		(*timer).Reset(d)
	}
	select {
	case <-(*timer).C:
		return true
	case <-ctx.Done():
		(*timer).Stop()
		return false
	}
}

func (f *flight) log() *slog.Logger {
	return f.w.log.With("first_offset", f.first(), "last_offset", f.last(), "messages", f.batch.Len())
}

// invoke makes one attempt at delivering the batch.
func (f *flight) invoke(attempt int) outcome {
	w := f.w
	s := w.t.settings
	header := http.Header{
		"Content-Type":         {s.ContentType},
		"X-Connector":          {"kafka-connector"},
		"X-Topic":              {w.claim.Topic()},
		"X-Kafka-Partition":    {w.metrics.partition},
		"X-Kafka-First-Offset": {strconv.FormatInt(f.first(), 10)},
		"X-Kafka-Last-Offset":  {strconv.FormatInt(f.last(), 10)},
		"X-Idempotency-Key":    {f.idempotencyKey()},
		"X-Delivery-Attempt":   {strconv.Itoa(attempt)},
	}
	if s.Async && s.CallbackURL != "" {
		header.Set("X-Callback-Url", s.CallbackURL)
	}
	ctx, cancel := context.WithTimeout(w.ctx, s.UpstreamTimeout)
	f.traceAttempt(attempt, header)
	start := time.Now()
	resp, err := w.t.gateway.Invoke(ctx, gateway.Request{Function: w.t.function, Async: s.Async, Body: f.body, Released: f.lend(), Header: header, Long: f.scanLong})
	cancel()
	f.trace.Answered(resp.Status, err)
	elapsed := time.Since(start)
	f.noteAnswer(resp.Body)
	if w.t.printResponse {
		attrs := []any{"status", resp.Status, "attempt", attempt, "duration", elapsed}
		if w.t.printResponseBody {
			attrs = append(attrs, "body", string(resp.Body))
		}
		f.log().Info("invoked", attrs...)
	}
	wait, throttled := schedule.BackPressure(resp.Status, resp.RetryAfter, time.Now(), s.RetryBackoffMax)
	w.metrics.invoked(resp.Status, throttled, elapsed.Seconds())
	switch {
	case err != nil:
		return outcome{failedFrom: -1, failure: err.Error()}
	case !resp.OK():
		if throttled {
			return outcome{failedFrom: -1, failure: describeStatus(resp), throttled: true, wait: wait}
		}
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
	records, err := f.answer(resp)
	if err != nil {
		return outcome{failedFrom: -1, failure: fmt.Sprintf("status %d: %v", resp.Status, err)}
	}
	rep, err := f.long, f.longErr
	if !resp.Truncated {
		rep, err = answer.Read(resp.Body)
	}
	if from, ok := f.firstFailed(rep, err, resp.Body); ok {
		return outcome{failedFrom: from, failure: fmt.Sprintf("status %d, the function reported a failure from offset %d", resp.Status, from), answer: records}
	}
	return outcome{ok: true, failedFrom: -1, answer: records}
}

// scanLong reads the report of an answer longer than what the gateway
// client keeps of it, as it arrives: a report after the first MiB is found
// as one within it (see gateway.Request.Long).
func (f *flight) scanLong(r io.Reader) error {
	f.long, f.longErr = answer.Scan(r)
	if errors.Is(f.longErr, answer.ErrUnreadable) {
		return nil // an answer, if not a readable one: firstFailed says so
	}
	return f.longErr
}

// idempotencyKey names the batch, the same on every attempt. Under key
// ordering a batch need not hold every offset between its first and last,
// and the same first and last may frame other records after a restart: the
// key then names its offsets by their fingerprint.
func (f *flight) idempotencyKey() string {
	w := f.w
	if w.keyed {
		return fmt.Sprintf("%s/%s/%d/%d-%d/%016x", w.t.function, w.claim.Topic(), w.claim.Partition(), f.first(), f.last(), f.batch.Fingerprint())
	}
	return idempotencyKey(w.t.function, w.claim.Topic(), w.claim.Partition(), f.first(), f.last(), w.t.settings.Filter)
}

// has reports whether the batch holds offset.
func (f *flight) has(offset int64) bool {
	_, found := slices.BinarySearchFunc(f.batch.Items, offset, func(it schedule.Item[record], o int64) int { return cmp.Compare(it.Offset, o) })
	return found
}

// firstFailed reads a partial batch result from a 2xx answer's report and
// returns the lowest failed offset of this batch. An answer without a
// report, or with an empty list, means the whole batch succeeded. A report
// that cannot be read, an entry without a numeric partition and offset, or
// one that names no record of this batch, fails the whole batch: the
// function said something failed, and guessing what would lose it. A
// function that counts its records 0, 1, 2... instead of giving their
// offsets is the usual cause of the last.
func (f *flight) firstFailed(rep answer.Report, err error, body []byte) (int64, bool) {
	if err != nil {
		f.log().Warn("cannot read the batchItemFailures in the answer; retrying the whole batch", "error", err)
		return f.first(), true
	}
	first, found := int64(0), false
	for _, item := range rep.Items {
		switch {
		case item.Partition == nil || item.Offset == nil:
			f.log().Warn(`a batchItemFailures entry lacks a numeric "partition" and "offset"; retrying the whole batch`)
			return f.first(), true
		case *item.Partition != f.w.claim.Partition() || !f.has(*item.Offset):
			f.log().Warn(`batchItemFailures names a record that is not in this batch; retrying the whole batch. `+
				`Name each failed record by the "partition" and "offset" it has in the event, not by its position`,
				"item_partition", *item.Partition, "item_offset", *item.Offset, "answer", fmt.Sprintf("%.200q", body))
			return f.first(), true
		}
		if !found || *item.Offset < first {
			first, found = *item.Offset, true
		}
	}
	return first, found
}

// giveUp ends the retries of a batch: its messages go to the dead-letter
// topic if there is one, or are logged, and it may then be committed. It
// reports false if the worker must stop before the dead letters are written.
func (f *flight) giveUp(attempts int, failure string) bool {
	if f.w.t.settings.DeadLetterTopic == "" {
		f.log().Error("giving up on batch: retries spent; committing it without delivery", "attempts", attempts, "last_failure", failure)
		return true
	}
	return f.deadLetter(attempts, failure)
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
