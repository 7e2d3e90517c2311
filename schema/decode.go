package schema

import (
	"context"
	"encoding/json"
	"unicode/utf8"
)

// Type is the kind of a schema.
type Type int

const (
	Avro Type = iota + 1
	Protobuf
	JSONSchema
)

func (t Type) String() string {
	switch t {
	case Avro:
		return "AVRO"
	case Protobuf:
		return "PROTOBUF"
	case JSONSchema:
		return "JSON"
	}
	return "unknown"
}

// Schema is one schema of the registry, compiled. It is safe for concurrent
// use.
type Schema struct {
	ID     int
	IDText string // ID in decimal, as the event carries it
	Type   Type
	avro   *avroDecoder
	proto  *protoDecoder
}

// AppendJSON appends the JSON text of a payload written with s (what
// follows the 5-byte header) to dst. On an error, an *UndecodableError, dst
// is returned as it was given.
func (s *Schema) AppendJSON(dst, payload []byte) ([]byte, error) {
	var out []byte
	var err error
	switch s.Type {
	case Avro:
		out, err = s.avro.appendJSON(dst, payload)
	case Protobuf:
		out, err = s.proto.appendJSON(dst, payload)
	default:
		if err = CheckJSON(payload); err == nil {
			out = append(dst, payload...)
		}
	}
	if err != nil {
		if u, ok := err.(*UndecodableError); ok {
			u.ID = s.ID
			return dst, u
		}
		return dst, undecodable(s.ID, "a %s payload its schema does not read: %v", s.Type, err)
	}
	return out, nil
}

// Decode appends the JSON text of value, in the Confluent wire format, to
// dst, and returns the schema it was written with. The error is an
// *UndecodableError or an *UnavailableError; dst is returned as it was given
// then.
func (r *Registry) Decode(ctx context.Context, dst, value []byte) ([]byte, *Schema, error) {
	id, payload, err := ParseHeader(value)
	if err != nil {
		return dst, nil, err
	}
	s, err := r.Schema(ctx, id)
	if err != nil {
		return dst, nil, err
	}
	out, err := s.AppendJSON(dst, payload)
	return out, s, err
}

// CheckJSON reports, as an *UndecodableError, a value that is not one JSON
// document in UTF-8.
func CheckJSON(value []byte) error {
	if !utf8.Valid(value) {
		return undecodable(0, "not UTF-8, so not JSON")
	}
	if !json.Valid(value) {
		return undecodable(0, "not JSON")
	}
	return nil
}
