package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
)

// The tracing phases: the max_messages=100 phase again, once with every
// batch traced (sampled, exported to a collector that discards the spans)
// and once with OTEL_* variables set but no endpoint, which is tracing off;
// both are compared with the plain phase of the same run.
const tracingMaxMessages = 100

// discardCollector is an OTLP/HTTP endpoint that reads each export and
// answers it as a collector does, keeping nothing: what the connector
// pays is the spans' making and sending, not a collector's work. It stops
// with the returned function.
func discardCollector() (url string, stop func()) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
	}))
	return srv.URL, srv.Close
}

// tracingPhases runs the two phases of the run: off first, next to the
// plain phase it should not differ from.
func (b *bench) tracingPhases(r int, rr *runResult) error {
	off := []string{"OTEL_TRACES_SAMPLER=always_on", "OTEL_SERVICE_NAME=bench"}
	p, err := b.throughput(r, phaseSpec{name: "tracing off", topic: topicBacklog, maxMessages: tracingMaxMessages, target: b.n, size: b.size, env: off})
	if err != nil {
		return fmt.Errorf("connector, max_messages=%d, tracing off: %w", tracingMaxMessages, err)
	}
	rr.untraced = p
	url, stop := discardCollector()
	defer stop()
	on := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + url, "OTEL_TRACES_SAMPLER=always_on"}
	p, err = b.throughput(r, phaseSpec{name: "traced", topic: topicBacklog, maxMessages: tracingMaxMessages, target: b.n, size: b.size, env: on})
	if err != nil {
		return fmt.Errorf("connector, max_messages=%d, traced: %w", tracingMaxMessages, err)
	}
	rr.traced = p
	return nil
}

// tracingSummary compares the tracing phases with the plain one, run by
// run.
func tracingSummary(runs []runResult) string {
	var on, off []float64
	for _, r := range runs {
		plain := r.batches[tracingMaxMessages]
		if plain == nil {
			continue
		}
		if r.traced != nil {
			on = append(on, r.traced.rate()/plain.rate())
		}
		if r.untraced != nil {
			off = append(off, r.untraced.rate()/plain.rate())
		}
	}
	if len(on) == 0 {
		return ""
	}
	ratio := func(f float64) string { return fmt.Sprintf("%.2f×", f) }
	var w strings.Builder
	fmt.Fprintf(&w, "\nWith tracing on, every batch sampled and exported, the connector reads the backlog at %.2f× the messages a second of the same phase without tracing%s", median(on), spread(on, ratio))
	if len(off) > 0 {
		fmt.Fprintf(&w, "; with OTEL_* variables but no endpoint (tracing off), at %.2f×%s", median(off), spread(off, ratio))
	}
	w.WriteString(".\n")
	return w.String()
}
