package connector_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/tracing"
	"github.com/kafka-connector/kafka-connector/types"
)

// producerContext is a trace context as an instrumented producer writes it
// into a record: trace i, span i, sampled.
func producerContext(i int) (traceID, spanID, traceparent string) {
	traceID = fmt.Sprintf("%032x", 0xabc000+i)
	spanID = fmt.Sprintf("%016x", 0xdef000+i)
	return traceID, spanID, "00-" + traceID + "-" + spanID + "-01"
}

// traced starts tracing to a receiver of the test, exporting spans soon
// after they end; the last ones are flushed when the test ends.
func traced(t *testing.T) (*testkit.OTLPReceiver, func(*connector.Connector)) {
	t.Helper()
	recv := testkit.NewOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	t.Setenv("OTEL_SERVICE_NAME", "connector-under-test")
	tr, err := tracing.FromEnv(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracing is off with an endpoint")
	}
	t.Cleanup(func() {
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return recv, func(c *connector.Connector) { c.SetTracing(tr) }
}

// spansNamed returns the spans received with the name.
func spansNamed(recv *testkit.OTLPReceiver, name string) []testkit.Span {
	var out []testkit.Span
	for _, s := range recv.Spans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func childrenOf(recv *testkit.OTLPReceiver, parent testkit.Span) []testkit.Span {
	var out []testkit.Span
	for _, s := range recv.Spans() {
		if s.TraceID == parent.TraceID && s.ParentSpanID == parent.SpanID {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b testkit.Span) int {
		return int(a.Attributes["kafka_connector.attempt"].(int64) - b.Attributes["kafka_connector.attempt"].(int64))
	})
	return out
}

func eventNames(s testkit.Span) []string {
	var names []string
	for _, e := range s.Events {
		names = append(names, e.Name)
	}
	return names
}

// checkNoValues fails if a span holds one of the messages' values, or a
// key when keys are not traced.
func checkNoValues(t *testing.T, recv *testkit.OTLPReceiver, secrets ...string) {
	t.Helper()
	for _, s := range recv.Spans() {
		all := []map[string]any{s.Attributes}
		for _, e := range s.Events {
			all = append(all, e.Attributes)
		}
		for _, l := range s.Links {
			all = append(all, l.Attributes)
		}
		for _, attrs := range all {
			for k, v := range attrs {
				for _, secret := range secrets {
					if strings.Contains(fmt.Sprint(v), secret) {
						t.Errorf("span %q: attribute %s=%v holds %q", s.Name, k, v, secret)
					}
				}
			}
		}
	}
}

// traceparentOf returns the trace and parent span IDs of a call's
// traceparent header.
func traceparentOf(t *testing.T, c *gatewaytest.Call) (traceID, parentID string) {
	t.Helper()
	parts := strings.Split(c.Header.Get("traceparent"), "-")
	if len(parts) != 4 {
		t.Fatalf("the function received traceparent %q", c.Header.Get("traceparent"))
	}
	return parts[1], parts[2]
}

func TestTracesFollowRecordsIntoTheFunction(t *testing.T) {
	tests := []struct {
		name string
		// records are written to partition 0 in one go: values, keys
		// and whether each carries a trace context.
		records   []bool
		failFirst int // attempts answered 500 before a 200
		traceKeys bool
	}{
		{name: "a batch of one continues the record's trace, its retries as attempt spans", records: []bool{true}, failFirst: 2},
		{name: "a batch of several is linked to each record that carries a context", records: []bool{true, false, true, true}, traceKeys: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recv, withTracing := traced(t)
			client, gw, cfg := setup(t, "traced")
			gw.SetFunctions(fn("follow", "traced"))
			var calls atomic.Int32
			gw.Handle("follow", func(c *gatewaytest.Call) (int, []byte) {
				if int(calls.Add(1)) <= tc.failFirst {
					return http.StatusInternalServerError, nil
				}
				return http.StatusOK, nil
			})
			cfg.MaxWait = time.Second // the records of one write make one batch
			cfg.TraceKeys = tc.traceKeys
			var recs []*kgo.Record
			var secrets []string
			for i, carries := range tc.records {
				key, value := fmt.Sprintf("customer-%d", i), fmt.Sprintf("card-number-%d", i)
				secrets = append(secrets, value)
				r := testkit.Record("traced", 0, []byte(key), []byte(value))
				if carries {
					_, _, tp := producerContext(i)
					r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}, {Key: "tracestate", Value: []byte("vendor=x")}}
				}
				recs = append(recs, r)
			}
			client.Produce(recs...)
			testkit.Start(t, cfg, withTracing)

			var batch testkit.Span
			testkit.Eventually(t, 30*time.Second, func() bool {
				spans := spansNamed(recv, "process traced")
				if len(spans) == 0 {
					return false
				}
				batch = spans[0]
				return len(childrenOf(recv, batch)) == tc.failFirst+1
			}, "a batch span and %d attempt spans; received %v", tc.failFirst+1, recv.Spans())

			if got := spansNamed(recv, "process traced"); len(got) != 1 {
				t.Fatalf("%d batch spans, want 1 batch of %d records", len(got), len(tc.records))
			}
			want := map[string]any{
				"messaging.system":                   "kafka",
				"messaging.operation.type":           "process",
				"messaging.destination.name":         "traced",
				"messaging.destination.partition.id": "0",
				"messaging.consumer.group.name":      "kafka-connector-follow",
				"messaging.batch.message_count":      int64(len(tc.records)),
				"kafka_connector.batch.first_offset": int64(0),
				"kafka_connector.batch.last_offset":  int64(len(tc.records) - 1),
				"kafka_connector.batch.outcome":      "delivered",
				"faas.invoked_name":                  "follow",
			}
			for k, v := range want {
				if batch.Attributes[k] != v {
					t.Errorf("batch span: %s=%v, want %v", k, batch.Attributes[k], v)
				}
			}
			if batch.Kind != tracepb.Span_SPAN_KIND_CONSUMER {
				t.Errorf("batch span of kind %v, want consumer", batch.Kind)
			}
			if got := batch.Resource["service.name"]; got != "connector-under-test" {
				t.Errorf("service.name %v, want OTEL_SERVICE_NAME's", got)
			}

			if len(tc.records) == 1 {
				traceID, spanID, _ := producerContext(0)
				if batch.TraceID != traceID || batch.ParentSpanID != spanID {
					t.Errorf("batch span in trace %s under %s, want the producer's %s under %s", batch.TraceID, batch.ParentSpanID, traceID, spanID)
				}
				if batch.TraceState != "vendor=x" {
					t.Errorf("batch span tracestate %q, want the record's", batch.TraceState)
				}
			} else {
				if batch.ParentSpanID != "" {
					t.Errorf("a batch of several records has parent %s, want a root linked to its records", batch.ParentSpanID)
				}
				var links []string
				for _, l := range batch.Links {
					links = append(links, fmt.Sprintf("%s/%s@%v key=%v", l.TraceID, l.SpanID, l.Attributes["messaging.kafka.offset"], l.Attributes["messaging.kafka.message.key"]))
				}
				var wantLinks []string
				for i, carries := range tc.records {
					if carries {
						traceID, spanID, _ := producerContext(i)
						wantLinks = append(wantLinks, fmt.Sprintf("%s/%s@%d key=customer-%d", traceID, spanID, i, i))
					}
				}
				if !slices.Equal(links, wantLinks) {
					t.Errorf("links\n%v\nwant\n%v", links, wantLinks)
				}
			}

			attempts := childrenOf(recv, batch)
			received := gw.Calls("follow")
			if len(received) != len(attempts) {
				t.Fatalf("the function received %d calls, %d attempt spans", len(received), len(attempts))
			}
			for i, a := range attempts {
				wantStatus := int64(http.StatusOK)
				if i < tc.failFirst {
					wantStatus = http.StatusInternalServerError
				}
				if a.Kind != tracepb.Span_SPAN_KIND_CLIENT || a.Attributes["kafka_connector.attempt"] != int64(i+1) ||
					a.Attributes["http.response.status_code"] != wantStatus || a.Attributes["http.request.method"] != "POST" {
					t.Errorf("attempt %d: kind %v, attributes %v; want a client span of attempt %d answered %d", i+1, a.Kind, a.Attributes, i+1, wantStatus)
				}
				if wantStatus != http.StatusOK && a.StatusCode != tracepb.Status_STATUS_CODE_ERROR {
					t.Errorf("attempt %d answered %d with span status %v, want an error", i+1, wantStatus, a.StatusCode)
				}
				traceID, parentID := traceparentOf(t, received[i])
				if traceID != batch.TraceID || parentID != a.SpanID {
					t.Errorf("call %d carried trace %s under %s, want the attempt span's %s under %s", i+1, traceID, parentID, batch.TraceID, a.SpanID)
				}
			}
			var retries []string
			for _, e := range eventNames(batch) {
				if e == tracing.EventRetry {
					retries = append(retries, e)
				}
			}
			if len(retries) != tc.failFirst {
				t.Errorf("batch span events %v, want %d retries", eventNames(batch), tc.failFirst)
			}
			if !tc.traceKeys {
				secrets = append(secrets, "customer-")
			}
			checkNoValues(t, recv, secrets...)
			if bad := recv.Refused(); len(bad) > 0 {
				t.Errorf("the receiver refused %v", bad)
			}
		})
	}
}

