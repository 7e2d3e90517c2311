package types

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/schedule"
)

func encode(extras bool, msgs ...Message) []byte {
	b := []byte(EventStart)
	for i := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendRecord(b, &msgs[i], extras)
	}
	return append(b, EventEnd...)
}

func TestEventMatchesTheReference(t *testing.T) {
	got := encode(false,
		Message{Topic: "test-topic", Partition: 1, Offset: 36, Value: []byte("Hello from Ckafka!")},
		Message{Topic: "test-topic", Partition: 1, Offset: 37, Value: []byte("Hello from Ckafka again!")},
	)
	want := `{"Records":[` +
		`{"Ckafka":{"topic":"test-topic","partition":1,"offset":36,"msgKey":"None","msgBody":"Hello from Ckafka!"}},` +
		`{"Ckafka":{"topic":"test-topic","partition":1,"offset":37,"msgKey":"None","msgBody":"Hello from Ckafka again!"}}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestKeysAndValuesRoundTrip(t *testing.T) {
	tests := []struct {
		name         string
		key, value   []byte
		wantEncoding string // of the body
	}{
		{"text", []byte("k"), []byte("hello"), ""},
		{"no key", nil, []byte("v"), ""},
		{"empty key and value", []byte{}, []byte{}, ""},
		{"null value", []byte("k"), nil, ""},
		{"escapes", []byte("\"\\"), []byte("line\nbreak\ttab\r\x00\x1f\u2028 \"quote\" \\ </script>"), ""},
		{"unicode", []byte("ключ"), []byte("値 ✓ 😀"), ""},
		{"invalid utf-8", []byte{0xff}, []byte{0xc3, 0x28, 0x00, 0xfe}, Base64},
		{"truncated rune", []byte("ok"), []byte("abc\xe2\x82"), Base64},
		{"the key None", []byte("None"), []byte("x"), ""},
		{"the key None with a body that is not text", []byte("None"), []byte{0xff}, Base64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := encode(false, Message{Topic: "t", Partition: 2, Offset: 9, Key: tc.key, Value: tc.value})
			var e Event
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("not JSON: %v: %s", err, body)
			}
			r := e.Records[0].Ckafka
			value, err := r.Body()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(value, tc.value) || (value == nil) != (tc.value == nil) {
				t.Errorf("value %q (nil: %v), want %q (nil: %v)", value, value == nil, tc.value, tc.value == nil)
			}
			if r.Tombstone() != (tc.value == nil) {
				t.Errorf("tombstone %v for the value %q (nil: %v)", r.Tombstone(), tc.value, tc.value == nil)
			}
			if r.MsgBodyEncoding != tc.wantEncoding {
				t.Errorf("msgBodyEncoding %q, want %q", r.MsgBodyEncoding, tc.wantEncoding)
			}
			key, err := r.Key()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, tc.key) || (key == nil) != (tc.key == nil) {
				t.Errorf("key %q, want %q", key, tc.key)
			}
		})
	}
}

// A null value (a tombstone on a compacted topic) and an empty one both have
// the msgBody "", as in the CKafka event; a marker beside it, only for the
// null one, tells them apart.
func TestNullAndEmptyValuesDiffer(t *testing.T) {
	got := encode(false,
		Message{Topic: "t", Offset: 1, Key: []byte("gone"), Value: nil},
		Message{Topic: "t", Offset: 2, Key: []byte("blank"), Value: []byte{}},
	)
	want := `{"Records":[` +
		`{"Ckafka":{"topic":"t","partition":0,"offset":1,"msgKey":"gone","msgBody":"","msgBodyNull":"true"}},` +
		`{"Ckafka":{"topic":"t","partition":0,"offset":2,"msgKey":"blank","msgBody":""}}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	tests := []struct {
		name    string
		record  Record
		want    []byte
		wantErr string
	}{
		{"null", Record{MsgBodyNull: "true"}, nil, ""},
		{"empty", Record{}, []byte{}, ""},
		{"unknown marker", Record{MsgBodyNull: "yes"}, nil, "msgBodyNull"},
		{"null with a body", Record{MsgBody: "x", MsgBodyNull: "true"}, nil, "no body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.record.Body()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Body() = %q, %v; want an error saying %q", b, err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(b, tc.want) || (b == nil) != (tc.want == nil) {
				t.Errorf("Body() = %q (nil: %v), %v; want %q (nil: %v)", b, b == nil, err, tc.want, tc.want == nil)
			}
		})
	}
}

func TestRecordExtras(t *testing.T) {
	ts := time.UnixMilli(1700000000123)
	body := encode(true, Message{
		Topic: "t", Key: []byte("k"), Value: []byte("v"), Timestamp: ts,
		Headers: []Header{{Key: []byte("trace"), Value: []byte("abc")}, {Key: []byte("bin"), Value: []byte{0xff, 0x00}}},
	})
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	r := e.Records[0].Ckafka
	if r.Timestamp == nil || *r.Timestamp != 1700000000123 {
		t.Errorf("timestamp %v, want 1700000000123", r.Timestamp)
	}
	if r.Headers["trace"] != "abc" || r.Headers["bin"] != "base64:/wA=" {
		t.Errorf("headers %v", r.Headers)
	}
	repeated := encode(true, Message{Topic: "t", Headers: []Header{
		{Key: []byte("via"), Value: []byte("a")}, {Key: []byte("x"), Value: []byte("1")}, {Key: []byte("via"), Value: []byte("b")},
	}})
	if !bytes.Contains(repeated, []byte(`"headers":{"via":"a, b","x":"1"}`)) {
		t.Errorf("repeated header names: %s", repeated)
	}
	bare := encode(true, Message{Topic: "t", Value: []byte("v"), Timestamp: ts})
	if !bytes.Contains(bare, []byte(`"timestamp":1700000000123,"headers":{}}`)) {
		t.Errorf("a message without headers: %s; want headers {} beside the timestamp", bare)
	}
	plain := encode(false, Message{Topic: "t", Value: []byte("v"), Timestamp: ts, Headers: []Header{{Key: []byte("h")}}})
	if bytes.Contains(plain, []byte("timestamp")) || bytes.Contains(plain, []byte("headers")) {
		t.Errorf("extras off, yet the event carries them: %s", plain)
	}
}

func TestFunctionTopics(t *testing.T) {
	tests := []struct {
		annotation, delimiter string
		want                  []string
	}{
		{"orders", ",", []string{"orders"}},
		{"orders,payments", ",", []string{"orders", "payments"}},
		{" orders , ,payments,, orders ", ",", []string{"orders", "payments"}},
		{"", ",", nil},
		{"a;b,c", ";", []string{"a", "b,c"}},
	}
	for _, tc := range tests {
		f := Function{Name: "f", Annotations: map[string]string{"topic": tc.annotation}}
		if got := f.Topics(tc.delimiter); !slices.Equal(got, tc.want) {
			t.Errorf("Topics(%q, %q) = %q, want %q", tc.annotation, tc.delimiter, got, tc.want)
		}
	}
	if got := (Function{Name: "f"}).Topics(","); got != nil {
		t.Errorf("no annotations: %q", got)
	}
	if got := (Function{Name: "f", Namespace: "ns"}).InvokeName(); got != "f.ns" {
		t.Errorf("InvokeName = %q, want f.ns", got)
	}
}

func TestParseStartOffset(t *testing.T) {
	tests := []struct {
		in   string
		want StartOffset
		ok   bool
	}{
		{"latest", StartOffset{}, true},
		{"newest", StartOffset{}, true},
		{"earliest", StartOffset{Earliest: true}, true},
		{"OLDEST", StartOffset{Earliest: true}, true},
		{"2026-01-02T03:04:05Z", StartOffset{At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, true},
		{"1700000000000", StartOffset{At: time.UnixMilli(1700000000000)}, true},
		{"yesterday", StartOffset{}, false},
		{"-5", StartOffset{}, false},
		{"", StartOffset{}, false},
	}
	for _, tc := range tests {
		got, err := ParseStartOffset(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (got.Earliest != tc.want.Earliest || !got.At.Equal(tc.want.At))) {
			t.Errorf("ParseStartOffset(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestWithAnnotations(t *testing.T) {
	base := TriggerSettings{Enabled: true, Group: "g", MaxMessages: 100, MaxWait: time.Second, MaxRetries: -1, MaxBufferedBytes: 1 << 20}
	tests := []struct {
		annotations map[string]string
		check       func(TriggerSettings) bool
		bad         string // the annotation named in the error, if any
	}{
		{map[string]string{"kafka-max-messages": "7"}, func(s TriggerSettings) bool { return s.MaxMessages == 7 }, ""},
		{map[string]string{"kafka-max-wait": "250ms"}, func(s TriggerSettings) bool { return s.MaxWait == 250*time.Millisecond }, ""},
		{map[string]string{"kafka-max-retries": "0"}, func(s TriggerSettings) bool { return s.MaxRetries == 0 }, ""},
		{map[string]string{"kafka-initial-offset": "earliest"}, func(s TriggerSettings) bool { return s.StartOffset.Earliest }, ""},
		{map[string]string{"kafka-dead-letter-topic": "orders.dlq"}, func(s TriggerSettings) bool { return s.DeadLetterTopic == "orders.dlq" }, ""},
		{map[string]string{"kafka-group": "legacy-group"}, func(s TriggerSettings) bool { return s.Group == "legacy-group" }, ""},
		{map[string]string{"kafka-enabled": "false"}, func(s TriggerSettings) bool { return !s.Enabled }, ""},
		{map[string]string{"kafka-filter": ` json.type == "order" `}, func(s TriggerSettings) bool { return s.Filter == `json.type == "order"` }, ""},
		{map[string]string{"kafka-max-buffered-bytes": " 262144 "}, func(s TriggerSettings) bool { return s.MaxBufferedBytes == 262144 }, ""},
		{map[string]string{"kafka-max-buffered-bytes": "52428800"}, func(s TriggerSettings) bool { return s.MaxBufferedBytes == MaxBufferedBytesLimit }, ""},
		{map[string]string{"unrelated": "x"}, func(s TriggerSettings) bool { return s == base }, ""},
		{map[string]string{"kafka-ordering": "key"}, func(s TriggerSettings) bool {
			return s.Ordering == schedule.OrderKey && s.InFlightPerPartition() == DefaultConcurrency
		}, ""},
		{map[string]string{"kafka-ordering": " none ", "kafka-concurrency": "16", "kafka-max-inflight": "40"}, func(s TriggerSettings) bool {
			return s.Ordering == schedule.OrderNone && s.InFlightPerPartition() == 16 && s.MaxInflight == 40
		}, ""},
		{map[string]string{"kafka-ordering": "partition", "kafka-concurrency": "1"}, func(s TriggerSettings) bool {
			return s.Ordering == schedule.OrderPartition && s.InFlightPerPartition() == 1
		}, ""},
		{map[string]string{"kafka-max-inflight": "0"}, func(s TriggerSettings) bool { return s.MaxInflight == 0 }, ""},
		{map[string]string{"kafka-ordering": "keys"}, nil, "kafka-ordering"},
		{map[string]string{"kafka-concurrency": "4"}, nil, "kafka-concurrency"}, // the base is ordering partition
		{map[string]string{"kafka-ordering": "partition", "kafka-concurrency": "2"}, nil, "kafka-concurrency"},
		{map[string]string{"kafka-ordering": "key", "kafka-concurrency": "0"}, nil, "kafka-concurrency"},
		{map[string]string{"kafka-ordering": "key", "kafka-concurrency": "1001"}, nil, "kafka-concurrency"},
		{map[string]string{"kafka-max-inflight": "-1"}, nil, "kafka-max-inflight"},
		{map[string]string{"kafka-max-inflight": "lots"}, nil, "kafka-max-inflight"},
		{map[string]string{"kafka-max-messages": "0"}, nil, "kafka-max-messages"},
		{map[string]string{"kafka-max-messages": "10001"}, nil, "kafka-max-messages"},
		{map[string]string{"kafka-max-wait": "61s"}, nil, "kafka-max-wait"},
		{map[string]string{"kafka-max-wait": "soon"}, nil, "kafka-max-wait"},
		{map[string]string{"kafka-max-retries": "-2"}, nil, "kafka-max-retries"},
		{map[string]string{"kafka-initial-offset": "first"}, nil, "kafka-initial-offset"},
		{map[string]string{"kafka-dead-letter-topic": "bad topic"}, nil, "kafka-dead-letter-topic"},
		{map[string]string{"kafka-group": " "}, nil, "kafka-group"},
		{map[string]string{"kafka-enabled": "maybe"}, nil, "kafka-enabled"},
		{map[string]string{"kafka-filter": " "}, nil, "kafka-filter"},
		{map[string]string{"kafka-max-buffered-bytes": "1023"}, nil, "kafka-max-buffered-bytes"},
		{map[string]string{"kafka-max-buffered-bytes": "52428801"}, nil, "kafka-max-buffered-bytes"},
		{map[string]string{"kafka-max-buffered-bytes": "1MiB"}, nil, "kafka-max-buffered-bytes"},
		{map[string]string{"kafka-value-format": " schema-registry ", "kafka-key-format": "json"}, func(s TriggerSettings) bool {
			return s.ValueFormat == FormatSchemaRegistry && s.KeyFormat == FormatJSON
		}, ""},
		{map[string]string{"kafka-value-format": "avro"}, nil, "kafka-value-format"},
		{map[string]string{"kafka-key-format": ""}, nil, "kafka-key-format"},
	}
	for _, tc := range tests {
		got, err := base.WithAnnotations(tc.annotations)
		if tc.bad != "" {
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Annotation != tc.bad || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%v: error %v, want one naming %s", tc.annotations, err, tc.bad)
			}
			continue
		}
		if err != nil || !tc.check(got) {
			t.Errorf("%v: got %+v, %v", tc.annotations, got, err)
		}
	}
}

func TestCheckTopicName(t *testing.T) {
	for name, ok := range map[string]bool{
		"orders": true, "a.b_c-D9": true, "": false, ".": false, "..": false,
		"with space": false, "slash/": false, strings.Repeat("x", 249): true, strings.Repeat("x", 250): false,
	} {
		if err := CheckTopicName(name); (err == nil) != ok {
			t.Errorf("CheckTopicName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestFunctionCheck(t *testing.T) {
	tests := []struct {
		f  Function
		ok bool
	}{
		{Function{Name: "echo"}, true},
		{Function{Name: "echo", Namespace: "openfaas-fn"}, true},
		{Function{Name: strings.Repeat("a", 253)}, true},
		{Function{}, false},
		{Function{Name: strings.Repeat("a", 254)}, false},
		{Function{Name: "odd/name"}, false},
		{Function{Name: "echo", Namespace: "team a"}, false},
	}
	for _, tc := range tests {
		if err := tc.f.Check(); (err == nil) != tc.ok {
			t.Errorf("Check(%q, %q) = %v, want ok %v", tc.f.Name, tc.f.Namespace, err, tc.ok)
		}
	}
}
