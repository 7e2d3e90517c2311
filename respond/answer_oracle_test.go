package respond

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The answer reader as it was first written, with encoding/json's decoder:
// the fuzz test holds Parse to it.

// decodedRecord is one element of an answer's "records" list.
type decodedRecord struct {
	Key     *string           `json:"key"`
	Value   json.RawMessage   `json:"value"`
	Headers map[string]string `json:"headers"`
}

// parseWithDecoder is Parse as it was.
func parseWithDecoder(body []byte) ([]Record, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	list, ok, err := decodedList(body)
	if err != nil {
		return nil, err
	}
	if !ok {
		return []Record{{Value: bytes.Clone(body)}}, nil
	}
	out := make([]Record, 0, len(list))
	for i, ar := range list {
		r, err := fromDecoded(ar)
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
func decodedList(body []byte) ([]decodedRecord, bool, error) {
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
	var out []decodedRecord
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

func fromDecoded(ar decodedRecord) (Record, error) {
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
