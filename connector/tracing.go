package connector

import (
	"net/http"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/tracing"
	"github.com/kafka-connector/kafka-connector/types"
)

// SetTracing makes the connector trace its batches and invocations with
// t (see package tracing). Call it before Run. A t that is off, or nil,
// leaves tracing off: every batch then skips the tracing calls at the
// cost of a nil check.
func (c *Connector) SetTracing(t *tracing.Tracing) {
	if t.Enabled() {
		c.tracing = t
	} else {
		c.tracing = nil
	}
}

// triggerTracer is what a trigger's batches need to trace themselves,
// worked out once per trigger; nil when tracing is off.
type triggerTracer struct {
	t        *tracing.Tracing
	function string
	group    string
	keys     bool // trace_keys
	target   tracing.Target
}

func (c *Connector) tracerFor(function string, s types.TriggerSettings) *triggerTracer {
	if c.tracing == nil {
		return nil
	}
	return &triggerTracer{
		t:        c.tracing,
		function: function,
		group:    s.Group,
		keys:     c.cfg.TraceKeys,
		target:   tracing.NewTarget(c.cfg.GatewayURL, function, s.Async),
	}
}

// partitionTrace is what a partition worker keeps for the spans of its
// batches.
type partitionTrace struct {
	// filtered counts the messages the filter rejected since the last
	// batch started, for the next batch's span. Only the worker's
	// goroutine touches it.
	filtered int
}

// traceFiltered records a message the filter rejected: a span in its
// producer's trace, if it carries one, and a count for the next batch.
func (w *partitionWorker) traceFiltered(m *sarama.ConsumerMessage) {
	tr := w.t.tracer
	if tr == nil {
		return
	}
	w.traced.filtered++
	tr.t.Filtered(tr.function, m.Topic, m.Partition, tr.group, tr.keys, tracing.Record{Offset: m.Offset, Key: m.Key, Headers: m.Headers})
}

// traceLaunch hands the count of messages filtered before the batch to
// its flight. It runs on the worker's goroutine, which owns the count.
func (w *partitionWorker) traceLaunch(f *flight) {
	if w.t.tracer == nil {
		return
	}
	f.filtered, w.traced.filtered = w.traced.filtered, 0
}

// startTrace starts the batch's span, on the goroutine that delivers it.
func (f *flight) startTrace() {
	tr := f.w.t.tracer
	if tr == nil {
		return
	}
	f.trace = tr.t.StartBatch(tracing.Batch{
		Function:  tr.function,
		Topic:     f.w.claim.Topic(),
		Partition: f.w.claim.Partition(),
		Group:     tr.group,
		First:     f.first(),
		Last:      f.last(),
		Messages:  f.batch.Len(),
		Filtered:  f.filtered,
		Keys:      tr.keys,
		Records: func(yield func(tracing.Record) bool) {
			for _, it := range f.batch.Items {
				m := it.Payload.msg
				if !yield(tracing.Record{Offset: m.Offset, Key: m.Key, Headers: m.Headers}) {
					return
				}
			}
		},
	})
}

// traceAttempt starts the span of an invocation attempt and writes its
// trace context into the invocation's headers.
func (f *flight) traceAttempt(n int, h http.Header) {
	if tr := f.w.t.tracer; tr != nil {
		f.trace.Attempt(n, tr.target, h)
	}
}

// traceReport records what the batch tells its worker: a partial success
// is an event, the end of the batch ends its span.
func (f *flight) traceReport(r report) {
	switch {
	case r.abandoned:
		f.trace.End(true)
	case r.done:
		f.trace.End(false)
	default:
		f.trace.Partial(r.failedFrom)
	}
}
