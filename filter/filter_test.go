package filter

import (
	"strings"
	"testing"
	"time"
)

var order = &Message{
	Topic:     "orders",
	Partition: 3,
	Offset:    42,
	Key:       []byte("eu-7"),
	Value:     []byte(`{"type":"order","amount":150.5,"id":9007199254740993,"items":[{"sku":"a"}],"gift":false}`),
	Headers:   []Header{{Key: []byte("event-type"), Value: []byte("created")}, {Key: []byte("trace"), Value: []byte("t1")}, {Key: []byte("trace"), Value: []byte("t2")}},
	Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
}

var binary = &Message{
	Topic: "raw",
	Key:   []byte{0xff, 0x00},
	Value: []byte{0xfe, 0x01},
}

func TestMatch(t *testing.T) {
	tests := []struct {
		expr string
		msg  *Message
		want bool
		// err is part of the evaluation error; the message then does not match.
		err string
	}{
		{expr: `key.startsWith("eu-")`, msg: order, want: true},
		{expr: `key.startsWith("us-")`, msg: order, want: false},
		{expr: `value.contains("order")`, msg: order, want: true},
		{expr: `json.type == "order" && json.amount > 100`, msg: order, want: true},
		{expr: `json.type == "order" && json.amount > 200`, msg: order, want: false},
		{expr: `json.id == 9007199254740993`, msg: order, want: true}, // beyond float64's exact integers
		{expr: `json.items[0].sku == "a" && !json.gift`, msg: order, want: true},
		{expr: `has(json.customer)`, msg: order, want: false},
		{expr: `headers["event-type"] == "created"`, msg: order, want: true},
		{expr: `headers.trace == "t1, t2"`, msg: order, want: true},
		{expr: `"missing" in headers`, msg: order, want: false},
		// Guards, as the README suggests them, make absence a plain false.
		{expr: `"event-type" in headers && headers["event-type"] == "created"`, msg: &Message{}, want: false},
		{expr: `has(json.customer) && json.customer.country in ["FR", "DE"]`, msg: order, want: false},
		{expr: `has(json.customer) && json.customer.country in ["FR", "DE"]`, msg: &Message{Value: []byte(`{"customer":{"country":"FR"}}`)}, want: true},
		{expr: `topic == "orders" && partition == 3 && offset == 42`, msg: order, want: true},
		{expr: `timestamp > timestamp("2026-01-01T00:00:00Z")`, msg: order, want: true},
		{expr: `key.matches("^eu-[0-9]+$")`, msg: order, want: true},

		// A key or value that is not UTF-8 is bytes.
		{expr: `key == b"\xff\x00"`, msg: binary, want: true},
		{expr: `value == b"\xfe\x01" && type(value) == bytes`, msg: binary, want: true},
		{expr: `key.startsWith("eu-")`, msg: binary, err: "no such overload"},
		// No key, no value: empty strings.
		{expr: `key == "" && value == ""`, msg: &Message{}, want: true},

		// Runtime errors: the message does not match.
		{expr: `json.type == "order"`, msg: binary, err: "no such attribute"},
		{expr: `has(json.type)`, msg: &Message{Value: []byte("not JSON")}, err: "no such attribute"},
		{expr: `json.type == "order"`, msg: &Message{Value: []byte(`{"type":"order"} trailing`)}, err: "no such attribute"},
		{expr: `json.customer == "x"`, msg: order, err: "no such key"},
		{expr: `headers["event-type"] == "created"`, msg: &Message{}, err: "no such key"},
		{expr: `json.gift`, msg: &Message{Value: []byte(`{"gift":"yes"}`)}, err: "not a bool"},
		{expr: `json.amount / 0 > 1`, msg: &Message{Value: []byte(`{"amount":3}`)}, err: "division by zero"},
		// An error on one side of || does not matter when the other holds.
		{expr: `json.type == "order" || key == b"\xff\x00"`, msg: binary, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := Compile(tt.expr)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got, err := f.Match(tt.msg)
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Match = %v, %v; want an error with %q", got, err, tt.err)
			case tt.err != "" && got:
				t.Fatalf("Match = true with the error %v; want false", err)
			case tt.err == "" && err != nil:
				t.Fatalf("Match: %v", err)
			case got != tt.want:
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		expr string
		err  string // part of the compiler's message
	}{
		{expr: `json.amount >`, err: "Syntax error"},
		{expr: ``, err: "Syntax error"},
		{expr: `amount > 100`, err: "undeclared reference to 'amount'"},
		{expr: `key.size()`, err: "returns int, not a bool"},
		{expr: `topic`, err: "returns string, not a bool"},
		{expr: `headers`, err: "not a bool"},
		{expr: `partition.startsWith("1")`, err: "no matching overload"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := Compile(tt.expr)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tt.expr, f)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Compile(%q): %v; want %q in it", tt.expr, err, tt.err)
			}
		})
	}
}

// The value is parsed only for an expression that reads json, and only when
// the evaluation reaches it: the cost of JSON is paid by those who use it.
func TestJSONIsParsedOnlyWhenRead(t *testing.T) {
	tests := []struct {
		expr   string
		parsed bool
	}{
		{expr: `key.startsWith("eu-")`, parsed: false},
		{expr: `value.contains("order")`, parsed: false},
		{expr: `key.startsWith("us-") && json.amount > 100`, parsed: false}, // the left side decides
		{expr: `key.startsWith("eu-") && json.amount > 100`, parsed: true},
		{expr: `json.type == "order"`, parsed: true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := Compile(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			a := &activation{msg: order}
			if _, _, err := f.program.Eval(a); err != nil {
				t.Fatal(err)
			}
			if a.parsed != tt.parsed {
				t.Errorf("value parsed as JSON: %v, want %v", a.parsed, tt.parsed)
			}
		})
	}
}

func TestConcurrentMatches(t *testing.T) {
	f, err := Compile(`json.type == "order" && headers["event-type"] == "created"`)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 200 {
				m, err := f.Match(order)
				ok = ok && m && err == nil
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("a concurrent match failed")
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, expr := range []string{`key.startsWith("eu-")`, `headers["event-type"] == "created"`, `json.type == "order" && json.amount > 100`} {
		b.Run(expr, func(b *testing.B) {
			f, err := Compile(expr)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := f.Match(order); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