// Giving up, dead-lettering and filtering show on the spans: a filtered
// message that carries a trace context gets a span in its trace, and the
// next batch counts it.
func TestTracesShowGivingUpDeadLettersAndFiltering(t *testing.T) {
	recv, withTracing := traced(t)
	client, gw, cfg := setup(t, "graded")
	client.CreateTopic("graded.dlq", 1)
	gw.SetFunctions(types.Function{Name: "grade", Annotations: map[string]string{"topic": "graded", types.AnnotationFilter: `value != "skip"`}})
	gw.Handle("grade", func(c *gatewaytest.Call) (int, []byte) { return http.StatusInternalServerError, nil })
	cfg.MaxRetries = 1
	cfg.DeadLetterTopic = "graded.dlq"
	cfg.MaxMessages = 1
	_, _, skipped := producerContext(1)
	_, _, bad := producerContext(2)
	client.Produce(
		&kgo.Record{Topic: "graded", Partition: 0, Value: []byte("skip"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(skipped)}}},
		&kgo.Record{Topic: "graded", Partition: 0, Value: []byte("bad"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(bad)}}},
	)
	testkit.Start(t, cfg, withTracing)
	testkit.ReadAll(t, client.Cluster, "graded.dlq", 1, 30*time.Second)

	var batch testkit.Span
	testkit.Eventually(t, 30*time.Second, func() bool {
		spans := spansNamed(recv, "process graded")
		if len(spans) == 0 || len(spansNamed(recv, "filter graded")) == 0 {
			return false
		}
		batch = spans[0]
		return true
	}, "a batch span and a filter span; received %v", recv.Spans())

	filtered := spansNamed(recv, "filter graded")[0]
	traceID, spanID, _ := producerContext(1)
	if filtered.TraceID != traceID || filtered.ParentSpanID != spanID || filtered.Attributes["kafka_connector.filter.rejected"] != true {
		t.Errorf("filter span in trace %s under %s with %v; want the filtered record's trace %s under %s, rejected",
			filtered.TraceID, filtered.ParentSpanID, filtered.Attributes, traceID, spanID)
	}
	traceID, spanID, _ = producerContext(2)
	if batch.TraceID != traceID || batch.ParentSpanID != spanID {
		t.Errorf("batch span in trace %s under %s, want the record's %s under %s", batch.TraceID, batch.ParentSpanID, traceID, spanID)
	}
	if got := batch.Attributes["kafka_connector.batch.filtered_messages"]; got != int64(1) {
		t.Errorf("batch span filtered_messages=%v, want 1", got)
	}
	if got := batch.Attributes["kafka_connector.batch.outcome"]; got != "dead_lettered" || batch.StatusCode != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("batch span outcome %v, status %v; want dead_lettered, an error", got, batch.StatusCode)
	}
	wantEvents := []string{tracing.EventRetry, tracing.EventGiveUp, tracing.EventDeadLettered}
	if got := eventNames(batch); !slices.Equal(got, wantEvents) {
		t.Errorf("batch span events %v, want %v", got, wantEvents)
	}
	checkNoValues(t, recv, "bad", "skip")
}

