package types

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// benchMessage is a message as many topics carry them: a short text key and
// a 100-byte JSON value, whose quotes the event escapes.
func benchMessage(offset int64) Message {
	return Message{
		Topic:     "orders",
		Partition: 7,
		Offset:    offset,
		Key:       []byte("customer-4711"),
		Value:     []byte(strings.Repeat(`{"id":1234,"sku":"A-1"}`, 5)[:100]),
		Timestamp: time.UnixMilli(1700000000000),
		Headers:   []Header{{Key: []byte("trace"), Value: []byte("abc123")}},
	}
}

// encodeEvent encodes an event of n records into dst, as a batch does.
func encodeEvent(dst []byte, m *Message, n int, extras bool) []byte {
	dst = append(dst[:0], EventStart...)
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		m.Offset = int64(i)
		dst = AppendRecord(dst, m, extras)
	}
	return append(dst, EventEnd...)
}

// BenchmarkAppendRecord is the cost of encoding one record into a reused
// buffer, as a batch of 100 records does. Without extras it allocates
// nothing.
func BenchmarkAppendRecord(b *testing.B) {
	for _, c := range []struct {
		name   string
		extras bool
		value  []byte
	}{
		{"json", false, nil},
		{"json+extras", true, nil},
		{"plain", false, []byte(strings.Repeat("plain text, nothing to escape ", 4)[:100])},
		{"binary", false, []byte("\xff\xfe" + strings.Repeat("\x00\x01", 49))},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := benchMessage(0)
			if c.value != nil {
				m.Value = c.value
			}
			buf := append(make([]byte, 0, 64<<10), EventStart...)
			b.SetBytes(int64(len(m.Key) + len(m.Value)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%100 == 0 {
					buf = append(buf[:0], EventStart...)
				} else {
					buf = append(buf, ',')
				}
				m.Offset = int64(i)
				buf = AppendRecord(buf, &m, c.extras)
				i++
			}
		})
	}
}

// The benchmark's events must be what a function can read back.
func TestBenchmarkEventsDecode(t *testing.T) {
	for _, extras := range []bool{false, true} {
		m := benchMessage(0)
		body := encodeEvent(nil, &m, 3, extras)
		var e Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("extras=%v: %v: %s", extras, err, body)
		}
		if len(e.Records) != 3 || e.Records[2].Ckafka.Offset != 2 || e.Records[0].Ckafka.MsgBody != string(m.Value) {
			t.Fatalf("extras=%v: decoded %+v", extras, e)
		}
	}
	m := benchMessage(0)
	body := encodeEvent(nil, &m, 3, false)
	if allocs := testing.AllocsPerRun(10, func() { body = encodeEvent(body, &m, 3, false) }); allocs > 0 {
		t.Errorf("encoding into a reused buffer allocates %.0f times", allocs)
	}
}
