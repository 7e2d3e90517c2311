package respond

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParseAsTheDecoder holds the one-pass reader to the answer reader
// written with encoding/json's decoder: the same records, or ErrAnswer
// from both.
func FuzzParseAsTheDecoder(f *testing.F) {
	for _, body := range []string{
		``, `text`, `{"ok":true}`, `{"Records":[{"Ckafka":{}}]}`, `{"records":3}`, `[{"records":[]}]`,
		`{"records":[]}`, `{"records":[{"value":"a\"b"}]}`, `{"records":[{"value":{"x": [1, "]}", 2]}},{"value":12.5},{"value":true}]}`,
		`{"records":[{"key":"k","value":null},{"key":"k2"}]}`, `{"records":[{"KEY":"k","Value":"v","headers":{"b":"2","a":null}}]}`,
		`{"batchItemFailures":[{"itemIdentifier":"3"}],"records":[{"value":"1"},{"value":"2"}]}`,
		`{"records":["v"]}`, `{"records":[{"value":"v"},null]}`, `{"records":[{}]}`,
		`{"records":[{"value":"1"}],"records":[{"value":"2"}]}`, `{"records":[]} x`,
		`{"records":[{"key":1}]}`, `{"records":[{"headers":{"a":1}}]}`, `{"records":[{"topic":"t"}]}`,
		`{"re\u0063ords":[{"\u006bey":"\u00e9\ud83d\ude00","value":"\xff"}]}`, "{\"records\":[{\"value\":\"\xc3\x28\"}]}",
		`{"records":[{"headers":null,"headers":{"a":"1"},"headers":{"b":"2"}}]}`, `{"records":[{"key":"a","key":null}]}`,
		` { "records" : [ { "value" : [ ] } , { "value" : -1e3 } ] } `,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := Parse(body)
		want, wantErr := parseWithDecoder(body)
		if (err != nil) != (wantErr != nil) || (err != nil && !errors.Is(err, ErrAnswer)) {
			t.Fatalf("Parse(%q): %v; the decoder: %v", body, err, wantErr)
		}
		if err == nil && (len(got) != len(want) || len(got) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("Parse(%q) =\n%q\nthe decoder:\n%q", body, got, want)
		}
	})
}
