package connector

import (
	"log/slog"
	"time"

	"github.com/kafka-connector/kafka-connector/respond"
)

// Writing answers at least once (exactly once is in respond.go).
//
// A batch's answer must be acknowledged by the brokers before any offset
// after the batch's first is committed. A partition that delivers one
// batch at a time (concurrency 1, its batches delivered inline by the
// worker) does not wait for that acknowledgement before invoking the
// function with its next batch: the answer is written in the background,
// one answer at a time, while the next batch is invoked. The next answer
// is written once the one before it was acknowledged, so that answers
// reach the response topic in input order; and until then the offsets
// after the unacknowledged answer's batch are held (see unwritten), to be
// marked once it is acknowledged: as the next batch finishes or its
// answer is written, or when the partition has nothing to do, whichever
// comes first. A partition thus keeps one answer being
// written beside the batch in flight, and a write that keeps failing holds
// the partition after one more batch, as a failed invocation does.
//
// Batches delivered by goroutines of their own (concurrency above 1)
// write their answers themselves, before they report finished: other
// batches of the partition overlap them already.

// pendingAnswer is an answer being written in the background.
type pendingAnswer struct {
	// from is the first offset of the batch it answers: no offset above
	// it may be committed before the answer is acknowledged.
	from int64
	done chan struct{}
	// ok is set before done is closed: false when the worker stopped
	// before the brokers acknowledged the answer.
	ok bool
}

// writeAtLeastOnce writes a batch's answer at least once. It reports false
// if the worker must stop first: the batch is then abandoned, uncommitted.
func (f *flight) writeAtLeastOnce(records []respond.Record) bool {
	w := f.w
	if len(records) == 0 {
		return true // the offsets wait for an answer being written all the same (see unwritten)
	}
	if !f.inline {
		return w.writeUntilAcknowledged(f.log(), f.source(), records)
	}
	if !w.awaitAnswer() {
		return false
	}
	r := w.resp
	p := &pendingAnswer{from: f.first(), done: make(chan struct{})}
	r.pending = p
	// The goroutine reads nothing of the flight, which goes on with a
	// partial batch's remaining records.
	log, src := f.log(), f.source()
	r.writes.Go(func() {
		p.ok = w.writeUntilAcknowledged(log, src, records)
		close(p.done)
	})
	return true
}

// writeUntilAcknowledged writes an answer, retrying with backoff until the
// brokers acknowledge it. It reports false if the worker must stop first.
// Several goroutines may write at once: it touches no state of the worker.
func (w *partitionWorker) writeUntilAcknowledged(log *slog.Logger, src respond.Source, records []respond.Record) bool {
	a := w.t.answers
	var timer *time.Timer
	for try := 1; ; try++ {
		err := a.writer.Write(a.topic, src, records)
		if err == nil {
			a.metrics.records.WithLabelValues(w.t.function, w.claim.Topic()).Add(float64(len(records)))
			return true
		}
		if !sleep(w.stop, &timer, w.answerFailed(log, err, try), w.metrics) {
			return false
		}
	}
}

// answerFailed counts and logs a failed write of an answer, saying what to
// do when retrying will not help, and returns how long to wait before try
// number try+1.
func (w *partitionWorker) answerFailed(log *slog.Logger, err error, try int) time.Duration {
	a := w.t.answers
	s := w.t.settings
	delay := backoff(s.RetryBackoffInitial, s.RetryBackoffMax, try)
	reason, fix := writeFailure(err, "response topic")
	a.metrics.errors.WithLabelValues(w.t.function, w.claim.Topic(), reason).Inc()
	log = log.With("response_topic", a.topic, "reason", reason, "error", err, "retry_in", delay)
	if fix != "" {
		log.Error("cannot write the answer to the response topic, and retrying will not help until this is fixed: " + fix + "; the partition waits, uncommitted")
	} else {
		log.Error("cannot write the answer to the response topic; retrying, the batch stays uncommitted")
	}
	return delay
}

// awaitAnswer waits for the answer being written, if any, and marks the
// offset that waited for it. It reports false if the answer was given up
// on as the worker stopped: it then stays pending, and nothing after its
// batch is ever committed by this worker.
func (w *partitionWorker) awaitAnswer() bool {
	r := w.resp
	if r == nil || r.pending == nil {
		return true
	}
	<-r.pending.done
	if !r.pending.ok {
		return false
	}
	r.pending = nil
	if held := r.unacknowledged; held >= 0 {
		r.unacknowledged = -1
		w.markOffset(held)
	}
	return true
}

// written is closed once the answer being written is acknowledged or given
// up on; nil while none is.
func (r *partitionResponses) written() <-chan struct{} {
	if r == nil || r.pending == nil {
		return nil
	}
	return r.pending.done
}

// unwritten reports whether offset must wait for the answer being written
// before it is marked, and keeps it for awaitAnswer if so. An answer
// already acknowledged holds nothing: while a backlog lasts the worker
// reads on without looking at written, and batches that answer nothing
// do not wait for it, so it is looked at here too.
func (r *partitionResponses) unwritten(offset int64) bool {
	if r == nil || r.pending == nil || offset <= r.pending.from {
		return false
	}
	select {
	case <-r.pending.done:
		if r.pending.ok {
			r.pending, r.unacknowledged = nil, -1 // offset is past what waited
			return false
		}
	default:
	}
	r.unacknowledged = offset
	return true
}
