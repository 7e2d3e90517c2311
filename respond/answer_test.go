package respond_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/respond"
)

func TestParse(t *testing.T) {
	rec := func(key, value string, headers ...respond.Header) respond.Record {
		r := respond.Record{Value: []byte(value), Headers: headers}
		if key != "" {
			r.Key = []byte(key)
		}
		return r
	}
	for _, tc := range []struct {
		name, body string
		want       []respond.Record
		bad        bool
	}{
		{name: "empty body", body: ""},
		{name: "blank body", body: " \n"},
		{name: "text", body: "hello", want: []respond.Record{rec("", "hello")}},
		{name: "JSON without records", body: `{"ok":true}`, want: []respond.Record{rec("", `{"ok":true}`)}},
		{name: "the CKafka event echoed", body: `{"Records":[{"Ckafka":{}}]}`, want: []respond.Record{rec("", `{"Records":[{"Ckafka":{}}]}`)}},
		{name: "records not a list", body: `{"records":3}`, want: []respond.Record{rec("", `{"records":3}`)}},
		{name: "a JSON list", body: `[{"records":[]}]`, want: []respond.Record{rec("", `[{"records":[]}]`)}},
		{name: "JSON that does not parse", body: `{"records":[`, want: []respond.Record{rec("", `{"records":[`)}},
		{name: "empty list", body: `{"records":[]}`, want: []respond.Record{}},
		{name: "text value", body: `{"records":[{"value":"a\"b"}]}`, want: []respond.Record{rec("", `a"b`)}},
		{name: "JSON values", body: `{"records":[{"value":{"x": [1, 2]}},{"value":12.5},{"value":true}]}`,
			want: []respond.Record{rec("", `{"x": [1, 2]}`), rec("", "12.5"), rec("", "true")}},
		{name: "null value", body: `{"records":[{"key":"k","value":null},{"key":"k2"}]}`,
			want: []respond.Record{{Key: []byte("k")}, {Key: []byte("k2")}}},
		{name: "empty key", body: `{"records":[{"key":"","value":"v"}]}`, want: []respond.Record{{Key: []byte{}, Value: []byte("v")}}},
		{name: "headers sorted", body: `{"records":[{"key":"k","value":"v","headers":{"b":"2","a":"1"}}]}`,
			want: []respond.Record{rec("k", "v", respond.Header{Key: "a", Value: []byte("1")}, respond.Header{Key: "b", Value: []byte("2")})}},
		{name: "in order, beside batchItemFailures", body: `{"batchItemFailures":[],"records":[{"value":"1"},{"value":"2"},{"value":"3"}]}`,
			want: []respond.Record{rec("", "1"), rec("", "2"), rec("", "3")}},
		{name: "an element not an object", body: `{"records":["v"]}`, bad: true},
		{name: "a null element", body: `{"records":[{"value":"v"},null]}`, bad: true},
		{name: "an empty element", body: `{"records":[{}]}`, want: []respond.Record{{}}},
		{name: "records named twice, the last wins", body: `{"records":[{"value":"1"}],"records":[{"value":"2"}]}`, want: []respond.Record{rec("", "2")}},
		{name: "trailing bytes", body: `{"records":[]} x`, want: []respond.Record{rec("", `{"records":[]} x`)}},
		{name: "a key not a string", body: `{"records":[{"key":1,"value":"v"}]}`, bad: true},
		{name: "a header not a string", body: `{"records":[{"value":"v","headers":{"a":1}}]}`, bad: true},
		{name: "an unknown field", body: `{"records":[{"value":"v","topic":"elsewhere"}]}`, bad: true},
		{name: "not JSON, though it looks like records", body: `{"records":[{"value":"v"},]}`, want: []respond.Record{rec("", `{"records":[{"value":"v"},]}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := respond.Parse([]byte(tc.body))
			if tc.bad {
				if !errors.Is(err, respond.ErrAnswer) {
					t.Fatalf("Parse(%s) = %v, %v; want ErrAnswer", tc.body, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.body, err)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want)) {
				t.Errorf("Parse(%s) =\n%q\nwant\n%q", tc.body, got, tc.want)
			}
		})
	}
}

func TestParseSharesNoMemoryWithTheBody(t *testing.T) {
	for _, body := range []string{"text", `{"records":[{"value":{"a":1}}]}`} {
		b := []byte(body)
		got, err := respond.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		want := string(got[0].Value)
		for i := range b {
			b[i] = 'x'
		}
		if string(got[0].Value) != want {
			t.Errorf("%s: the record changed with the body", body)
		}
	}
}

func TestMessagesCarryTheirSource(t *testing.T) {
	src := respond.Source{Topic: "orders", Partition: 4, First: 10, Last: 19, Function: "enrich", IdempotencyKey: "enrich/orders/4/10-19"}
	msgs := respond.Messages("out", src, []respond.Record{
		{Key: []byte("k"), Value: []byte("v"), Headers: []respond.Header{{Key: "mine", Value: []byte("1")}, {Key: respond.HeaderSourceTopic, Value: []byte("forged")}}},
		{},
	})
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	want := []sarama.RecordHeader{
		{Key: []byte("mine"), Value: []byte("1")},
		{Key: []byte(respond.HeaderSourceTopic), Value: []byte("orders")},
		{Key: []byte(respond.HeaderSourcePartition), Value: []byte("4")},
		{Key: []byte(respond.HeaderSourceFirstOffset), Value: []byte("10")},
		{Key: []byte(respond.HeaderSourceLastOffset), Value: []byte("19")},
		{Key: []byte(respond.HeaderFunction), Value: []byte("enrich")},
		{Key: []byte(respond.HeaderIdempotencyKey), Value: []byte("enrich/orders/4/10-19")},
	}
	if !reflect.DeepEqual(msgs[0].Headers, want) {
		t.Errorf("headers %q\nwant %q (the function's own first, a forged source header dropped)", msgs[0].Headers, want)
	}
	if msgs[0].Topic != "out" {
		t.Errorf("topic %q", msgs[0].Topic)
	}
	if msgs[1].Key != nil || msgs[1].Value != nil {
		t.Errorf("a record without key and value became %v=%v: want both null", msgs[1].Key, msgs[1].Value)
	}
	if respond.Messages("out", src, nil) != nil {
		t.Error("no records, yet messages")
	}
}

func TestPartitioner(t *testing.T) {
	p := respond.Partitioner("out")
	murmur := sarama.NewMurmur2Partitioner("out")
	src := func(in int32) respond.Source { return respond.Source{Partition: in} }
	for _, tc := range []struct {
		name    string
		in, n   int32
		key     []byte
		hashed  bool
		wantOut int32
	}{
		{name: "unkeyed, same count", in: 5, n: 12, wantOut: 5},
		{name: "unkeyed, fewer out", in: 5, n: 3, wantOut: 2},
		{name: "unkeyed, partition 0", in: 0, n: 1, wantOut: 0},
		{name: "keyed", in: 5, n: 12, key: []byte("customer-42"), hashed: true},
		{name: "empty key is a key", in: 5, n: 12, key: []byte{}, hashed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec respond.Record
			rec.Key = tc.key
			m := respond.Messages("out", src(tc.in), []respond.Record{rec})[0]
			got, err := p.Partition(m, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantOut
			if tc.hashed {
				want, _ = murmur.Partition(m, tc.n)
			}
			if got != want {
				t.Errorf("partition %d, want %d", got, want)
			}
			if !p.RequiresConsistency() {
				t.Error("a record's partition must not depend on which partitions are up")
			}
		})
	}
}
