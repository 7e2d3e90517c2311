package gateway_test

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kafka-connector/kafka-connector/gateway"
)

// server answers /system/* from answers (path with query -> status and
// body) and records what it saw.
func server(t *testing.T, answers map[string]struct {
	status int
	body   string
}) (*gateway.Client, *[]string, *[]string) {
	var mu sync.Mutex
	var paths, auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RequestURI())
		u, p, _ := r.BasicAuth()
		auths = append(auths, u+":"+p)
		mu.Unlock()
		a, ok := answers[r.URL.RequestURI()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	return gateway.New(srv.URL), &paths, &auths
}

type answer = struct {
	status int
	body   string
}

func TestFunctionsAcrossNamespaces(t *testing.T) {
	tests := []struct {
		name      string
		answers   map[string]answer
		want      []string // InvokeName of each function
		wantErr   string
		wantPaths []string
	}{
		{
			name:      "no namespace support",
			answers:   map[string]answer{"/system/functions": {200, `[{"name":"a","annotations":{"topic":"t"},"replicas":1,"extra":{"x":1}}]`}},
			want:      []string{"a"},
			wantPaths: []string{"/system/namespaces", "/system/functions"},
		},
		{
			name: "empty namespace list",
			answers: map[string]answer{
				"/system/namespaces": {200, `[]`},
				"/system/functions":  {200, `[{"name":"a","annotations":null}]`},
			},
			want: []string{"a"},
		},
		{
			name: "two namespaces",
			answers: map[string]answer{
				"/system/namespaces":                      {200, `["openfaas-fn","team"]`},
				"/system/functions?namespace=openfaas-fn": {200, `[{"name":"a","namespace":"openfaas-fn"}]`},
				"/system/functions?namespace=team":        {200, `[{"name":"b","namespace":"team"},{"name":"c","namespace":"team"}]`},
			},
			want: []string{"a.openfaas-fn", "b.team", "c.team"},
		},
		{
			name:    "malformed JSON",
			answers: map[string]answer{"/system/functions": {200, `[{"name":`}},
			wantErr: "not the expected JSON",
		},
		{
			name:    "server error",
			answers: map[string]answer{"/system/namespaces": {500, "broken"}},
			wantErr: "status 500",
		},
		{
			name:    "huge answer",
			answers: map[string]answer{"/system/functions": {200, "[" + strings.Repeat(" ", gateway.MaxListBytes) + "]"}},
			wantErr: "larger than",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, paths, _ := server(t, tc.answers)
			fns, err := c.Functions(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fns {
				got = append(got, f.InvokeName())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("functions %q, want %q", got, tc.want)
			}
			if tc.wantPaths != nil && !slices.Equal(*paths, tc.wantPaths) {
				t.Errorf("asked %q, want %q", *paths, tc.wantPaths)
			}
		})
	}
}

// The credentials are the gateway's admin credentials, and the gateway
// forwards an invocation's headers to the function: they go to /system/*
// only, unless InvokeAuth asks for them on invocations too.
func TestCredentialsGoToTheSystemAPIOnly(t *testing.T) {
	tests := []struct {
		name       string
		invokeAuth bool
		want       map[string]string // path to the credentials it received
	}{
		{"default", false, map[string]string{
			"/system/namespaces": "admin:pw", "/system/functions": "admin:pw",
			"/function/f": ":", "/async-function/f": ":",
		}},
		{"gateway_invoke_auth", true, map[string]string{
			"/system/namespaces": "admin:pw", "/system/functions": "admin:pw",
			"/function/f": "admin:pw", "/async-function/f": "admin:pw",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, paths, auths := server(t, map[string]answer{"/system/functions": {200, `[]`}, "/function/f": {200, ""}, "/async-function/f": {202, ""}})
			c.Username, c.Password, c.InvokeAuth = "admin", "pw", tc.invokeAuth
			if _, err := c.Functions(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, async := range []bool{false, true} {
				if _, err := c.Invoke(context.Background(), gateway.Request{Function: "f", Async: async}); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]string{}
			for i, p := range *paths {
				got[p] = (*auths)[i]
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("credentials by path %q, want %q", got, tc.want)
			}
		})
	}
}

func TestInvoke(t *testing.T) {
	var got struct {
		path, body, topic string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.path, got.body, got.topic = r.URL.Path, string(b), r.Header.Get("X-Topic")
		if r.URL.Path == "/function/big" {
			w.Write([]byte(strings.Repeat("x", gateway.MaxResponseBytes+100)))
			return
		}
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
	}))
	defer srv.Close()
	c := gateway.New(srv.URL)

	resp, err := c.Invoke(context.Background(), gateway.Request{Function: "f.ns", Body: []byte("payload"), Header: http.Header{"X-Topic": {"orders"}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusTeapot || string(resp.Body) != "short and stout" || resp.OK() {
		t.Errorf("response %d %q", resp.Status, resp.Body)
	}
	if got.path != "/function/f.ns" || got.body != "payload" || got.topic != "orders" {
		t.Errorf("server saw %+v", got)
	}

	if _, err := c.Invoke(context.Background(), gateway.Request{Function: "f", Async: true}); err != nil || got.path != "/async-function/f" {
		t.Errorf("async invocation went to %s (%v)", got.path, err)
	}

	resp, err = c.Invoke(context.Background(), gateway.Request{Function: "big"})
	if err != nil || len(resp.Body) != gateway.MaxResponseBytes || !resp.OK() {
		t.Errorf("big answer: %d bytes kept, status %d, %v", len(resp.Body), resp.Status, err)
	}

	srv.Close()
	if _, err := c.Invoke(context.Background(), gateway.Request{Function: "f"}); err == nil || !strings.Contains(err.Error(), "invoking f") {
		t.Errorf("unreachable gateway: %v, want an error naming the function", err)
	}
}

// TestLongAnswers: Body keeps the first MaxResponseBytes of an answer, and
// Long reads the whole of a longer 2xx answer, from its first byte.
func TestLongAnswers(t *testing.T) {
	tests := []struct {
		name          string
		status, size  int
		long          bool
		wantTruncated bool
		wantLong      int // bytes Long read; -1 when not called
	}{
		{"short", 200, 100, true, false, -1},
		{"exactly the kept size", 200, gateway.MaxResponseBytes, true, false, -1},
		{"long", 200, 3*gateway.MaxResponseBytes + 7, true, true, 3*gateway.MaxResponseBytes + 7},
		{"long, no reader", 200, 2 * gateway.MaxResponseBytes, false, true, -1},
		{"long failure", 500, 2 * gateway.MaxResponseBytes, true, true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := strings.Repeat("a", tt.size-1) + "z"
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, answer)
			}))
			defer srv.Close()
			read := -1
			req := gateway.Request{Function: "f"}
			if tt.long {
				req.Long = func(r io.Reader) error {
					b, err := io.ReadAll(r)
					if string(b) != answer {
						t.Errorf("Long read %d bytes, not the answer", len(b))
					}
					read = len(b)
					return err
				}
			}
			resp, err := gateway.New(srv.URL).Invoke(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Truncated != tt.wantTruncated || read != tt.wantLong {
				t.Errorf("truncated %v, Long read %d; want %v, %d", resp.Truncated, read, tt.wantTruncated, tt.wantLong)
			}
			if want := min(tt.size, gateway.MaxResponseBytes); len(resp.Body) != want || string(resp.Body) != answer[:want] {
				t.Errorf("Body holds %d bytes, want the first %d", len(resp.Body), want)
			}
		})
	}
}
