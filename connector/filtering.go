package connector

import (
	"fmt"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/filter"
)

// await returns the next message that the filter accepts, or nil when the
// claim or the session ends. No batch is open meanwhile, so the messages it
// rejects are finished as soon as they are read: a stretch of them is
// committed before waiting for more, not after each one, and without an
// invocation.
func (w *partitionWorker) await(msgs <-chan *sarama.ConsumerMessage, done <-chan struct{}) *sarama.ConsumerMessage {
	rejected, last := 0, int64(0)
	finish := func() {
		if rejected > 0 {
			w.commit(last + 1)
			w.metrics.filtered.Add(float64(rejected))
			rejected = 0
		}
	}
	for {
		var m *sarama.ConsumerMessage
		var ok bool
		select {
		case m, ok = <-msgs:
		case <-done:
			return nil
		default:
			finish()
			select {
			case m, ok = <-msgs:
			case <-done:
				return nil
			}
		}
		if !ok {
			return nil
		}
		if w.accept(m) {
			// The stretch before m is finished with m's batch.
			if rejected > 0 {
				w.metrics.filtered.Add(float64(rejected))
			}
			return m
		}
		rejected, last = rejected+1, m.Offset
	}
}

// accept reports whether the function's filter lets m through. A message
// the expression cannot be evaluated on (a missing field or header, a value
// that is not JSON) does not match; the trigger's first such failure is
// logged with where it happened, the later ones only counted as filtered.
func (w *partitionWorker) accept(m *sarama.ConsumerMessage) bool {
	f := w.t.filter
	if f == nil {
		return true
	}
	// The worker's own message and headers, reused: Match keeps nothing.
	w.headers = w.headers[:0]
	for _, h := range m.Headers {
		w.headers = append(w.headers, filter.Header{Key: h.Key, Value: h.Value})
	}
	w.msg = filter.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value, Headers: w.headers, Timestamp: m.Timestamp}
	ok, err := f.Match(&w.msg)
	if err != nil {
		if w.t.filterFailed.CompareAndSwap(false, true) {
			w.log.Warn("kafka-filter failed on a message, which is not delivered; later failures of this trigger are not logged",
				// A conversion error can quote the message: a part of it only.
				"offset", m.Offset, "filter", f.String(), "error", fmt.Sprintf("%.300s", err))
		}
		return false
	}
	return ok
}
