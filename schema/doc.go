// Package schema turns keys and values written through a Confluent-compatible
// Schema Registry into JSON text: Avro, Protobuf and JSON Schema, in the
// Confluent wire format (a zero byte, a 4-byte big-endian schema ID, then the
// payload; Protobuf adds the message indexes before it).
//
// A Registry fetches each schema once by its ID (IDs are immutable), compiles
// it and keeps it in a cache of bounded size; Decode then appends the JSON of
// a value to a buffer. Its failures come in two kinds, which callers must tell
// apart: an *UnavailableError (the registry cannot be reached, or answers
// something other than the schema or "not found") passes, and the value is to
// be decoded again later, never skipped; an *UndecodableError (no magic byte,
// an ID the registry does not know, a payload its schema does not read) will
// fail the same way for ever.
//
// The JSON mappings are those of docs/schemas.md: Avro by the rules of
// avro.go, Protobuf by protojson's canonical mapping, JSON Schema values as
// the JSON they carry.
package schema
