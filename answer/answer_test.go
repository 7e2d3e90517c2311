package answer_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/kafka-connector/kafka-connector/answer"
)

// offsets lists the entries' offsets, -1 for an entry without one.
func offsets(r answer.Report) []int64 {
	var out []int64
	for _, it := range r.Items {
		if it.Offset == nil {
			out = append(out, -1)
			continue
		}
		out = append(out, *it.Offset)
	}
	return out
}

// echo is what a function that echoes its batch before its report
// answers: Go's json.Marshal of a map writes Records before
// batchItemFailures.
func echo(records int, report string) string {
	var b strings.Builder
	b.WriteString(`{"Records":[`)
	for i := range records {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"Ckafka":{"topic":"orders","partition":0,"offset":%d,"msgKey":"None","msgBody":"%s \"batchItemFailures\" [{]}"}}`, i, strings.Repeat("x", 200))
	}
	b.WriteString(`]`)
	if report != "" {
		b.WriteString(`,` + report)
	}
	b.WriteString(`}`)
	return b.String()
}

func TestReadAndScan(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		found      bool
		offsets    []int64
		unreadable bool
	}{
		{name: "empty answer", body: ""},
		{name: "plain text", body: "ok"},
		{name: "object without a report", body: `{"status":"ok"}`},
		{name: "empty list", body: `{"batchItemFailures":[]}`, found: true},
		{name: "null list", body: `{"batchItemFailures":null}`},
		{name: "one failure", body: `{"batchItemFailures":[{"partition":0,"offset":37}]}`, found: true, offsets: []int64{37}},
		{name: "after a byte order mark", body: "\xef\xbb\xbf" + `{"batchItemFailures":[{"partition":0,"offset":3}]}`, found: true, offsets: []int64{3}},
		{name: "key in another case", body: `{"BatchItemFailures":[{"Partition":0,"Offset":5}]}`, found: true, offsets: []int64{5}},
		{name: "upper case", body: `{"BATCHITEMFAILURES":[{"partition":0,"offset":6}]}`, found: true, offsets: []int64{6}},
		{name: "report after an echo", body: echo(100, `"batchItemFailures":[{"partition":0,"offset":42}]`), found: true, offsets: []int64{42}},
		{name: "echo without a report", body: echo(100, "")},
		{name: "nested report is not one", body: `{"data":{"batchItemFailures":[{"partition":0,"offset":1}]}}`},
		{name: "entry without offset", body: `{"batchItemFailures":[{"partition":0}]}`, found: true, offsets: []int64{-1}},
		{name: "list of text", body: `{"batchItemFailures":["3"]}`, unreadable: true},
		{name: "offsets as strings", body: `{"batchItemFailures":[{"partition":"0","offset":"3"}]}`, unreadable: true},
		{name: "cut inside the list", body: `{"batchItemFailures":[{"partition":0,"offset":3}`, unreadable: true},
		{name: "not a list", body: `{"batchItemFailures":"all"}`, unreadable: true},
		{name: "array answer", body: `["batchItemFailures"]`},
		{name: "report, then garbage", body: `{"batchItemFailures":[]} x`, unreadable: true},
		{name: "later spelling wins", body: `{"batchItemFailures":[{"partition":0,"offset":1}],"BatchItemFailures":[{"partition":0,"offset":2}]}`, found: true, offsets: []int64{2}},
		{name: "whitespace everywhere", body: " \n{ \"batchItemFailures\" : [ { \"partition\" : 0 , \"offset\" : 9 } ] , \"n\" : -1.5e3 , \"t\" : true } \n", found: true, offsets: []int64{9}},
	}
	for _, tt := range tests {
		for _, way := range []struct {
			name string
			read func([]byte) (answer.Report, error)
		}{
			{"Read", answer.Read},
			{"Scan", func(b []byte) (answer.Report, error) { return answer.Scan(bytes.NewReader(b)) }},
		} {
			t.Run(tt.name+"/"+way.name, func(t *testing.T) {
				r, err := way.read([]byte(tt.body))
				if tt.unreadable {
					if !errors.Is(err, answer.ErrUnreadable) {
						t.Fatalf("got %+v, %v; want an unreadable report", r, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if r.Found != tt.found || !reflect.DeepEqual(offsets(r), tt.offsets) {
					t.Errorf("got found=%v offsets %v, want found=%v offsets %v", r.Found, offsets(r), tt.found, tt.offsets)
				}
			})
		}
	}
}

// An answer of many megabytes is read to its end through a small buffer,
// and a report after it is found.
func TestScanLongAnswer(t *testing.T) {
	body := echo(50_000, `"batchItemFailures":[{"partition":0,"offset":49999}]`)
	if len(body) < 10<<20 {
		t.Fatalf("the answer is only %d bytes", len(body))
	}
	r, err := answer.Scan(strings.NewReader(body))
	if err != nil || !r.Found || !reflect.DeepEqual(offsets(r), []int64{49999}) {
		t.Fatalf("got %+v, %v", r, err)
	}
}

// A long malformed object cannot be vouched for: it is unreadable even
// where what was read mentions no report.
func TestScanMalformedLongObject(t *testing.T) {
	body := echo(10_000, "")
	body = body[:len(body)/2]
	if _, err := answer.Scan(strings.NewReader(body)); !errors.Is(err, answer.ErrUnreadable) {
		t.Fatalf("got %v, want an unreadable report", err)
	}
}

// A report's list longer than MaxReportBytes is refused, not held.
func TestScanReportTooLong(t *testing.T) {
	entry := `{"partition":0,"offset":1},`
	n := answer.MaxReportBytes/len(entry) + 1
	body := `{"batchItemFailures":[` + strings.Repeat(entry, n) + `{"partition":0,"offset":1}]}`
	_, err := answer.Scan(strings.NewReader(body))
	if !errors.Is(err, answer.ErrUnreadable) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("got %v", err)
	}
}

// A reader that fails is an error of its own, not an unreadable report.
func TestScanReadError(t *testing.T) {
	broken := errors.New("connection reset")
	_, err := answer.Scan(io.MultiReader(strings.NewReader(`{"a":"`), iotestErr{broken}))
	if !errors.Is(err, broken) || errors.Is(err, answer.ErrUnreadable) {
		t.Fatalf("got %v", err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// FuzzScanAsRead: for any valid JSON answer, reading it as a stream comes
// to what reading it whole does.
func FuzzScanAsRead(f *testing.F) {
	for _, s := range []string{
		``, `ok`, `{}`, `{"batchItemFailures":[]}`, `{"BatchItemFailures":[{"partition":1,"offset":2}]}`,
		`{"a":[1,{"b":"c\"d"}],"batchItemFailures":[{"partition":0,"offset":3}]}`, `[1,2]`, `"batchItemFailures"`,
		`{"batchItemFailures":null}`, `{"batchItemFailures":{"partition":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		want, werr := answer.Read(body)
		got, gerr := answer.Scan(bytes.NewReader(body))
		if errors.Is(werr, answer.ErrUnreadable) != errors.Is(gerr, answer.ErrUnreadable) {
			t.Fatalf("%q: Read %v, Scan %v", body, werr, gerr)
		}
		if werr == nil && (want.Found != got.Found || !reflect.DeepEqual(want.Items, got.Items)) {
			t.Fatalf("%q: Read %+v, Scan %+v", body, want, got)
		}
	})
}
