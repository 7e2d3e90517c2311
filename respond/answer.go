package respond

import (
	"bytes"
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
// Member names are matched as encoding/json matches a struct's fields (in
// any case; the last of a name wins), except "records" itself, which is
// matched exactly so that the CKafka event echoed back ("Records") is
// written whole. The records share no memory with body.
//
// Parse reads the body with a scanner of its own (see scanner): a function
// that answers a record for each message makes it the connector's busiest
// reader, and encoding/json's decoder, with json.Valid, cost four times as
// much.
func Parse(body []byte) ([]Record, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] != '{' || !bytes.Contains(trimmed, []byte(`"records"`)) {
		return whole(body), nil // the common case, without parsing
	}
	// The records' bytes are taken from one copy of the body. A first walk
	// checks it is JSON and finds the list, a second reads the list.
	s := scanner{b: bytes.Clone(trimmed)}
	list, n, err := s.recordsList()
	if err != nil || list < 0 || s.b[list] != '[' {
		return whole(body), nil
	}
	s.i = list
	out := make([]Record, 0, n)
	empty, _ := s.open('[')
	for more, n := !empty, 0; more; more, _ = s.more(']') {
		r, err := s.record()
		if err != nil {
			return nil, fmt.Errorf("%w: records[%d]: %v", ErrAnswer, n, err)
		}
		out = append(out, r)
		n++
	}
	return out, nil
}

// whole is the answer written as one record.
func whole(body []byte) []Record { return []Record{{Value: bytes.Clone(body)}} }

// recordsList reads the object at s.i to its end and returns where its
// last "records" member's value starts (the last one, as encoding/json
// would), -1 without one, and how many elements it has if it is a list;
// errSyntax if the text is not one JSON object.
func (s *scanner) recordsList() (list, n int, err error) {
	list = -1
	empty, err := s.open('{')
	for more := !empty; more && err == nil; {
		var name []byte
		if name, err = s.name(); err != nil {
			break
		}
		switch {
		case string(name) == "records" && s.peek() == '[':
			list = s.i
			n, err = s.countList()
		case string(name) == "records":
			list, n = s.i, 0
			_, err = s.skip()
		default:
			_, err = s.skip()
		}
		if err != nil {
			break
		}
		more, err = s.more('}')
	}
	if s.space(); err == nil && s.i < len(s.b) {
		err = errSyntax // text after the object
	}
	return list, n, err
}

// record reads an element of the records list at s.i, in text already
// checked.
func (s *scanner) record() (Record, error) {
	var r Record
	switch c := s.peek(); c {
	case '{':
	case 'n':
		return r, errors.New("want an object with key, value and headers, got null")
	default:
		return r, fmt.Errorf("want an object with key, value and headers, got %s", kind(c))
	}
	var headers map[string]string
	empty, _ := s.open('{')
	for more := !empty; more; more, _ = s.more('}') {
		name, _ := s.name()
		c := s.peek()
		switch {
		case fieldIs(name, "key"):
			switch c {
			case '"':
				r.Key, _ = s.text()
			case 'n':
				r.Key = nil
				s.skip()
			default:
				return Record{}, fmt.Errorf("key: want a string, got %s", kind(c))
			}
		case fieldIs(name, "value"):
			switch c {
			case '"':
				r.Value, _ = s.text()
			case 'n':
				r.Value = nil
				s.skip()
			default:
				r.Value, _ = s.skip()
			}
		case fieldIs(name, "headers"):
			switch c {
			case '{':
				if headers == nil {
					headers = make(map[string]string)
				}
				if err := s.headers(headers); err != nil {
					return Record{}, err
				}
			case 'n':
				headers = nil
				s.skip()
			default:
				return Record{}, fmt.Errorf("headers: want an object of strings, got %s", kind(c))
			}
		default:
			return Record{}, fmt.Errorf("unknown field %q", name)
		}
	}
	if len(headers) > 0 {
		r.Headers = make([]Header, 0, len(headers))
		for _, k := range sortedKeys(headers) {
			r.Headers = append(r.Headers, Header{Key: k, Value: []byte(headers[k])})
		}
	}
	return r, nil
}

// headers reads a record's headers object into h.
func (s *scanner) headers(h map[string]string) error {
	empty, _ := s.open('{')
	for more := !empty; more; more, _ = s.more('}') {
		name, _ := s.name()
		switch c := s.peek(); c {
		case '"':
			v, _ := s.text()
			h[string(name)] = string(v)
		case 'n': // as encoding/json stores null in a map of strings
			h[string(name)] = ""
			s.skip()
		default:
			return fmt.Errorf("headers: %q: want a string, got %s", name, kind(c))
		}
	}
	return nil
}

// fieldIs matches a member's name to a field as encoding/json does.
func fieldIs(name []byte, field string) bool {
	return string(name) == field || bytes.EqualFold(name, []byte(field))
}

func kind(c byte) string {
	switch c {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}
