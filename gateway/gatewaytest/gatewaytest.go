// Package gatewaytest is an in-process OpenFaaS-style gateway, as
// net/http/httptest is an in-process server: it lists the functions it is
// given, hands each invocation to the function's handler and records it.
// The tests, the benchmark and the dev mode's demo function use it.
package gatewaytest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

// Handler answers one invocation with a status and a body.
type Handler func(c *Call) (status int, body []byte)

// Call is one invocation the gateway received.
type Call struct {
	ctx      context.Context
	Function string // as invoked: name or name.namespace
	Async    bool
	Header   http.Header
	Body     []byte
	Received time.Time
	Status   int // what the handler answered
	// Reply, which a handler may fill, adds headers to the answer, such as
	// a Retry-After.
	Reply http.Header
}

// Context ends when the connector gives up on the call: a handler that
// stalls should watch it.
func (c *Call) Context() context.Context { return c.ctx }

// Event decodes the call's body.
func (c *Call) Event() (types.Event, error) {
	var e types.Event
	err := json.Unmarshal(c.Body, &e)
	return e, err
}

// Gateway is an http.Handler. The zero value lists no functions and
// answers 404 to /system/namespaces, as a gateway without namespaces does.
// Its methods may be called concurrently with requests.
type Gateway struct {
	// Username and Password, when set, are required on /system/*, as an
	// OpenFaaS gateway requires them; invocations are open.
	Username, Password string
	// InvokeAuth requires the credentials on invocations too, as an auth
	// proxy in front of a gateway may.
	InvokeAuth bool
	// NoRecord keeps no calls, for long runs; handlers still see them.
	NoRecord bool
	// NoQueue answers 404 to /async-function/, as a gateway without a
	// queue worker does.
	NoQueue bool

	mu         sync.Mutex
	namespaces []string
	functions  []types.Function
	handlers   map[string]Handler
	calls      []*Call
	listing    func(w http.ResponseWriter, r *http.Request) bool
}

// SetFunctions replaces the function list.
func (g *Gateway) SetFunctions(fns ...types.Function) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.functions = fns
}

// SetNamespaces makes /system/namespaces answer ns; nil makes it a 404.
func (g *Gateway) SetNamespaces(ns ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.namespaces = ns
}

// Handle sets the handler of a function, by its name as invoked. A function
// without one answers 200 with an empty body.
func (g *Gateway) Handle(function string, h Handler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.handlers == nil {
		g.handlers = make(map[string]Handler)
	}
	g.handlers[function] = h
}

// OverrideListing lets f answer /system/* requests instead of the gateway
// when it returns true: a way to make the listing fail or lie.
func (g *Gateway) OverrideListing(f func(w http.ResponseWriter, r *http.Request) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.listing = f
}

// Calls returns the calls received so far for function, or for every
// function when function is empty, in the order they arrived.
func (g *Gateway) Calls(function string) []*Call {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*Call
	for _, c := range g.calls {
		if function == "" || c.Function == function {
			out = append(out, c)
		}
	}
	return out
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.Username != "" && (g.InvokeAuth || strings.HasPrefix(r.URL.Path, "/system/")) {
		u, p, ok := r.BasicAuth()
		if !ok || u != g.Username || p != g.Password {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/system/"):
		g.serveSystem(w, r)
	case strings.HasPrefix(r.URL.Path, "/function/") && r.Method == http.MethodPost:
		g.invoke(w, r, strings.TrimPrefix(r.URL.Path, "/function/"), false)
	case strings.HasPrefix(r.URL.Path, "/async-function/") && g.NoQueue:
		http.NotFound(w, r)
	case strings.HasPrefix(r.URL.Path, "/async-function/") && r.Method == http.MethodPost:
		g.invoke(w, r, strings.TrimPrefix(r.URL.Path, "/async-function/"), true)
	default:
		http.NotFound(w, r)
	}
}

func (g *Gateway) serveSystem(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	listing, namespaces, functions := g.listing, g.namespaces, g.functions
	g.mu.Unlock()
	if listing != nil && listing(w, r) {
		return
	}
	switch r.URL.Path {
	case "/system/namespaces":
		if namespaces == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, namespaces)
	case "/system/functions":
		ns := r.URL.Query().Get("namespace")
		list := []types.Function{}
		for _, f := range functions {
			if ns == "" || f.Namespace == ns {
				list = append(list, f)
			}
		}
		writeJSON(w, list)
	default:
		http.NotFound(w, r)
	}
}

func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, function string, async bool) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	header := r.Header
	if !g.NoRecord {
		header = header.Clone() // kept after the request is over
	}
	c := &Call{ctx: r.Context(), Function: function, Async: async, Header: header, Body: body, Received: time.Now(), Reply: http.Header{}}
	g.mu.Lock()
	h := g.handlers[function]
	g.mu.Unlock()
	status, answer := http.StatusOK, []byte(nil)
	if h != nil {
		status, answer = h(c)
	} else if async {
		status = http.StatusAccepted
	}
	c.Status = status
	if !g.NoRecord {
		g.mu.Lock()
		g.calls = append(g.calls, c)
		g.mu.Unlock()
	}
	// The length goes ahead of the answer, as a function's own server
	// and the gateway after it send it.
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	for k, v := range c.Reply {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	w.Write(answer)
}

// readBody reads a request body into a buffer of the size announced, when
// it is, rather than growing one as it comes.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength < 0 || r.ContentLength > 64<<20 {
		return io.ReadAll(r.Body)
	}
	body := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, body)
	return body, err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
