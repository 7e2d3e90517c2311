package types

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"
)

// A decoded key or value is its JSON text in msgKey or msgBody, with the
// schema beside it; one that could not be decoded is its bytes in base64,
// with the reason beside them; the others are as they always were.
func TestDecodedKeysAndValues(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		want Record
	}{
		{"decoded through the registry",
			Message{Key: []byte{0, 0, 0, 0, 9, 2}, Value: []byte{0, 0, 0, 0, 42, 1},
				KeyDecoded:   Decoded{JSON: []byte(`"eu-1"`), SchemaID: "9"},
				ValueDecoded: Decoded{JSON: []byte(`{"amount":5,"note":"a\"b\n"}`), SchemaID: "42"}},
			Record{MsgKey: `"eu-1"`, MsgKeySchemaID: "9", MsgBody: `{"amount":5,"note":"a\"b\n"}`, MsgBodySchemaID: "42"}},
		{"json format, no schema", Message{Key: []byte("k"), Value: []byte(`[1]`), ValueDecoded: Decoded{JSON: []byte(`[1]`)}},
			Record{MsgKey: "k", MsgBody: `[1]`}},
		{"undecodable value, text key kept",
			Message{Key: []byte("None"), Value: []byte("plain"), ValueDecoded: Decoded{Error: "first byte 0x70: no magic byte"}},
			Record{MsgKey: base64.StdEncoding.EncodeToString([]byte("None")), MsgKeyEncoding: Base64,
				MsgBody: base64.StdEncoding.EncodeToString([]byte("plain")), MsgBodyEncoding: Base64, MsgBodyDecodeError: "first byte 0x70: no magic byte"}},
		{"undecodable key",
			Message{Key: []byte{1, 2}, Value: []byte("v"), KeyDecoded: Decoded{Error: "bad \xff"}},
			Record{MsgKey: "AQI=", MsgKeyEncoding: Base64, MsgKeyDecodeError: "bad \uFFFD", MsgBody: "v"}},
		{"a tombstone stays one", Message{Key: nil, Value: nil, ValueDecoded: Decoded{Error: "never looked at"}},
			Record{MsgKey: NoKey, MsgBodyNull: True}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.msg.Topic, tc.want.Topic = "t", "t"
			b := append([]byte(EventStart), AppendRecord(nil, &tc.msg, false)...)
			b = append(b, EventEnd...)
			var e Event
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if got := e.Records[0].Ckafka; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v\nfrom %s", got, tc.want, b)
			}
			if v, _ := e.Records[0].Ckafka.Body(); tc.msg.ValueDecoded.Error != "" && tc.msg.Value != nil && string(v) != string(tc.msg.Value) {
				t.Errorf("the undecoded bytes read back as %q", v)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"raw": FormatRaw, " json ": FormatJSON, "schema-registry": FormatSchemaRegistry} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "avro", "RAW", "schema_registry"} {
		if _, err := ParseFormat(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
