package types

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Any key and value bytes give a valid event that decodes back to the same
// bytes, a null value included, with exactly the fields the format allows.
func FuzzAppendRecord(f *testing.F) {
	f.Add("orders", int32(1), int64(36), []byte("key"), false, []byte("Hello from Ckafka!"), false, false, []byte("trace"), []byte("abc"), int64(1700000000123))
	f.Fuzz(func(t *testing.T, topic string, partition int32, offset int64, key []byte, noKey bool, value []byte, noValue, extras bool, hkey, hvalue []byte, ms int64) {
		if !utf8.ValidString(topic) {
			t.Skip("topic names are ASCII: Kafka and the connector refuse others")
		}
		if noKey {
			key = nil
		}
		switch {
		case noValue:
			value = nil
		case value == nil:
			value = []byte{} // not null: the fuzzer says so with noValue
		}
		m := Message{Topic: topic, Partition: partition, Offset: offset, Key: key, Value: value, Timestamp: time.UnixMilli(ms)}
		if hkey != nil {
			m.Headers = []Header{{Key: hkey, Value: hvalue}}
		}
		// Two records, so that the separator is exercised as well.
		body := []byte(EventStart)
		body = AppendRecord(body, &m, extras)
		body = append(body, ',')
		body = AppendRecord(body, &m, extras)
		body = append(body, EventEnd...)
		if !json.Valid(body) {
			t.Fatalf("not valid JSON: %q", body)
		}

		var generic struct {
			Records []struct {
				Ckafka map[string]json.RawMessage
			}
		}
		if err := json.Unmarshal(body, &generic); err != nil || len(generic.Records) != 2 {
			t.Fatalf("not an event of two records: %v: %q", err, body)
		}
		want := []string{"topic", "partition", "offset", "msgKey", "msgBody"}
		if key != nil && (!utf8.Valid(key) || string(key) == NoKey) {
			want = append(want, "msgKeyEncoding")
		}
		switch {
		case value == nil:
			want = append(want, "msgBodyNull")
		case !utf8.Valid(value):
			want = append(want, "msgBodyEncoding")
		}
		if extras {
			want = append(want, "timestamp", "headers")
		}
		var got []string
		for k := range generic.Records[0].Ckafka {
			got = append(got, k)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("fields %v, want %v: %q", got, want, body)
		}

		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var e Event
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("does not decode as an Event: %v: %q", err, body)
		}
		r := e.Records[1].Ckafka
		if r.Topic != topic || r.Partition != partition || r.Offset != offset {
			t.Errorf("topic, partition, offset %q %d %d, want %q %d %d", r.Topic, r.Partition, r.Offset, topic, partition, offset)
		}
		gotKey, err := r.Key()
		if err != nil || !bytes.Equal(gotKey, key) || (gotKey == nil) != (key == nil) {
			t.Errorf("key %q (nil: %v, msgKey %q, encoding %q, %v), want %q (nil: %v)",
				gotKey, gotKey == nil, r.MsgKey, r.MsgKeyEncoding, err, key, key == nil)
		}
		gotValue, err := r.Body()
		if err != nil || !bytes.Equal(gotValue, value) || (gotValue == nil) != (value == nil) || r.Tombstone() != (value == nil) {
			t.Errorf("value %q (nil: %v, msgBody %q, encoding %q, null %q, %v), want %q (nil: %v)",
				gotValue, gotValue == nil, r.MsgBody, r.MsgBodyEncoding, r.MsgBodyNull, err, value, value == nil)
		}
		if !extras {
			return
		}
		if r.Timestamp == nil || *r.Timestamp != ms {
			t.Errorf("timestamp %v, want %d", r.Timestamp, ms)
		}
		if r.Headers == nil {
			t.Errorf("no headers object: %q", body)
		}
		if len(m.Headers) > 0 {
			if v, ok := r.Headers[headerTextOf(hkey)]; !ok || v != headerTextOf(hvalue) {
				t.Errorf("headers %q, want %q: %q", r.Headers, map[string]string{headerTextOf(hkey): headerTextOf(hvalue)}, body)
			}
		}
	})
}

