package respond

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Record is one record a function asked to write.
type Record struct {
	// Key is nil when the function gave none: the record then goes to the
	// response topic's partition numbered as its input partition (see
	// Partitioner).
	Key []byte
	// Value is nil for a record whose value is null (a tombstone).
	Value   []byte
	Headers []Header
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// ErrAnswer is an answer that names records to write but whose records
// cannot be read. Writing the body as it is would send what the function
// did not mean to a topic others read, so the batch fails instead.
var ErrAnswer = errors.New("the answer's records cannot be read")

// answerRecord is one element of an answer's "records" list.
type answerRecord struct {
	Key     *string           `json:"key"`
	Value   json.RawMessage   `json:"value"`
	Headers map[string]string `json:"headers"`
}

// Parse reads a successful (2xx) answer into the records to write, in order:
//
//   - a JSON object whose "records" member is a list: a record for each of
//     its elements, each an object with an optional "key" (a string),
//     "value" (a string is written as its text, any other JSON value as its
//     JSON text, null or no value as a null value) and "headers" (an object
//     of strings); an empty list writes nothing;
//   - an empty body: nothing;
//   - any other body: one record without key whose value is the body.
//
// A "records" list whose elements are not such objects is ErrAnswer.
// Other members of the object, such as batchItemFailures, are not written.
// The records share no memory with body.
func Parse(body []byte) ([]Record, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	list, ok, err := recordsList(body)
	if err != nil {
		return nil, err
	}
	if !ok {
		return []Record{{Value: bytes.Clone(body)}}, nil
	}
	out := make([]Record, 0, len(list))
	for i, ar := range list {
		r, err := parseRecord(ar)
		if err != nil {
			return nil, fmt.Errorf("%w: records[%d]: %v", ErrAnswer, i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// recordsList finds the "records" list of a JSON object, matching the
// member's name exactly (encoding/json would take "Records" for it), in one
// pass over the body's top level. It reports false for a body that is not
// a JSON object, or one without a "records" member that is a list: such a
// body is written whole.
func recordsList(body []byte) ([]answerRecord, bool, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' || !bytes.Contains(trimmed, []byte(`"records"`)) {
		return nil, false, nil // the common case, without parsing
	}
	if !json.Valid(trimmed) {
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil { // {
		return nil, false, nil
	}
	var list json.RawMessage
	found := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false, nil
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, false, nil
		}
		if key, _ := tok.(string); key == "records" {
			list, found = value, true // the last one, as encoding/json would
		}
	}
	if !found || len(list) == 0 || list[0] != '[' {
		return nil, false, nil
	}
	ld := json.NewDecoder(bytes.NewReader(list))
	ld.DisallowUnknownFields()
	var out []answerRecord
	if err := ld.Decode(&out); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrAnswer, err)
	}
	for i, ar := range out {
		if ar.Key == nil && ar.Value == nil && ar.Headers == nil {
			// An element that is not an object (null) decodes to nothing.
			if elementIsNull(list, i) {
				return nil, false, fmt.Errorf("%w: records[%d]: want an object with key, value and headers, got null", ErrAnswer, i)
			}
		}
	}
	return out, true, nil
}

// elementIsNull reports whether element i of a JSON list is null.
func elementIsNull(list json.RawMessage, i int) bool {
	var elems []json.RawMessage
	if json.Unmarshal(list, &elems) != nil || i >= len(elems) {
		return false
	}
	return string(bytes.TrimSpace(elems[i])) == "null"
}

func parseRecord(ar answerRecord) (Record, error) {
	var r Record
	if ar.Key != nil {
		r.Key = []byte(*ar.Key)
	}
	value := bytes.TrimSpace(ar.Value)
	switch {
	case len(value) == 0 || string(value) == "null":
	case value[0] == '"':
		var s string
		if err := json.Unmarshal(value, &s); err != nil {
			return Record{}, fmt.Errorf("value: %v", err)
		}
		r.Value = []byte(s)
	default:
		r.Value = bytes.Clone(value)
	}
	if len(ar.Headers) > 0 {
		r.Headers = make([]Header, 0, len(ar.Headers))
		for _, k := range sortedKeys(ar.Headers) {
			r.Headers = append(r.Headers, Header{Key: k, Value: []byte(ar.Headers[k])})
		}
	}
	return r, nil
}
