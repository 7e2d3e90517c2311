package gateway

import (
	"errors"
	"io"
	"sync"
)

// errBodyClosed is what a lent body's reader answers once it is closed.
var errBodyClosed = errors.New("gateway: read of a request body after its Close")

// lentBody lends a request body to the HTTP transport and learns when the
// transport has finished with it, so that its owner may fill it again.
//
// The transport reads a body only through the readers it is given (the
// request's, and one per replay through GetBody), and must close each of
// them, "even on errors, ... in a separate goroutine even after RoundTrip
// returns" (net/http.RoundTripper); a caller that reuses a body must wait
// for that Close. Each reader, and Invoke while it runs, holds a
// reference; the last to let go calls back. A reader touches the bytes
// only inside Read, under mu, and never after its Close, which may come
// from another goroutine than the one reading (HTTP/2 aborts a body
// that way): so once back is called, nothing reads them.
type lentBody struct {
	mu   sync.Mutex
	b    []byte
	refs int // 0 once back was called: no reader is opened again
	back func()
}

// lend returns b lent to one invocation, with Invoke's own reference.
func lend(b []byte, back func()) *lentBody {
	return &lentBody{b: b, refs: 1, back: back}
}

// open returns a new reader of the body, for the request or a replay of it.
func (l *lentBody) open() (io.ReadCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refs == 0 {
		return nil, errBodyClosed
	}
	l.refs++
	return &lentReader{l: l}, nil
}

// unref lets go of one reference, and calls back on the last.
func (l *lentBody) unref() {
	l.mu.Lock()
	l.refs--
	last := l.refs == 0
	l.mu.Unlock()
	if last {
		l.back()
	}
}

// lentReader is one reader of a lent body. Its fields are guarded by the
// body's mu. It must not gain a WriteTo, nor be swapped for a
// *bytes.Reader: the transport would then write the bytes to the network
// outside Read, where Close cannot wait for it.
type lentReader struct {
	l      *lentBody
	off    int
	closed bool
}

func (r *lentReader) Read(p []byte) (int, error) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	switch {
	case r.closed:
		return 0, errBodyClosed
	case r.off >= len(r.l.b):
		return 0, io.EOF
	}
	n := copy(p, r.l.b[r.off:])
	r.off += n
	return n, nil
}

// Close lets go of the reader's reference; a second Close does nothing.
func (r *lentReader) Close() error {
	r.l.mu.Lock()
	closed := r.closed
	r.closed = true
	r.l.mu.Unlock()
	if !closed {
		r.l.unref()
	}
	return nil
}