// Without an endpoint there is no tracer: nothing is exported, and the
// function receives no trace context, even for a record that carries
// one.
func TestNoEndpointNoTracing(t *testing.T) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(name, "")
	}
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tr, err := tracing.FromEnv(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("tracing is on without an endpoint")
	}
	client, gw, cfg := setup(t, "plain")
	gw.SetFunctions(fn("plain", "plain"))
	_, _, tp := producerContext(0)
	client.Produce(&kgo.Record{Topic: "plain", Partition: 0, Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}})
	testkit.Start(t, cfg, func(c *connector.Connector) { c.SetTracing(tr) })
	testkit.Eventually(t, 30*time.Second, func() bool { return len(gw.Calls("plain")) == 1 }, "one call")
	if got := gw.Calls("plain")[0].Header.Get("traceparent"); got != "" {
		t.Errorf("the function received traceparent %q with tracing off", got)
	}
}

// A wait the function asks for shows on the batch span, and its attempt is
// marked as back-pressure; batches of a partition in flight at once each
// have their span.
func TestTracesShowBackPressure(t *testing.T) {
	recv, withTracing := traced(t)
	client, gw, cfg := setup(t, "pressed")
	gw.SetFunctions(fn("press", "pressed"))
	var calls atomic.Int32
	gw.Handle("press", func(c *gatewaytest.Call) (int, []byte) {
		if calls.Add(1) == 1 {
			c.Reply.Set("Retry-After", "0")
			return http.StatusTooManyRequests, nil
		}
		return http.StatusOK, nil
	})
	cfg.Ordering = "none"
	cfg.Concurrency = 4
	cfg.MaxMessages = 1
	var recs []*kgo.Record
	for i := range 4 {
		_, _, tp := producerContext(i)
		recs = append(recs, &kgo.Record{Topic: "pressed", Partition: 0, Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}})
	}
	client.Produce(recs...)
	testkit.Start(t, cfg, withTracing)

	testkit.Eventually(t, 30*time.Second, func() bool {
		return len(spansNamed(recv, "process pressed")) == 4 && len(spansNamed(recv, "POST /function/press")) == 5
	}, "4 batch spans and 5 attempt spans; received %v", recv.Spans())
	pressed := 0
	for _, b := range spansNamed(recv, "process pressed") {
		traceID, spanID := "", ""
		for i := range 4 {
			if id, sid, _ := producerContext(i); b.TraceID == id {
				traceID, spanID = id, sid
			}
		}
		if traceID == "" || b.ParentSpanID != spanID {
			t.Errorf("batch span in trace %s under %s, not a record's", b.TraceID, b.ParentSpanID)
		}
		if slices.Contains(eventNames(b), tracing.EventBackPressure) {
			pressed++
			attempts := childrenOf(recv, b)
			if len(attempts) != 2 || attempts[0].Attributes["kafka_connector.backpressure"] != true ||
				attempts[0].Attributes["http.response.status_code"] != int64(http.StatusTooManyRequests) {
				t.Errorf("attempts of the batch that waited: %v", attempts)
			}
		}
	}
	if pressed != 1 {
		t.Errorf("%d batch spans with a back-pressure event, want 1", pressed)
	}
}
