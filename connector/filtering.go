package connector

import (
	"fmt"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/filter"
)

// accept reports whether the function's filter lets m through, seeing its
// key and value as d decoded them (nil for raw). A message
// the expression cannot be evaluated on (a missing field or header, a value
// that is not JSON) does not match; the trigger's first such failure is
// logged with where it happened, the later ones only counted as filtered.
func (w *partitionWorker) accept(m *sarama.ConsumerMessage, d *decoded) bool {
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
	if d != nil {
		if d.key.JSON != nil {
			w.msg.Key = d.key.JSON
		}
		if d.value.JSON != nil {
			w.msg.Value = d.value.JSON
		}
	}
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
