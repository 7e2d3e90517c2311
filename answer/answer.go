// Package answer reads what a function answered to a batch: whether it
// reported some of the batch's records as failed (a partial success, in
// the shape AWS Lambda users know: {"batchItemFailures": [{"partition": 1,
// "offset": 37}]}).
//
// The report is the top-level key batchItemFailures of a JSON object,
// matched in any case, as encoding/json matches a field: a Go function that
// marshals a struct field BatchItemFailures without a tag reports failures
// too. An answer that is not a JSON object, or has no such key, reports
// none.
//
// Read takes an answer held in memory; Scan reads one of any length as a
// stream, in memory bounded by MaxReportBytes, for answers longer than
// what the connector keeps of them. Both come to the same Report for the
// same answer.
package answer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Key is the report's key, as documented; any case matches it.
const Key = "batchItemFailures"

// MaxReportBytes bounds the report's list as written in the answer. A
// batch holds at most 10,000 records, whose list, one entry each, takes
// some 400 KiB; a longer one is refused rather than held.
const MaxReportBytes = 4 << 20

// Item is one entry of the report: the record the function names as
// failed. A field the entry lacks, or does not give as a number, is nil.
type Item struct {
	Partition *int32 `json:"partition"`
	Offset    *int64 `json:"offset"`
}

// Report is what an answer says of its batch's records.
type Report struct {
	// Found is whether the answer carries the key at all. An empty list
	// is found and names no failure: the whole batch succeeded.
	Found bool
	Items []Item
}

// ErrUnreadable is wrapped by the errors of an answer that may report
// failures but cannot be read: the report does not parse, an entry is not
// an object, the list is longer than MaxReportBytes, or an answer too long
// to hold does not parse as JSON. The batch must then count as failed
// whole: guessing which records failed would lose them.
var ErrUnreadable = errors.New("the answer's batchItemFailures cannot be read")

// Read reads the report of an answer held whole in memory. An answer that
// does not mention the key, in any case, is not parsed at all: that is
// every answer of a function that does not report partial failures. One
// that mentions it and does not parse is unreadable.
func Read(body []byte) (Report, error) {
	if !mentions(body) || !object(body) {
		return Report{}, nil
	}
	var r struct {
		// Unmarshal matches the key in any case, as mentions does.
		Items *[]Item `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(bytes.TrimPrefix(body, bom), &r); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	if r.Items == nil {
		return Report{}, nil // mentioned, but not as a top-level key
	}
	return Report{Found: true, Items: *r.Items}, nil
}

// parseItems reads the report's list, the raw value of the key.
func parseItems(raw []byte) (Report, error) {
	var items []Item
	if err := json.Unmarshal(raw, &items); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return Report{Found: true, Items: items}, nil
}

// object reports whether body starts as a JSON object: no other answer
// can hold a top-level key.
func object(body []byte) bool {
	body = bytes.TrimLeft(bytes.TrimPrefix(body, bom), " \t\r\n")
	return len(body) > 0 && body[0] == '{'
}

// bom is the UTF-8 byte order mark, which some Windows and .NET stacks
// write before a JSON answer; encoding/json does not skip it, so the
// answer is read from after it.
var bom = []byte("\xef\xbb\xbf")

// mentions reports whether body holds the key, quoted, in any case: the
// quick look that spares parsing the answers that report nothing.
func mentions(body []byte) bool {
	const quoted = len(Key) + 2
	for i := 0; ; {
		j := bytes.IndexByte(body[i:], '"')
		if j < 0 || len(body)-(i+j) < quoted {
			return false
		}
		i += j
		if body[i+quoted-1] == '"' && bytes.EqualFold(body[i+1:i+quoted-1], []byte(Key)) {
			return true
		}
		i++
	}
}
