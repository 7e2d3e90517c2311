// Package gateway is the connector's client of an OpenFaaS-style gateway: it
// lists the functions and invokes them. It is the part of the OpenFaaS
// connector-sdk contract the connector needs, written to be safe to call
// from many partitions at once.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

// Limits on what is read from the gateway, so that a gateway answering
// without end cannot exhaust the connector's memory.
const (
	// MaxListBytes bounds one /system/functions or /system/namespaces answer.
	MaxListBytes = 32 << 20
	// MaxResponseBytes bounds the part of a function's answer that is kept
	// (for logging and partial batch results). The rest is handed to the
	// request's Long, or read and dropped so that the connection can be
	// reused.
	MaxResponseBytes = 1 << 20
)

// ErrUnauthorized is wrapped by the error of a /system/* call the gateway
// refused for want of credentials, or for wrong ones (401).
var ErrUnauthorized = errors.New("the gateway refuses the credentials (401 Unauthorized)")

// Client talks to one gateway. Its methods may be called concurrently.
type Client struct {
	// URL is the gateway's base URL, such as http://gateway:8080.
	URL string
	// Username and Password, when Username is not empty, are sent as HTTP
	// basic auth on /system/* calls: they are the gateway's admin
	// credentials, and the gateway protects only /system/*.
	Username, Password string
	// InvokeAuth sends the credentials on invocations too, for a gateway
	// behind a proxy that demands them there. Off by default: the gateway
	// forwards an invocation's headers, Authorization included, to the
	// function, which would then hold the admin credentials.
	InvokeAuth bool
	// HTTP is the client used for every call; nil means http.DefaultClient.
	// New sets one tuned for the connector. Timeouts come from the contexts
	// passed in, not from the client.
	HTTP *http.Client
}

// New returns a client of the gateway at url, with an HTTP client tuned for
// invoking from many partitions at once.
func New(url string) *Client {
	return &Client{URL: url, HTTP: NewHTTPClient()}
}