// headerTextOf is the documented spelling of a header name or value.
func headerTextOf(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// A topic annotation gives trimmed, non-empty, distinct topics, in the order
// written, each one a piece of the annotation between delimiters.
func FuzzFunctionTopics(f *testing.F) {
	f.Add(" orders , ,payments,, orders ", ",")
	f.Fuzz(func(t *testing.T, annotation, delimiter string) {
		if delimiter == "" {
			t.Skip("the configuration refuses an empty delimiter")
		}
		fn := Function{Name: "f", Annotations: map[string]string{TopicAnnotation: annotation}}
		topics := fn.Topics(delimiter)
		var want []string
		for _, piece := range strings.Split(annotation, delimiter) {
			if p := strings.TrimSpace(piece); p != "" && !slices.Contains(want, p) {
				want = append(want, p)
			}
		}
		if !slices.Equal(topics, want) {
			t.Fatalf("Topics(%q, %q) = %q, want %q", annotation, delimiter, topics, want)
		}
		for _, topic := range topics {
			if topic == "" || strings.TrimSpace(topic) != topic || strings.Contains(topic, delimiter) || !strings.Contains(annotation, topic) {
				t.Errorf("topic %q of %q split on %q", topic, annotation, delimiter)
			}
		}
	})
}

var annotationNames = []string{
	AnnotationEnabled, AnnotationGroup, AnnotationInitialOffset, AnnotationMaxMessages,
	AnnotationMaxWait, AnnotationMaxRetries, AnnotationDeadLetterTopic, AnnotationFilter, TopicAnnotation,
	AnnotationMaxBufferedBytes,
}

// Whatever a function's annotations say, the settings are either refused
// with an error naming the annotation and its value, or within the ranges
// the connector can work with.
func FuzzWithAnnotations(f *testing.F) {
	f.Add(uint8(3), "250", uint8(4), " 100ms ")
	f.Fuzz(func(t *testing.T, n1 uint8, v1 string, n2 uint8, v2 string) {
		base := TriggerSettings{
			Enabled: true, Group: "kafka-connector-f", MaxMessages: 100, MaxWait: time.Second,
			MaxBytes: 1 << 20, MaxBufferedBytes: 1 << 20, MaxRetries: -1, RetryBackoffInitial: time.Second, RetryBackoffMax: time.Minute,
			UpstreamTimeout: time.Minute, ContentType: "application/json",
		}
		annotations := map[string]string{
			annotationNames[int(n1)%len(annotationNames)]: v1,
			annotationNames[int(n2)%len(annotationNames)]: v2,
		}
		s, err := base.WithAnnotations(annotations)
		if err != nil {
			var ae *AnnotationError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v, want an *AnnotationError", err, err)
			}
			if raw, ok := annotations[ae.Annotation]; !ok || raw != ae.Value {
				t.Errorf("error names %s=%q, which is not among %q", ae.Annotation, ae.Value, annotations)
			}
			if !strings.Contains(err.Error(), ae.Annotation) {
				t.Errorf("message %q does not name %s", err, ae.Annotation)
			}
			if s != (TriggerSettings{}) {
				t.Errorf("settings returned with an error: %+v", s)
			}
			return
		}
		switch {
		case s.MaxMessages < 1 || s.MaxMessages > 10000:
			t.Errorf("max messages %d accepted from %q", s.MaxMessages, annotations)
		case s.MaxWait < 0 || s.MaxWait > time.Minute:
			t.Errorf("max wait %v accepted from %q", s.MaxWait, annotations)
		case s.MaxRetries < -1 || s.MaxRetries > 10000:
			t.Errorf("max retries %d accepted from %q", s.MaxRetries, annotations)
		case s.Group == "" || len(s.Group) > 255 || strings.TrimSpace(s.Group) != s.Group:
			t.Errorf("group %q accepted from %q", s.Group, annotations)
		case s.DeadLetterTopic != "" && CheckTopicName(s.DeadLetterTopic) != nil:
			t.Errorf("dead-letter topic %q accepted from %q", s.DeadLetterTopic, annotations)
		case s.MaxBufferedBytes < 1024 || s.MaxBufferedBytes > MaxBufferedBytesLimit:
			t.Errorf("max buffered bytes %d accepted from %q", s.MaxBufferedBytes, annotations)
		}
		// What was not annotated keeps the connector-wide value.
		if _, ok := annotations[AnnotationMaxMessages]; !ok && s.MaxMessages != base.MaxMessages {
			t.Errorf("max messages changed to %d without its annotation", s.MaxMessages)
		}
		if raw, ok := annotations[AnnotationEnabled]; ok {
			if want, _ := strconv.ParseBool(strings.TrimSpace(raw)); s.Enabled != want {
				t.Errorf("enabled %v from %q", s.Enabled, raw)
			}
		}
		// A start offset reads back the same from its own spelling, as the
		// log shows it.
		again, err := ParseStartOffset(s.StartOffset.String())
		if err != nil || again.Earliest != s.StartOffset.Earliest || !again.At.Equal(s.StartOffset.At) {
			t.Errorf("start offset %+v spelt %q reads back as %+v, %v", s.StartOffset, s.StartOffset.String(), again, err)
		}
	})
}
