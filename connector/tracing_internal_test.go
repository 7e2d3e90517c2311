package connector

import (
	"net/http"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// With tracing off, a batch pays for its tracing calls with nil checks
// alone: nothing is allocated.
func TestTracingOffAllocatesNothing(t *testing.T) {
	w := &partitionWorker{t: &trigger{}}
	f := &flight{w: w}
	h := http.Header{}
	m := &sarama.ConsumerMessage{Headers: []*sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}}
	allocs := testing.AllocsPerRun(100, func() {
		w.traceFiltered(m)
		w.traceLaunch(f)
		f.startTrace()
		f.traceAttempt(1, h)
		f.trace.Answered(http.StatusTooManyRequests, nil)
		f.trace.AttemptEnded(true, -1)
		f.trace.BackPressure(1, time.Second, 1)
		f.trace.Retry(2, time.Second)
		f.traceReport(report{failedFrom: 3})
		f.trace.GiveUp(2)
		f.trace.DeadLetterFailed("dlq", "transient")
		f.trace.DeadLettered("dlq", 1)
		f.traceReport(report{done: true})
	})
	if allocs != 0 {
		t.Errorf("%v allocations a batch with tracing off, want none", allocs)
	}
	if len(h) != 0 {
		t.Errorf("headers %v added with tracing off", h)
	}
}
