package schema

import (
	"container/list"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Options say how to reach a registry. Its zero value is not useful: URLs
// are needed.
type Options struct {
	// URLs are the registry's addresses, tried in turn: an address that
	// fails is left for the next until one answers. They carry no
	// credentials.
	URLs []string
	// Username and Password, when Username is set, are sent as HTTP basic
	// authentication; Token, when set, as a bearer token. At most one of
	// the two.
	Username, Password string
	Token              string
	// TLS is the client's TLS configuration, for a registry whose
	// certificate a private CA signs; nil for the system's.
	TLS *tls.Config
	// CacheSize bounds the schemas kept compiled; DefaultCacheSize when 0.
	CacheSize int
	// Timeout bounds one request; DefaultTimeout when 0.
	Timeout time.Duration
}

// DefaultCacheSize is how many compiled schemas a Registry keeps unless told
// otherwise: far more than the schema IDs a connector's topics are written
// with at a time (usually one or two per topic), and few enough that even
// large Protobuf files stay within some tens of MiB.
const DefaultCacheSize = 1000

// DefaultTimeout bounds one request to the registry: a registry that does
// not answer within it counts as unreachable, and is asked again.
const DefaultTimeout = 10 * time.Second

// Registry fetches schemas from a Confluent-compatible Schema Registry,
// compiles them, and decodes the values written with them. It is safe for
// concurrent use; the schemas of the IDs asked for at once by several
// goroutines are fetched once.
type Registry struct {
	urls    []string
	auth    string // the Authorization header, or ""
	client  *http.Client
	size    int
	current atomic.Int32 // the index of the URL that answered last

	mu      sync.Mutex
	entries map[int]*list.Element // of *entry, most recently used first
	lru     list.List
	loading map[int]*load
}

// entry is a compiled schema, or a schema that will never compile.
type entry struct {
	id     int
	schema *Schema
	err    *UndecodableError
}

// load is a fetch in progress, which the other goroutines asking for the
// same ID wait for.
type load struct {
	done   chan struct{}
	schema *Schema
	err    error
}

// New returns a client of the registry that o describes.
func New(o Options) (*Registry, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("no registry URL")
	}
	r := &Registry{urls: o.URLs, size: o.CacheSize, entries: make(map[int]*list.Element), loading: make(map[int]*load)}
	for _, u := range o.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("registry URL %q: not an http or https URL with a host", u)
		}
		if p.User != nil {
			return nil, fmt.Errorf("registry URL %q: credentials belong in files, not in the URL", p.Redacted())
		}
	}
	if r.size <= 0 {
		r.size = DefaultCacheSize
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if o.TLS != nil {
		transport.TLSClientConfig = o.TLS.Clone()
	}
	r.client = &http.Client{Transport: transport, Timeout: timeout}
	switch {
	case o.Token != "" && o.Username != "":
		return nil, errors.New("both a bearer token and a user name: give one")
	case o.Token != "":
		r.auth = "Bearer " + o.Token
	case o.Username != "":
		req := http.Request{Header: make(http.Header)}
		req.SetBasicAuth(o.Username, o.Password)
		r.auth = req.Header.Get("Authorization")
	}
	return r, nil
}

// URL returns the registry's address that answered last (or the first), to
// name it in logs.
func (r *Registry) URL() string { return r.urls[int(r.current.Load())%len(r.urls)] }

// Schema returns the compiled schema of id, fetching it the first time. The
// error is an *UnavailableError or an *UndecodableError.
func (r *Registry) Schema(ctx context.Context, id int) (*Schema, error) {
	r.mu.Lock()
	if el, ok := r.entries[id]; ok {
		r.lru.MoveToFront(el)
		e := el.Value.(*entry)
		r.mu.Unlock()
		if e.err != nil {
			return nil, e.err
		}
		return e.schema, nil
	}
	l, waiting := r.loading[id]
	if !waiting {
		// The fetch is not the caller's alone: it goes on, for those
		// waiting and for the cache, if the caller gives up, and ends
		// within the request timeout.
		l = &load{done: make(chan struct{})}
		r.loading[id] = l
		go r.load(context.WithoutCancel(ctx), id, l)
	}
	r.mu.Unlock()
	select {
	case <-l.done:
		return l.schema, l.err
	case <-ctx.Done():
		return nil, &UnavailableError{Registry: r.URL(), Err: ctx.Err()}
	}
}

// load fetches the schema of id for those waiting on l, and caches it.
func (r *Registry) load(ctx context.Context, id int, l *load) {
	l.schema, l.err = r.fetch(ctx, id)
	r.mu.Lock()
	delete(r.loading, id)
	var undecodable *UndecodableError
	switch {
	case l.err == nil:
		r.keep(&entry{id: id, schema: l.schema})
	case errors.As(l.err, &undecodable) && undecodable.cached:
		r.keep(&entry{id: id, err: undecodable})
	}
	r.mu.Unlock()
	close(l.done)
}

// keep caches e, dropping the least recently used beyond the size. r.mu
// must be held.
func (r *Registry) keep(e *entry) {
	r.entries[e.id] = r.lru.PushFront(e)
	for r.lru.Len() > r.size {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.entries, old.Value.(*entry).id)
	}
}

// Cached returns how many schemas the cache holds.
func (r *Registry) Cached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}

