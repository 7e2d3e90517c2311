// Package schematest runs a Confluent-compatible Schema Registry behind a
// real HTTP server, for tests, and writes values in its wire format with
// encoders independent of the connector's decoders: franz-go's pkg/sr for the
// header and its in-memory registry, hamba/avro for Avro, and
// google.golang.org/protobuf for Protobuf.
package schematest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"google.golang.org/protobuf/proto"
)

// Registry is a registry running for one test. Its zero value is not
// useful: use Start.
type Registry struct {
	t      testing.TB
	fake   *srfake.Registry
	server *httptest.Server
	client *sr.Client

	down     atomic.Bool
	mu       sync.Mutex
	requests map[string]int // by path, the GETs answered with a schema or an error
	auths    []string       // the Authorization headers received
}

// Option changes how a Registry is started.
type Option func(*options)

type options struct {
	auth string
	tls  bool
}

// WithAuth makes the registry answer only requests whose Authorization
// header is exactly value (such as "Basic dXNlcjpwYXNz" or "Bearer t"):
// 401 without one, 403 with another.
func WithAuth(value string) Option { return func(o *options) { o.auth = value } }

// WithTLS serves the registry over HTTPS, with a certificate of its own CA
// (see Certificate).
func WithTLS() Option { return func(o *options) { o.tls = true } }

// Start runs a registry until the test ends.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var fakeOpts []srfake.Option
	if o.auth != "" {
		fakeOpts = append(fakeOpts, srfake.WithAuth(o.auth))
	}
	r := &Registry{t: t, fake: srfake.NewRegistry(fakeOpts...), requests: make(map[string]int)}
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			r.mu.Lock()
			r.requests[req.URL.Path]++
			r.auths = append(r.auths, req.Header.Get("Authorization"))
			r.mu.Unlock()
		}
		if r.down.Load() {
			http.Error(w, `{"error_code":50003,"message":"the registry is down"}`, http.StatusServiceUnavailable)
			return
		}
		r.fake.Handler().ServeHTTP(w, req)
	})
	if o.tls {
		r.server = httptest.NewTLSServer(handler)
	} else {
		r.server = httptest.NewServer(handler)
	}
	t.Cleanup(r.server.Close)
	clientOpts := []sr.ClientOpt{sr.URLs(r.server.URL), sr.HTTPClient(r.server.Client())}
	if o.auth != "" {
		clientOpts = append(clientOpts, sr.PreReq(func(req *http.Request) error {
			req.Header.Set("Authorization", o.auth)
			return nil
		}))
	}
	cl, err := sr.NewClient(clientOpts...)
	if err != nil {
		t.Fatalf("registry client: %v", err)
	}
	r.client = cl
	return r
}

// URL is the registry's address.
func (r *Registry) URL() string { return r.server.URL }

// Server is the HTTP server, for its certificate and client.
func (r *Registry) Server() *httptest.Server { return r.server }

// SetDown makes the registry answer every request 503 Service Unavailable,
// or serve again.
func (r *Registry) SetDown(down bool) { r.down.Store(down) }

// Requests returns how many GET requests the registry received for path,
// such as /schemas/ids/1, whatever it answered.
func (r *Registry) Requests(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[path]
}

// Authorizations returns the Authorization headers of the GET requests
// received so far.
func (r *Registry) Authorizations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auths...)
}

// Register registers a schema under subject through the registry's REST
// API, as a producer's serializer does, and returns its ID.
func (r *Registry) Register(subject string, s sr.Schema) int {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	down := r.down.Swap(false)
	defer r.down.Store(down)
	ss, err := r.client.CreateSchema(ctx, subject, s)
	if err != nil {
		r.t.Fatalf("registering a schema under %s: %v", subject, err)
	}
	return ss.ID
}

// Version returns the version of subject that id is.
func (r *Registry) Version(subject string, id int) int {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	usages, err := r.client.SchemaUsagesByID(ctx, id)
	if err != nil {
		r.t.Fatalf("usages of schema %d: %v", id, err)
	}
	for _, u := range usages {
		if u.Subject == subject {
			return u.Version
		}
	}
	r.t.Fatalf("schema %d is not in %s", id, subject)
	return 0
}

// Avro encodes v with the Avro schema text, in the wire format of schema id.
func Avro(t testing.TB, id int, schema string, v any) []byte {
	t.Helper()
	s, err := avro.ParseWithCache(schema, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatalf("parsing the Avro schema: %v", err)
	}
	return AvroWith(t, id, s, v)
}

// AvroWith is Avro with a schema parsed already, for one with references.
func AvroWith(t testing.TB, id int, s avro.Schema, v any) []byte {
	t.Helper()
	b, err := sr.Encode(v, &sr.ConfluentHeader{}, id, nil, func(v any) ([]byte, error) { return avro.Marshal(s, v) })
	if err != nil {
		t.Fatalf("encoding an Avro value: %v", err)
	}
	return b
}

// Protobuf encodes m in the wire format of schema id, as the message at
// index among the schema's messages.
func Protobuf(t testing.TB, id int, index []int, m proto.Message) []byte {
	t.Helper()
	b, err := sr.Encode(m, &sr.ConfluentHeader{}, id, index, func(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) })
	if err != nil {
		t.Fatalf("encoding a Protobuf value: %v", err)
	}
	return b
}

// JSON puts a JSON document in the wire format of schema id.
func JSON(t testing.TB, id int, doc string) []byte {
	t.Helper()
	b, err := sr.Encode(doc, &sr.ConfluentHeader{}, id, nil, func(v any) ([]byte, error) { return []byte(v.(string)), nil })
	if err != nil {
		t.Fatalf("encoding a JSON value: %v", err)
	}
	return b
}