// NewHTTPClient returns a client whose transport keeps one idle connection
// per partition being delivered, up to a thousand: every partition invokes
// in parallel, and opening a connection per invocation would dominate the
// cost of small batches.
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no limit across hosts; MaxIdleConnsPerHost bounds it
	t.MaxIdleConnsPerHost = 1000
	t.IdleConnTimeout = 90 * time.Second
	// Asking for gzip would make every function answer pay for compression
	// the connector does not need.
	t.DisableCompression = true
	// A batch of a hundred small messages (some 20 KiB) then takes one
	// write, not several; the buffer is per connection, so it stays small.
	t.WriteBufferSize = 32 << 10
	return &http.Client{
		Transport: t,
		// A function's redirect is its answer, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Request is one invocation.
type Request struct {
	// Function is the name as invoked: "name" or "name.namespace".
	Function string
	// Async posts to /async-function/ instead of /function/: the gateway
	// queues the call and answers 202.
	Async bool
	// Body is sent as is. The HTTP transport may go on reading it after
	// Invoke returned (when the gateway answers before reading it all), so
	// it must not be changed afterwards, unless Released is set.
	Body []byte
	// Released, if not nil, lends Body instead: Invoke calls it at most
	// once, when the transport will not read Body again, and Body may be
	// filled again from then on. That is as Invoke returns, or later on a
	// goroutine of the transport's; and never if the transport fails to
	// close a reader of it (net/http does not close the one it opens for a
	// redirect it is told not to follow), when Body is left to the garbage
	// collector. A lent body goes out in one more write than one that is
	// not: the transport flushes the headers first for a reader it does
	// not know to be in memory. So lend only bodies larger than the
	// transport's write buffer (32 KiB, see NewHTTPClient), which take
	// several writes anyway.
	Released func()
	Header   http.Header
	// Long, if not nil, reads a 2xx answer longer than MaxResponseBytes,
	// of which Response.Body keeps only the start: it is handed the whole
	// answer, from its first byte, as it arrives, and Invoke fails with
	// its error. A partial-failure report after the first MiB of an
	// answer is found that way, in bounded memory.
	Long func(io.Reader) error
}

// Response is what the function (or the gateway on its behalf) answered.
type Response struct {
	Status int
	// Body holds at most MaxResponseBytes of the answer.
	Body []byte
	// Truncated is whether the answer was longer than Body.
	Truncated bool
	// RetryAfter is the answer's Retry-After header, for back-pressure.
	RetryAfter string
}

// OK reports whether the status is a success (2xx).
func (r Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Invoke posts the request to the gateway and returns the answer, whatever
// its status. The error is for calls that got no answer: a refused
// connection, a timeout, a cancelled context.
func (c *Client) Invoke(ctx context.Context, r Request) (Response, error) {
	path := "/function/"
	if r.Async {
		path = "/async-function/"
	}
	u := strings.TrimRight(c.URL, "/") + path + url.PathEscape(r.Function)
	var lent *lentBody
	if r.Released != nil {
		// Invoke holds a reference of its own until it returns: the
		// transport may close one reader before it opens the next.
		lent = lend(r.Body, r.Released)
		defer lent.unref()
	}
	req, err := newRequest(ctx, u, r.Body, lent)
	if err != nil {
		return Response{}, fmt.Errorf("invoking %s: %w", r.Function, err)
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if c.InvokeAuth {
		c.auth(req)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("invoking %s: %w", r.Function, err)
	}
	defer resp.Body.Close()
	out := Response{Status: resp.StatusCode}
	// One byte more than is kept tells whether the answer goes on.
	answer, err := readAll(io.LimitReader(resp.Body, MaxResponseBytes+1), resp.ContentLength)
	out.Body = answer[:min(len(answer), MaxResponseBytes)]
	if err != nil {
		return out, fmt.Errorf("invoking %s: reading the answer: %w", r.Function, err)
	}
	if !out.OK() {
		out.RetryAfter = resp.Header.Get("Retry-After")
	}
	if len(answer) <= MaxResponseBytes {
		return out, nil
	}
	out.Truncated = true
	if out.OK() && r.Long != nil {
		err = r.Long(io.MultiReader(bytes.NewReader(answer), resp.Body))
	}
	if err == nil {
		// Read what is left so that the connection goes back to the pool.
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return out, fmt.Errorf("invoking %s: reading the answer: %w", r.Function, err)
	}
	return out, nil
}

// readAll reads r to its end as io.ReadAll does, into a buffer made for
// the length the answer announced (-1: none): grown from 512 bytes, a
// buffer for an answer of a record a message costs twice the answer in
// copies and garbage.
func readAll(r io.Reader, length int64) ([]byte, error) {
	b := make([]byte, 0, min(max(length, 511), MaxResponseBytes)+1) // +1: room to read the end
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// newRequest makes the POST of an invocation. A *bytes.Reader lets the
// transport send headers and body in one write, and replay the request on
// a fresh connection when a pooled one turns out to have been closed by
// the gateway; a lent body replays through GetBody the same way. An empty
// body has nothing to lend: no reader of it holds a reference, and
// Released comes as Invoke returns.
func newRequest(ctx context.Context, url string, b []byte, lent *lentBody) (*http.Request, error) {
	if lent == nil || len(b) == 0 {
		return http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	}
	body, err := lent.open()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		body.Close()
		return nil, err
	}
	req.ContentLength = int64(len(b))
	req.GetBody = lent.open
	return req, nil
}

// Functions lists the functions of every namespace. A gateway without
// namespace support (404 or an empty list) has one default namespace.
func (c *Client) Functions(ctx context.Context) ([]types.Function, error) {
	var namespaces []string
	found, err := c.getJSON(ctx, "/system/namespaces", &namespaces)
	if err != nil {
		return nil, err
	}
	if !found || len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var all []types.Function
	for _, ns := range namespaces {
		path := "/system/functions"
		if ns != "" {
			path += "?namespace=" + url.QueryEscape(ns)
		}
		var fns []types.Function
		found, err := c.getJSON(ctx, path, &fns)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("listing functions: GET %s: 404 Not Found", c.URL+path)
		}
		all = append(all, fns...)
	}
	return all, nil
}

// getJSON decodes the answer to GET path into v. found is false for a 404.
func (c *Client) getJSON(ctx context.Context, path string, v any) (found bool, err error) {
	u := strings.TrimRight(c.URL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", u, err)
	}
	c.auth(req)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxListBytes+1))
	if err != nil {
		return false, fmt.Errorf("GET %s: reading the answer: %w", u, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return false, fmt.Errorf("GET %s: %w: %s", u, ErrUnauthorized, snippet(body))
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: status %d: %s", u, resp.StatusCode, snippet(body))
	}
	if len(body) > MaxListBytes {
		return false, fmt.Errorf("GET %s: answer larger than %d bytes", u, MaxListBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("GET %s: not the expected JSON: %w (answer starts %s)", u, err, snippet(body))
	}
	return true, nil
}

func (c *Client) auth(req *http.Request) {
	if c.Username != "" {
		req.SetBasicAuth(c.Username, c.Password)
	}
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// snippet quotes the start of an answer for an error message.
func snippet(b []byte) string {
	const max = 200
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}