// schemaResponse is the registry's answer for a schema, by ID or by subject
// and version.
type schemaResponse struct {
	Schema     string      `json:"schema"`
	SchemaType string      `json:"schemaType"`
	References []reference `json:"references"`
}

type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// Bounds on the references of one schema, against a registry that would
// answer with a cycle or without end.
const (
	maxReferences     = 256
	maxReferenceDepth = 32
)

// fetch fetches and compiles the schema of id, with its references.
func (r *Registry) fetch(ctx context.Context, id int) (*Schema, error) {
	var top schemaResponse
	if err := r.get(ctx, "/schemas/ids/"+strconv.Itoa(id), id, &top); err != nil {
		return nil, err
	}
	s := &Schema{ID: id, IDText: strconv.Itoa(id)}
	switch top.SchemaType {
	case "", "AVRO":
		s.Type = Avro
	case "PROTOBUF":
		s.Type = Protobuf
	case "JSON":
		s.Type = JSONSchema
		// The JSON a value carries is its JSON: its schema, and those it
		// references, are not needed to read it.
		return s, nil
	default:
		return nil, cachedUndecodable(id, "schema type %q: want AVRO, PROTOBUF or JSON", top.SchemaType)
	}
	refs, err := r.references(ctx, id, top.References)
	if err != nil {
		return nil, err
	}
	switch s.Type {
	case Avro:
		texts := make([]string, len(refs))
		for i, ref := range refs {
			texts[i] = ref.text
		}
		if s.avro, err = compileAvro(top.Schema, texts); err != nil {
			return nil, cachedUndecodable(id, "the Avro schema does not compile: %v", err)
		}
	case Protobuf:
		texts := make(map[string]string, len(refs))
		for _, ref := range refs {
			texts[ref.name] = ref.text
		}
		if s.proto, err = compileProto(ctx, top.Schema, texts); err != nil {
			return nil, cachedUndecodable(id, "the Protobuf schema does not compile: %v", err)
		}
	}
	return s, nil
}

// resolved is one referenced schema's text, under the name it is referenced by.
type resolved struct {
	name, text string
}

// references fetches the schemas that refs name, and those they name in
// turn, each once, every one after those it references.
func (r *Registry) references(ctx context.Context, id int, refs []reference) ([]resolved, error) {
	var out []resolved
	seen := make(map[string]bool)
	var walk func(refs []reference, depth int) error
	walk = func(refs []reference, depth int) error {
		if depth > maxReferenceDepth {
			return cachedUndecodable(id, "references nested deeper than %d", maxReferenceDepth)
		}
		for _, ref := range refs {
			key := ref.Subject + "\x00" + strconv.Itoa(ref.Version)
			if seen[key] {
				continue
			}
			seen[key] = true
			if len(seen) > maxReferences {
				return cachedUndecodable(id, "more than %d references", maxReferences)
			}
			var s schemaResponse
			path := "/subjects/" + url.PathEscape(ref.Subject) + "/versions/" + strconv.Itoa(ref.Version)
			if err := r.get(ctx, path, id, &s); err != nil {
				return err
			}
			if err := walk(s.References, depth+1); err != nil {
				return err
			}
			out = append(out, resolved{name: ref.Name, text: s.Schema})
		}
		return nil
	}
	return out, walk(refs, 0)
}

// The Confluent error codes of an answer 404 that says the schema, subject or
// version does not exist: only these make a value undecodable. Any other 404
// (a proxy's, a wrong path in the URL) is the registry being unreachable.
const (
	errorSubjectNotFound = 40401
	errorVersionNotFound = 40402
	errorSchemaNotFound  = 40403
)

// maxAnswer bounds what is read of one answer: a schema is text, and the
// largest a registry accepts by default is some MiB.
const maxAnswer = 16 << 20

// get asks the registry's URLs in turn, starting with the one that answered
// last, and decodes the first answer into v.
func (r *Registry) get(ctx context.Context, path string, id int, v any) error {
	first := int(r.current.Load())
	var err error
	for i := range r.urls {
		at := (first + i) % len(r.urls)
		err = r.getFrom(ctx, r.urls[at], path, id, v)
		var unavailable *UnavailableError
		if !errors.As(err, &unavailable) {
			r.current.Store(int32(at))
			return err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return err
}

func (r *Registry) getFrom(ctx context.Context, base, path string, id int, v any) error {
	unavailable := func(format string, args ...any) error {
		return &UnavailableError{Registry: base, Err: fmt.Errorf(format, args...)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return unavailable("%v", err)
	}
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, by UnavailableError
		}
		return unavailable("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return unavailable("GET %s: reading the answer: %v", path, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(body, v); err != nil {
			return unavailable("GET %s: an answer that is not a schema: %v", path, err)
		}
		return nil
	case resp.StatusCode == http.StatusNotFound:
		var e struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &e) == nil {
			switch e.Code {
			case errorSchemaNotFound, errorSubjectNotFound, errorVersionNotFound:
				return undecodable(id, "the registry does not know it (GET %s: %d %s)", path, e.Code, clip(e.Message))
			}
		}
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return unavailable("GET %s: %s: check the registry's credentials and permissions", path, resp.Status)
	}
	return unavailable("GET %s: %s: %s", path, resp.Status, clip(string(body)))
}

// clip shortens what a registry says to a log line's worth.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}
