package schema

import "fmt"

// UnavailableError is a failure of the registry, not of the value: it cannot
// be reached, times out, refuses the credentials, or answers something else
// than a schema or "not found". The same value decodes once the registry is
// back. Its message names the registry by its URL, never by its credentials.
type UnavailableError struct {
	Registry string // the URL asked
	Err      error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("schema registry %s: %v", e.Registry, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// UndecodableError is a value that will never decode, however often it is
// tried: it is not in the wire format, the registry does not know its schema
// ID, its schema cannot be compiled, or its payload does not match its
// schema. Reason says which, for a person to read.
type UndecodableError struct {
	ID     int // the schema ID the value names; 0 when it names none
	Reason string
	// cached is a failure of the schema itself, which no later fetch can
	// change (IDs are immutable): it is kept as the schema would be. A
	// "not found" is not: a registry of several nodes may answer it for a
	// schema that another node has just registered.
	cached bool
}

func (e *UndecodableError) Error() string {
	if e.ID == 0 {
		return e.Reason
	}
	return fmt.Sprintf("schema %d: %s", e.ID, e.Reason)
}

func undecodable(id int, format string, args ...any) *UndecodableError {
	return &UndecodableError{ID: id, Reason: fmt.Sprintf(format, args...)}
}

func cachedUndecodable(id int, format string, args ...any) *UndecodableError {
	e := undecodable(id, format, args...)
	e.cached = true
	return e
}
