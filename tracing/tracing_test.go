package tracing_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/IBM/sarama"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/tracing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    tracing.Settings
		wrong   string // the variable named by the error
		allowed string
	}{
		{name: "nothing set: off", env: nil, want: tracing.Settings{}},
		{name: "a sampler without an endpoint: off", env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, want: tracing.Settings{}},
		{
			name: "an endpoint: on over http/protobuf",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			want: tracing.Settings{On: true, Endpoint: "http://collector:4318", Protocol: "http/protobuf"},
		},
		{
			name: "the traces endpoint and protocol win over the general ones",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
			},
			want: tracing.Settings{On: true, Endpoint: "https://traces:4317", Protocol: "grpc"},
		},
		{
			name: "credentials in the endpoint are not repeated",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:secret@collector:4318/otlp"},
			want: tracing.Settings{On: true, Endpoint: "https://collector:4318/otlp", Protocol: "http/protobuf"},
		},
		{
			name: "a sampler and its ratio",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			want: tracing.Settings{On: true, Endpoint: "http://c:4318", Protocol: "http/protobuf", Sampler: "parentbased_traceidratio", SamplerArg: "0.25"},
		},
		{name: "disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, want: tracing.Settings{}},
		{name: "no exporter", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, want: tracing.Settings{}},
		{name: "another exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wrong: "OTEL_TRACES_EXPORTER", allowed: "otlp or none"},
		{name: "disabled, misspelt", env: map[string]string{"OTEL_SDK_DISABLED": "yes please"}, wrong: "OTEL_SDK_DISABLED", allowed: "true or false"},
		{name: "JSON over HTTP", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wrong: "OTEL_EXPORTER_OTLP_PROTOCOL", allowed: "http/protobuf or grpc"},
		{name: "an endpoint without a scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, wrong: "OTEL_EXPORTER_OTLP_ENDPOINT", allowed: "an http or https URL"},
		{name: "a traces endpoint that is no URL", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://[::1"}, wrong: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", allowed: "an http or https URL"},
		{name: "an unknown sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, wrong: "OTEL_TRACES_SAMPLER", allowed: "parentbased_always_on"},
		{name: "a ratio above 1", env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, wrong: "OTEL_TRACES_SAMPLER_ARG", allowed: "a ratio from 0 to 1"},
		{name: "a ratio that is no number", env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, wrong: "OTEL_TRACES_SAMPLER_ARG", allowed: "a ratio from 0 to 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(name string) (string, bool) { v, ok := tc.env[name]; return v, ok }
			got, err := tracing.Check(lookup)
			if tc.wrong == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			var bad *config.Error
			if !errors.As(err, &bad) {
				t.Fatalf("got %+v, %v; want an error naming %s", got, err, tc.wrong)
			}
			if bad.Var != tc.wrong || bad.Value != strings.ToLower(tc.env[tc.wrong]) && bad.Value != tc.env[tc.wrong] || !strings.Contains(bad.Allowed, tc.allowed) {
				t.Errorf("error %q: want it to name %s=%q and allow %q", err, tc.wrong, tc.env[tc.wrong], tc.allowed)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	header := func(k, v string) *sarama.RecordHeader { return &sarama.RecordHeader{Key: []byte(k), Value: []byte(v)} }
	tests := []struct {
		name      string
		headers   []*sarama.RecordHeader
		valid     bool
		sampled   bool
		wantState string
	}{
		{name: "none", headers: nil},
		{name: "other headers", headers: []*sarama.RecordHeader{header("content-type", "json")}},
		{name: "traceparent", headers: []*sarama.RecordHeader{header("traceparent", tp)}, valid: true, sampled: true},
		{name: "any case, with tracestate", headers: []*sarama.RecordHeader{header("Traceparent", tp), header("TRACESTATE", "a=1,b=2")}, valid: true, sampled: true, wantState: "a=1,b=2"},
		{name: "not sampled", headers: []*sarama.RecordHeader{header("traceparent", strings.TrimSuffix(tp, "01")+"00")}, valid: true},
		{name: "malformed", headers: []*sarama.RecordHeader{header("traceparent", "00-zz-yy-01")}},
		{name: "all-zero trace", headers: []*sarama.RecordHeader{header("traceparent", "00-00000000000000000000000000000000-b7ad6b7169203331-01")}},
		{name: "a nil header among them", headers: []*sarama.RecordHeader{nil, header("traceparent", tp)}, valid: true, sampled: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := tracing.Extract(tc.headers)
			if sc.IsValid() != tc.valid || sc.IsSampled() != tc.sampled || sc.TraceState().String() != tc.wantState {
				t.Errorf("valid %v sampled %v state %q; want %v %v %q", sc.IsValid(), sc.IsSampled(), sc.TraceState(), tc.valid, tc.sampled, tc.wantState)
			}
			if sc.IsValid() && (sc.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || !sc.IsRemote()) {
				t.Errorf("trace %s remote %v", sc.TraceID(), sc.IsRemote())
			}
		})
	}
}

// The producer's sampling decision holds: a record that was not sampled
// gives no span, but the function is still told the trace, not sampled,
// so that it does not start one of its own.
func TestSamplingFollowsTheProducer(t *testing.T) {
	tests := []struct {
		name      string
		flags     string
		wantSpans int
	}{
		{name: "sampled", flags: "01", wantSpans: 2},
		{name: "not sampled", flags: "00", wantSpans: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recv := testkit.NewOTLPReceiver(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
			t.Setenv("OTEL_TRACES_SAMPLER", "")
			tr, err := tracing.FromEnv(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			traceID := "0af7651916cd43dd8448eb211c80319c"
			headers := []*sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte("00-" + traceID + "-b7ad6b7169203331-" + tc.flags)}}
			b := tr.StartBatch(tracing.Batch{Topic: "t", Messages: 1, Records: func(yield func(tracing.Record) bool) {
				yield(tracing.Record{Offset: 7, Headers: headers})
			}})
			h := http.Header{}
			b.Attempt(1, tracing.NewTarget("http://gateway:8080", "fn", false), h)
			b.Answered(200, nil)
			b.AttemptEnded(false, -1)
			b.End(false)
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(h.Get("traceparent"), "-")
			if len(parts) != 4 || parts[1] != traceID || parts[3] != tc.flags {
				t.Errorf("the function is told traceparent %q, want trace %s with flags %s", h.Get("traceparent"), traceID, tc.flags)
			}
			if got := len(recv.Spans()); got != tc.wantSpans {
				t.Errorf("%d spans exported, want %d", got, tc.wantSpans)
			}
		})
	}
}

// traceService is an OTLP/gRPC trace receiver.
type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (s *traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.names = append(s.names, sp.GetName())
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over gRPC.
func TestExportsOverGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	svc := &traceService{}
	coltracepb.RegisterTraceServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	tr, err := tracing.FromEnv(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	b := tr.StartBatch(tracing.Batch{Topic: "orders", Messages: 2, Records: func(func(tracing.Record) bool) {}})
	b.End(false)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if !slices.Equal(svc.names, []string{"process orders"}) {
		t.Errorf("received %v, want the batch span", svc.names)
	}
}

func TestNewTarget(t *testing.T) {
	h := http.Header{}
	recv := testkit.NewOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	tr, err := tracing.FromEnv(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	b := tr.StartBatch(tracing.Batch{Topic: "t", Messages: 2, Records: func(func(tracing.Record) bool) {}})
	b.Attempt(1, tracing.NewTarget("https://admin:secret@gateway.openfaas:8443/base", "fn.openfaas-fn", true), h)
	b.Answered(0, fmt.Errorf("dial: %w", context.DeadlineExceeded))
	b.AttemptEnded(false, -1)
	b.End(true)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var attempt testkit.Span
	for _, s := range recv.Spans() {
		if s.Name == "POST /async-function/fn.openfaas-fn" {
			attempt = s
		}
	}
	want := map[string]any{
		"url.full":          "https://gateway.openfaas:8443/base/async-function/fn.openfaas-fn",
		"server.address":    "gateway.openfaas",
		"server.port":       int64(8443),
		"faas.invoked_name": "fn.openfaas-fn",
		"error.type":        "timeout",
	}
	for k, v := range want {
		if attempt.Attributes[k] != v {
			t.Errorf("%s=%v, want %v (spans %v)", k, attempt.Attributes[k], v, recv.Spans())
		}
	}
}

// The SDK's errors are reported once an interval at most.
func TestErrorHandler(t *testing.T) {
	var got []error
	h := tracing.ErrorHandler(1<<62, func(err error) { got = append(got, err) })
	first := errors.New("first")
	h(first)
	h(errors.New("second"))
	if !slices.Equal(got, []error{first}) {
		t.Errorf("reported %v, want only the first", got)
	}
}

// A batch links its first records up to the SDK's limit of links a span.
func TestLinksKeepTheFirstRecords(t *testing.T) {
	recv := testkit.NewOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "2")
	tr, err := tracing.FromEnv(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	b := tr.StartBatch(tracing.Batch{Topic: "t", Messages: 3, Records: func(yield func(tracing.Record) bool) {
		for i := range 3 {
			tp := fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
			if !yield(tracing.Record{Offset: int64(i), Headers: []*sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte(tp)}}}) {
				return
			}
		}
	}})
	b.End(false)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := recv.Spans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the batch's", len(spans))
	}
	var offsets []any
	for _, l := range spans[0].Links {
		offsets = append(offsets, l.Attributes["messaging.kafka.offset"])
	}
	if !slices.Equal(offsets, []any{int64(0), int64(1)}) {
		t.Errorf("links to the records at %v, want the first two", offsets)
	}
}
