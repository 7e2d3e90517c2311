package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/gateway"
)

// heldConn passes the first write (the request's headers, which the
// transport flushes on their own before a lent body) and holds every later
// one until hold is closed, so that the transport is still writing the
// body when the answer arrives. It records a write that begins once the
// body was released.
type heldConn struct {
	net.Conn
	writes     atomic.Int32
	holding    chan<- struct{}
	hold       <-chan struct{}
	released   *atomic.Bool
	lateWrites *atomic.Int32
}

func (c *heldConn) Write(p []byte) (int, error) {
	if c.released.Load() {
		c.lateWrites.Add(1)
	}
	if c.writes.Add(1) > 1 {
		select {
		case c.holding <- struct{}{}:
		default:
		}
		<-c.hold
	}
	return c.Conn.Write(p)
}

// TestALentBodyIsReleasedOnlyWhenTheTransportIsDoneWithIt invokes a
// function that answers before reading its body, the case in which the
// transport goes on writing the body after Invoke returned. Released must
// wait for that, or the caller would fill the body again while it is sent.
func TestALentBodyIsReleasedOnlyWhenTheTransportIsDoneWithIt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK) // without reading the body
	}))
	defer srv.Close()

	var released atomic.Bool
	var lateWrites atomic.Int32
	releasedCh := make(chan struct{})
	holding, hold := make(chan struct{}, 1), make(chan struct{})
	client := gateway.NewHTTPClient()
	transport := client.Transport.(*http.Transport)
	transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &heldConn{Conn: conn, holding: holding, hold: hold, released: &released, lateWrites: &lateWrites}, nil
	}
	c := &gateway.Client{URL: srv.URL, HTTP: client}

	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, more than the server reads unasked
	resp, err := c.Invoke(context.Background(), gateway.Request{Function: "f", Body: body, Released: func() {
		if released.Swap(true) {
			t.Error("Released called twice")
		}
		close(releasedCh)
	}})
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("invoke: status %d, %v", resp.Status, err)
	}
	select {
	case <-holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the transport never began writing the body")
	}
	if released.Load() {
		t.Fatal("Released was called while the transport was still writing the body")
	}

	close(hold)
	select {
	case <-releasedCh:
	case <-time.After(10 * time.Second):
		t.Fatal("Released was not called once the transport stopped writing the body")
	}
	if n := lateWrites.Load(); n > 0 {
		t.Errorf("%d writes to the connection began after Released", n)
	}
}

// An empty body has nothing for the transport to read: Released comes as
// Invoke returns.
func TestAnEmptyLentBodyIsReleasedAsInvokeReturns(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	released := 0
	resp, err := gateway.New(srv.URL).Invoke(context.Background(), gateway.Request{Function: "f", Released: func() { released++ }})
	if err != nil || resp.Status != http.StatusOK || released != 1 {
		t.Fatalf("status %d, %v; Released called %d times, want 1", resp.Status, err, released)
	}
}

// TestALentBodyIsReplayedWhole: when a kept-alive connection turns out to
// have been closed by the gateway after it read a request, the transport
// sends the request again on a fresh one, with a second reader of the
// body (GetBody). The replay must carry the whole body, and Released come
// once, after both readers.
func TestALentBodyIsReplayedWhole(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var bodies [][]byte
	var conns sync.WaitGroup
	defer conns.Wait()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for served := 0; ; served++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					b, err := io.ReadAll(req.Body)
					mu.Lock()
					bodies = append(bodies, b)
					mu.Unlock()
					if err != nil || served == 1 {
						return // a connection hangs up on its second request, unanswered
					}
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			})
		}
	}()

	c := gateway.New("http://" + ln.Addr().String())
	defer c.HTTP.CloseIdleConnections() // before conns.Wait
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<12)
	replayed := false
	for try := 0; try < 5 && !replayed; try++ {
		conns := 0
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }})
		released := make(chan struct{}, 2)
		resp, err := c.Invoke(ctx, gateway.Request{Function: "f", Body: body, Header: http.Header{"X-Idempotency-Key": {"f/orders/0/0-9"}},
			Released: func() { released <- struct{}{} }})
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("try %d: status %d, %v", try, resp.Status, err)
		}
		select {
		case <-released:
		case <-time.After(10 * time.Second):
			t.Fatalf("try %d: Released was not called", try)
		}
		select {
		case <-released:
			t.Fatalf("try %d: Released was called twice", try)
		default:
		}
		replayed = conns > 1
	}
	if !replayed {
		t.Fatal("the transport never replayed a request")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, b := range bodies {
		if !bytes.Equal(b, body) {
			t.Errorf("request %d carried %d bytes that are not the body of %d", i, len(b), len(body))
		}
	}
}
