package types

import (
	"fmt"
	"strings"
)

// Format is how the keys or the values of a trigger's messages are read
// before they are delivered.
type Format string

const (
	// FormatRaw delivers the bytes as they are: text when they are UTF-8,
	// base64 otherwise. The default.
	FormatRaw Format = "raw"
	// FormatJSON delivers values that are JSON as they are, and treats any
	// other as undecodable (dead-lettered, or delivered in base64 with the
	// reason): for a topic whose consumers count on JSON.
	FormatJSON Format = "json"
	// FormatSchemaRegistry decodes the Confluent wire format through the
	// schema registry: Avro, Protobuf or JSON Schema, as the schema ID says,
	// delivered as JSON text.
	FormatSchemaRegistry Format = "schema-registry"
)

// FormatsAllowed lists the formats, as an error message says them.
const FormatsAllowed = "raw, json or schema-registry"

// ParseFormat reads a format by its name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.TrimSpace(s)); f {
	case FormatRaw, FormatJSON, FormatSchemaRegistry:
		return f, nil
	}
	return "", fmt.Errorf("format %q: want %s", s, FormatsAllowed)
}

// Decodes reports whether the format reads the bytes rather than passing
// them on.
func (f Format) Decodes() bool { return f == FormatJSON || f == FormatSchemaRegistry }

// Decoded is a key or value as its format read it, for the event.
type Decoded struct {
	// JSON is the decoded JSON text, delivered in place of the bytes; nil
	// when the bytes are delivered as they are.
	JSON []byte
	// SchemaID is the ID of the registry's schema that decoded it, in
	// decimal; empty for none.
	SchemaID string
	// Error, when not empty, says why the bytes could not be decoded: they
	// are then delivered in base64, with Error beside them.
	Error string
}
