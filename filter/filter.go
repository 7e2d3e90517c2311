// Package filter decides which messages a function is invoked with: a CEL
// expression (https://cel.dev) over one message's key, value, headers and
// coordinates, compiled once and evaluated for every message.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// Message is what an expression can see of one message. Key and Value are
// nil for a message without them.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Header is one message header.
type Header struct {
	Key, Value []byte
}

// Filter is a compiled expression. It is safe for concurrent use.
type Filter struct {
	expr    string
	program cel.Program
}

// The variables of an expression.
const (
	varKey       = "key"
	varValue     = "value"
	varJSON      = "json"
	varHeaders   = "headers"
	varTopic     = "topic"
	varPartition = "partition"
	varOffset    = "offset"
	varTimestamp = "timestamp"
)

// env declares the variables. Key, value and json are dynamic: a key is a
// string or bytes depending on the message, and json is whatever the value
// holds.
func env() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(varKey, cel.DynType),
		cel.Variable(varValue, cel.DynType),
		cel.Variable(varJSON, cel.DynType),
		cel.Variable(varHeaders, cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable(varTopic, cel.StringType),
		cel.Variable(varPartition, cel.IntType),
		cel.Variable(varOffset, cel.IntType),
		cel.Variable(varTimestamp, cel.TimestampType),
	)
}

// Compile checks expr and prepares it for evaluation. It fails when expr
// does not parse, names something that does not exist, or cannot return a
// bool; the error is the compiler's message.
func Compile(expr string) (*Filter, error) {
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("setting up the CEL environment: %w", err)
	}
	ast, issues := e.Compile(expr)
	if err := issues.Err(); err != nil {
		return nil, err
	}
	// A dynamic result (json.flag) can only be checked message by message.
	if out := ast.OutputType(); !out.IsExactType(cel.BoolType) && !out.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("the expression returns %s, not a bool", out)
	}
	// OptOptimize folds constants and compiles regular expressions once,
	// here, rather than at every message.
	prg, err := e.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &Filter{expr: expr, program: prg}, nil
}

// String returns the expression.
func (f *Filter) String() string { return f.expr }

// Match reports whether msg passes. An error means the expression could not
// be evaluated for this message (a missing field or header, a value that is
// not JSON, a result that is not a bool); msg does not match then.
func (f *Filter) Match(msg *Message) (bool, error) {
	out, _, err := f.program.Eval(&activation{msg: msg})
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("the expression returned %s, not a bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// activation hands the message's fields to the program as it asks for them,
// so that a message is parsed as JSON, and its headers gathered in a map,
// only when the expression reads them. It lives for one evaluation.
type activation struct {
	msg *Message

	json     ref.Val // nil until asked for
	jsonOK   bool
	parsed   bool // json was asked for
	headers  ref.Val
	gathered bool
}

func (a *activation) ResolveName(name string) (any, bool) {
	m := a.msg
	switch name {
	case varKey:
		return text(m.Key), true
	case varValue:
		return text(m.Value), true
	case varJSON:
		if !a.parsed {
			a.parsed = true
			if v, err := parseJSON(m.Value); err == nil {
				a.json, a.jsonOK = types.DefaultTypeAdapter.NativeToValue(v), true
			}
		}
		return a.json, a.jsonOK
	case varHeaders:
		if !a.gathered {
			a.gathered = true
			a.headers = types.NewStringStringMap(types.DefaultTypeAdapter, headerMap(m.Headers))
		}
		return a.headers, true
	case varTopic:
		return types.String(m.Topic), true
	case varPartition:
		return types.Int(m.Partition), true
	case varOffset:
		return types.Int(m.Offset), true
	case varTimestamp:
		return types.Timestamp{Time: m.Timestamp}, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// text is b as a string when it is UTF-8, as bytes otherwise, so that a
// binary key can still be compared with b"..." literals.
func text(b []byte) ref.Val {
	if utf8.Valid(b) {
		return types.String(b)
	}
	return types.Bytes(b)
}

// headerMap gathers the headers by name. The values of a name that appears
// more than once are joined by ", ", as the event does and as HTTP does.
func headerMap(headers []Header) map[string]string {
	m := make(map[string]string, len(headers))
	for _, h := range headers {
		k := string(h.Key)
		if prev, ok := m[k]; ok {
			m[k] = prev + ", " + string(h.Value)
		} else {
			m[k] = string(h.Value)
		}
	}
	return m
}

// parseJSON decodes one JSON document. Numbers become int64 when they are
// whole and fit, so that large identifiers compare exactly, and float64
// otherwise.
func parseJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err == nil || !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one JSON value")
	}
	return numbers(v)
}

func numbers(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		s := v.String()
		if !strings.ContainsAny(s, ".eE") {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n, nil
			}
		}
		return v.Float64()
	case map[string]any:
		for k, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			v[k] = n
		}
	case []any:
		for i, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			v[i] = n
		}
	}
	return v, nil
}
