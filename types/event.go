// Package types holds what the parts of the connector share: the event a
// function receives, the functions the gateway lists, and the trigger
// settings read from their annotations.
package types

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is the body of one invocation, in the CKafka trigger's format:
//
//	{"Records":[{"Ckafka":{"topic":"orders","partition":1,"offset":36,"msgKey":"None","msgBody":"..."}}]}
//
// Beyond the CKafka fields, a record may carry markers, always strings:
// msgKeyEncoding and msgBodyEncoding ("base64") for bytes that are not
// UTF-8, and msgBodyNull ("true") for a null value. A trigger that decodes
// keys or values (key_format, value_format) adds msgKeySchemaId and
// msgBodySchemaId beside what it decoded through the schema registry, and
// msgKeyDecodeError and msgBodyDecodeError beside bytes it could not decode.
//
// The connector writes it with AppendRecord; Event is for reading it back
// (functions written in Go, tests, the demo function).
type Event struct {
	Records []EventRecord `json:"Records"`
}

// EventRecord wraps one message, as the CKafka trigger does.
type EventRecord struct {
	Ckafka Record `json:"Ckafka"`
}

// Record is one Kafka message in the event.
type Record struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// MsgKey is the key as text, "None" when the message has no key (as in
	// the CKafka trigger), or base64 when MsgKeyEncoding says so: a key
	// that is not UTF-8, or that is the text None itself.
	MsgKey         string `json:"msgKey"`
	MsgKeyEncoding string `json:"msgKeyEncoding,omitempty"`
	// MsgKeySchemaID is the registry's ID of the schema the key was
	// decoded with; MsgKeyDecodeError says why a key that should have been
	// decoded was not (it is then in base64).
	MsgKeySchemaID    string `json:"msgKeySchemaId,omitempty"`
	MsgKeyDecodeError string `json:"msgKeyDecodeError,omitempty"`
	// MsgBody is the value as text, "" for an empty or null value, or
	// base64 when MsgBodyEncoding says so.
	MsgBody         string `json:"msgBody"`
	MsgBodyEncoding string `json:"msgBodyEncoding,omitempty"`
	// MsgBodySchemaID and MsgBodyDecodeError are MsgKeySchemaID and
	// MsgKeyDecodeError for the value.
	MsgBodySchemaID    string `json:"msgBodySchemaId,omitempty"`
	MsgBodyDecodeError string `json:"msgBodyDecodeError,omitempty"`
	// MsgBodyNull is "true" for a message whose value is null rather than
	// empty: a tombstone, which on a compacted topic deletes its key. It is
	// absent otherwise. A string, as every field of the CKafka event is.
	MsgBodyNull string `json:"msgBodyNull,omitempty"`
	// Timestamp (Unix milliseconds) and Headers are sent only when the
	// connector runs with record_extras=true; then both are always there,
	// Headers empty ({}) for a message without headers. A header name or
	// value that is not valid UTF-8 is base64 with the prefix "base64:";
	// the values of a name that appears more than once are joined by ", ".
	Timestamp *int64            `json:"timestamp,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
}

// Base64 marks a key or body that was not valid UTF-8 and was base64-encoded
// so that no byte is lost.
const Base64 = "base64"

// NoKey is the msgKey of a message without a key.
const NoKey = "None"

// Key returns the message key as it was in Kafka; nil when it had none.
func (r Record) Key() ([]byte, error) {
	if r.MsgKeyEncoding == "" && r.MsgKey == NoKey {
		return nil, nil
	}
	return decodeField("msgKey", r.MsgKey, r.MsgKeyEncoding)
}

// True is the value of a marker field that is set, such as msgBodyNull.
const True = "true"

// Tombstone reports whether the message's value was null: on a compacted
// topic, the deletion of its key.
func (r Record) Tombstone() bool { return r.MsgBodyNull == True }

// Body returns the message value as it was in Kafka: nil for a null value
// (a tombstone), empty but not nil for an empty one.
func (r Record) Body() ([]byte, error) {
	switch r.MsgBodyNull {
	case "":
	case True:
		if r.MsgBody != "" {
			return nil, fmt.Errorf("msgBodyNull %q with msgBody %q: a null value has no body", r.MsgBodyNull, r.MsgBody)
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("msgBodyNull %q: want %q or nothing", r.MsgBodyNull, True)
	}
	b, err := decodeField("msgBody", r.MsgBody, r.MsgBodyEncoding)
	if err == nil && b == nil {
		b = []byte{}
	}
	return b, err
}

func decodeField(name, s, encoding string) ([]byte, error) {
	switch encoding {
	case "":
		return []byte(s), nil
	case Base64:
		return base64.StdEncoding.DecodeString(s)
	default:
		return nil, fmt.Errorf("%sEncoding %q: want %q or nothing", name, encoding, Base64)
	}
}

// Message is one Kafka message as the connector hands it to the encoder.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte // nil when the message has no key
	Value     []byte // nil when the value is null (a tombstone)
	Timestamp time.Time
	Headers   []Header
	// KeyDecoded and ValueDecoded are the key and value as the trigger's
	// formats read them; zero for raw.
	KeyDecoded, ValueDecoded Decoded
}

// Header is one Kafka record header.
type Header struct {
	Key, Value []byte
}

// EventStart and EventEnd enclose the records of an event; records are
// separated by a comma. Together with AppendRecord they let a batch be
// encoded as its messages arrive, without reflection.
const (
	EventStart = `{"Records":[`
	EventEnd   = `]}`
)

// AppendRecord appends m as one element of the Records list. With extras it
// adds the timestamp and headers. The output is valid JSON whatever bytes the
// key and value hold: text that is not valid UTF-8 is base64-encoded and
// marked, never mangled.
func AppendRecord(dst []byte, m *Message, extras bool) []byte {
	dst = append(dst, `{"Ckafka":{"topic":`...)
	dst = appendString(dst, m.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(m.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, m.Offset, 10)
	switch {
	case m.Key == nil:
		dst = append(dst, `,"msgKey":"None"`...)
	case m.KeyDecoded.JSON != nil || m.KeyDecoded.Error != "":
		dst = appendDecoded(dst, `,"msgKey":`, `,"msgKeyEncoding":"base64","msgKeyDecodeError":`, `,"msgKeySchemaId":`, m.Key, &m.KeyDecoded)
	case string(m.Key) == NoKey:
		// A key that is the text None is sent in base64, so that a bare
		// "None" always means a message without a key.
		dst = appendBase64(dst, `,"msgKey":`, `,"msgKeyEncoding":"base64"`, m.Key)
	default:
		dst = appendField(dst, `,"msgKey":`, `,"msgKeyEncoding":"base64"`, m.Key)
	}
	if m.Value == nil {
		// A null value is not an empty one: on a compacted topic it
		// deletes the key. msgBody stays a string, as in the CKafka event,
		// and a marker beside it tells the two apart.
		dst = append(dst, `,"msgBody":"","msgBodyNull":"true"`...)
	} else if m.ValueDecoded.JSON != nil || m.ValueDecoded.Error != "" {
		dst = appendDecoded(dst, `,"msgBody":`, `,"msgBodyEncoding":"base64","msgBodyDecodeError":`, `,"msgBodySchemaId":`, m.Value, &m.ValueDecoded)
	} else {
		dst = appendField(dst, `,"msgBody":`, `,"msgBodyEncoding":"base64"`, m.Value)
	}
	if extras {
		dst = append(dst, `,"timestamp":`...)
		dst = strconv.AppendInt(dst, m.Timestamp.UnixMilli(), 10)
		// Always there, empty when there are none: a function reads the
		// same fields from every record.
		dst = appendHeaders(dst, m.Headers)
	}
	return append(dst, "}}"...)
}

// appendDecoded appends a key or value as its format read it: the JSON
// text, with the schema's ID when there is one, or the bytes in base64 with
// why they could not be decoded.
func appendDecoded(dst []byte, name, failed, schemaField string, raw []byte, d *Decoded) []byte {
	dst = append(dst, name...)
	if d.JSON == nil {
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, raw)
		dst = append(dst, '"')
		dst = append(dst, failed...)
		return appendString(dst, strings.ToValidUTF8(d.Error, "\uFFFD"))
	}
	dst = appendString(dst, d.JSON)
	if d.SchemaID != "" {
		dst = append(dst, schemaField...)
		dst = appendString(dst, d.SchemaID)
	}
	return dst
}

func appendField(dst []byte, name, encodingField string, b []byte) []byte {
	if !utf8.Valid(b) {
		return appendBase64(dst, name, encodingField, b)
	}
	dst = append(dst, name...)
	return appendString(dst, b)
}

func appendBase64(dst []byte, name, encodingField string, b []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	dst = append(dst, '"')
	return append(dst, encodingField...)
}

// appendHeaders appends the headers as one JSON object. A name that appears
// more than once gets one member, its values joined by ", " as HTTP joins
// repeated header fields: a repeated member name would make most decoders
// keep only one of the values. Grouping through a map keeps the work linear
// in the number of headers, however many a message carries.
func appendHeaders(dst []byte, headers []Header) []byte {
	var names []string
	values := make(map[string][]string, len(headers))
	for _, h := range headers {
		name := headerText(h.Key)
		if _, seen := values[name]; !seen {
			names = append(names, name)
		}
		values[name] = append(values[name], headerText(h.Value))
	}
	dst = append(dst, `,"headers":{`...)
	for i, name := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, name)
		dst = append(dst, ':')
		dst = appendString(dst, strings.Join(values[name], ", "))
	}
	return append(dst, '}')
}

// headerText gives a header name or value as text; bytes that are not UTF-8
// become base64 behind a marker, as a header map has no room for a separate
// encoding field.
func headerText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

const hex = "0123456789abcdef"

// plain holds the bytes that a JSON string holds as they are: all but the
// control characters, quote and backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// AppendJSONString appends s as a JSON string, as the event writes its
// fields. s must be valid UTF-8. Only what JSON requires is escaped: quote,
// backslash and control characters.
func AppendJSONString(dst, s []byte) []byte { return appendString(dst, s) }

// appendString appends s as a JSON string. s must be valid UTF-8. Only what
// JSON requires is escaped: quote, backslash and control characters.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain[c] {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
