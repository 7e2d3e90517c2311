package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/types"
)

// call is one invocation the gateway received.
type call struct {
	Function string
	Received time.Time // when the gateway started answering it
	Status   int
	// OK is a 2xx answered while the connector was still waiting for it:
	// an answer given after the connector timed out or died is no delivery.
	OK     bool
	Header http.Header
	Body   []byte

	event     types.Event
	decodeErr error
}

func (c *call) attempt() int {
	n, _ := strconv.Atoi(c.Header.Get("X-Delivery-Attempt"))
	return n
}

// partition is where the call's records come from, according to its
// headers.
func (c *call) partition() tp {
	p, _ := strconv.Atoi(c.Header.Get("X-Kafka-Partition"))
	return tp{c.Header.Get("X-Topic"), int32(p)}
}

func (c *call) firstOffset() int64 {
	n, _ := strconv.ParseInt(c.Header.Get("X-Kafka-First-Offset"), 10, 64)
	return n
}

// behaviour decides how a function answers. n counts the function's calls
// from 1.
type behaviour func(c *gatewaytest.Call, n int64) (status int, body []byte)

// recordingGateway is the product's in-process gateway behind a real HTTP
// server on a fixed port, so that it can go down and come back where the
// connector expects it. It records every invocation, counts what each
// function received successfully, and lets a scenario make functions fail,
// stall or answer slowly.
type recordingGateway struct {
	t    *testing.T
	gw   gatewaytest.Gateway
	addr string

	mu         sync.Mutex
	srv        *http.Server
	listed     map[string]bool
	behaviours map[string]behaviour
	counters   map[string]*atomic.Int64
	calls      []*call
	delivered  map[string]map[tp]map[int64]bool // successful, by function
	// keepBodies false drops the body of successful calls once decoded, for
	// runs too large to keep them all.
	keepBodies bool
}

func startGateway(t *testing.T) *recordingGateway {
	t.Helper()
	g := &recordingGateway{
		t:          t,
		addr:       "127.0.0.1:" + strconv.Itoa(freePorts(t, 1)[0]),
		listed:     map[string]bool{},
		behaviours: map[string]behaviour{},
		counters:   map[string]*atomic.Int64{},
		delivered:  map[string]map[tp]map[int64]bool{},
		keepBodies: true,
	}
	g.gw.NoRecord = true
	g.Up()
	t.Cleanup(g.Down)
	return g
}

func (g *recordingGateway) url() string { return "http://" + g.addr }

// Up serves again on the same address.
func (g *recordingGateway) Up() {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv != nil {
		return
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ln, err = net.Listen("tcp", g.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		g.t.Fatalf("gateway listening on %s: %v", g.addr, err)
	}
	g.srv = &http.Server{Handler: &g.gw, ReadHeaderTimeout: 10 * time.Second}
	go g.srv.Serve(ln)
}

// Down stops listening and drops every connection: the connector sees
// connection refused until Up.
func (g *recordingGateway) Down() {
	g.mu.Lock()
	srv := g.srv
	g.srv = nil
	g.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// SetFunctions replaces the function list. A function no longer listed
// answers 404, as on a real gateway.
func (g *recordingGateway) SetFunctions(fns ...types.Function) {
	g.mu.Lock()
	g.listed = map[string]bool{}
	for _, fn := range fns {
		name := fn.InvokeName()
		g.listed[name] = true
		if g.counters[name] == nil {
			g.counters[name] = &atomic.Int64{}
			g.gw.Handle(name, g.handler(name))
		}
	}
	g.mu.Unlock()
	g.gw.SetFunctions(fns...)
}

// Behave sets how a function answers; nil answers 200 at once.
func (g *recordingGateway) Behave(function string, b behaviour) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.behaviours[function] = b
}

func (g *recordingGateway) handler(function string) gatewaytest.Handler {
	return func(c *gatewaytest.Call) (int, []byte) {
		received := time.Now()
		g.mu.Lock()
		listed, b, counter := g.listed[function], g.behaviours[function], g.counters[function]
		g.mu.Unlock()
		status, body := http.StatusOK, []byte(nil)
		switch {
		case !listed:
			status, body = http.StatusNotFound, []byte("no such function")
		case b != nil:
			status, body = b(c, counter.Add(1))
		default:
			counter.Add(1)
		}
		rec := &call{
			Function: function,
			Received: received,
			Status:   status,
			OK:       status >= 200 && status < 300 && c.Context().Err() == nil,
			Header:   c.Header,
			Body:     c.Body,
		}
		rec.decodeErr = json.Unmarshal(c.Body, &rec.event)
		g.mu.Lock()
		if rec.OK && rec.decodeErr == nil {
			d := g.delivered[function]
			if d == nil {
				d = map[tp]map[int64]bool{}
				g.delivered[function] = d
			}
			for _, r := range rec.event.Records {
				p := tp{r.Ckafka.Topic, r.Ckafka.Partition}
				if d[p] == nil {
					d[p] = map[int64]bool{}
				}
				d[p][r.Ckafka.Offset] = true
			}
			if !g.keepBodies {
				rec.Body = nil
			}
		}
		g.calls = append(g.calls, rec)
		g.mu.Unlock()
		return status, body
	}
}

// Calls returns the calls received so far, for one function or for all
// when function is empty, in the order they were answered.
func (g *recordingGateway) Calls(function string) []*call {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*call
	for _, c := range g.calls {
		if function == "" || c.Function == function {
			out = append(out, c)
		}
	}
	return out
}

// Delivered returns how many distinct messages of the topics the function
// received successfully.
func (g *recordingGateway) Delivered(function string, topics ...string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for p, offs := range g.delivered[function] {
		if len(topics) == 0 || slices.Contains(topics, p.Topic) {
			n += len(offs)
		}
	}
	return n
}

// DeliveredAt reports whether the function received the message at offset
// of p successfully.
func (g *recordingGateway) DeliveredAt(function string, p tp, offset int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.delivered[function][p][offset]
}

// hold is a switch that makes calls wait: a held call answers when the
// hold is released, or fails when the connector gives up on it first.
type hold struct {
	mu      sync.Mutex
	on      bool
	release chan struct{}
	waiting atomic.Int32
}

// Set holds the calls that start from now on.
func (h *hold) Set() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on {
		h.on = true
		h.release = make(chan struct{})
	}
}

// Release lets the held calls answer.
func (h *hold) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on {
		h.on = false
		close(h.release)
	}
}

// wait holds c if the hold is set and reports whether c may succeed: false
// when the connector hung up while it was held.
func (h *hold) wait(c *gatewaytest.Call) bool {
	h.mu.Lock()
	on, release := h.on, h.release
	h.mu.Unlock()
	if !on {
		return true
	}
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	select {
	case <-release:
		return c.Context().Err() == nil
	case <-c.Context().Done():
		return false
	}
}

// heldBy answers 200, or 504 when the connector hung up on a held call.
func heldBy(h *hold) behaviour {
	return func(c *gatewaytest.Call, _ int64) (int, []byte) {
		if !h.wait(c) {
			return http.StatusGatewayTimeout, nil
		}
		return http.StatusOK, nil
	}
}

// fn is a function subscribed to topics through its annotation.
func fn(name, topics string) types.Function {
	return types.Function{Name: name, Annotations: map[string]string{"topic": topics}}
}
