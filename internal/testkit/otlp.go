package testkit

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver is an OpenTelemetry collector's OTLP/HTTP trace receiver
// behind a real HTTP server: it decodes the protobuf requests the SDK's
// exporter posts to /v1/traces and keeps their spans.
type OTLPReceiver struct {
	// URL is what OTEL_EXPORTER_OTLP_ENDPOINT names.
	URL string

	mu    sync.Mutex
	spans []Span
	bad   []string
}

// Span is a span as a receiver decoded it: IDs in hex, attribute values
// as Go strings, int64s, float64s or bools.
type Span struct {
	Name          string
	TraceID       string
	SpanID        string
	ParentSpanID  string // empty for a root
	TraceState    string
	Kind          tracepb.Span_SpanKind
	Attributes    map[string]any
	Events        []Event
	Links         []Link
	StatusCode    tracepb.Status_StatusCode
	StatusMessage string
	// Resource is the attributes of the service that sent the span.
	Resource map[string]any
}

// Event is a span's event.
type Event struct {
	Name       string
	Attributes map[string]any
}

// Link is a span's link to another span.
type Link struct {
	TraceID, SpanID string
	Attributes      map[string]any
}

// NewOTLPReceiver starts a receiver; it stops when the test ends.
func NewOTLPReceiver(t testing.TB) *OTLPReceiver {
	t.Helper()
	r := &OTLPReceiver{}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *OTLPReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		r.refuse(w, http.StatusNotFound, fmt.Sprintf("%s %s", req.Method, req.URL.Path))
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		r.refuse(w, http.StatusUnsupportedMediaType, "Content-Type "+ct)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(req.Body)
		if err != nil {
			r.refuse(w, http.StatusBadRequest, err.Error())
			return
		}
		body = z
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		r.refuse(w, http.StatusBadRequest, err.Error())
		return
	}
	var export coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &export); err != nil {
		r.refuse(w, http.StatusBadRequest, "not an ExportTraceServiceRequest: "+err.Error())
		return
	}
	var got []Span
	for _, rs := range export.GetResourceSpans() {
		res := attributes(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, decodeSpan(s, res))
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (r *OTLPReceiver) refuse(w http.ResponseWriter, status int, why string) {
	r.mu.Lock()
	r.bad = append(r.bad, why)
	r.mu.Unlock()
	http.Error(w, why, status)
}

// Spans returns the spans received so far, in the order they came.
func (r *OTLPReceiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Refused returns why requests were refused: anything but a trace export
// in protobuf.
func (r *OTLPReceiver) Refused() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

func decodeSpan(s *tracepb.Span, res map[string]any) Span {
	out := Span{
		Name:          s.GetName(),
		TraceID:       hex.EncodeToString(s.GetTraceId()),
		SpanID:        hex.EncodeToString(s.GetSpanId()),
		ParentSpanID:  hex.EncodeToString(s.GetParentSpanId()),
		TraceState:    s.GetTraceState(),
		Kind:          s.GetKind(),
		Attributes:    attributes(s.GetAttributes()),
		StatusCode:    s.GetStatus().GetCode(),
		StatusMessage: s.GetStatus().GetMessage(),
		Resource:      res,
	}
	for _, e := range s.GetEvents() {
		out.Events = append(out.Events, Event{Name: e.GetName(), Attributes: attributes(e.GetAttributes())})
	}
	for _, l := range s.GetLinks() {
		out.Links = append(out.Links, Link{
			TraceID:    hex.EncodeToString(l.GetTraceId()),
			SpanID:     hex.EncodeToString(l.GetSpanId()),
			Attributes: attributes(l.GetAttributes()),
		})
	}
	return out
}

func attributes(kvs []*commonpb.KeyValue) map[string]any {
	out := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = x.IntValue
		case *commonpb.AnyValue_DoubleValue:
			out[kv.GetKey()] = x.DoubleValue
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = x.BoolValue
		default:
			out[kv.GetKey()] = v.String()
		}
	}
	return out
}
