package schema

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// avroCase is a value encoded by hamba/avro with schema, and the JSON the
// decoder must write for it: the mapping of docs/schemas.md, exactly.
type avroCase struct {
	name, schema string
	value        any
	want         string
}

func record(fields string) string {
	return `{"type":"record","name":"R","namespace":"test","fields":[` + fields + `]}`
}

var avroCases = []avroCase{
	{"primitives", record(`{"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
		{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"s","type":"string"},{"name":"by","type":"bytes"},{"name":"n","type":"null"}`),
		map[string]any{"b": true, "i": int32(-7), "l": int64(9007199254740993), "f": float32(0.1), "d": 2.5e-300, "s": "héllo \"q\"\n\x01", "by": []byte{0, 1, 0xff}, "n": nil},
		`{"b":true,"i":-7,"l":9007199254740993,"f":0.1,"d":2.5e-300,"s":"héllo \"q\"\n\u0001","by":"AAH/","n":null}`},
	{"extreme numbers", record(`{"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"e","type":"double"},{"name":"g","type":"float"}`),
		map[string]any{"i": int32(math.MinInt32), "l": int64(math.MinInt64), "f": float32(math.Inf(1)), "d": math.NaN(), "e": math.Inf(-1), "g": float32(1e30)},
		`{"i":-2147483648,"l":-9223372036854775808,"f":"Infinity","d":"NaN","e":"-Infinity","g":1e+30}`},
	{"a string that is not UTF-8", `"string"`, "a\xffb", "\"a\uFFFDb\""},
	{"top-level primitive", `"long"`, int64(42), `42`},
	{"nullable union, null", record(`{"name":"u","type":["null","string"]}`), map[string]any{"u": nil}, `{"u":null}`},
	{"nullable union, value", record(`{"name":"u","type":["null","string"]}`), map[string]any{"u": "x"}, `{"u":"x"}`},
	{"union of several, the plain value", record(`{"name":"u","type":["null","int","string",{"type":"record","name":"S","fields":[{"name":"x","type":"int"}]}]},
		{"name":"v","type":["null","int","string"]}`),
		map[string]any{"u": map[string]any{"test.S": map[string]any{"x": int32(1)}}, "v": map[string]any{"int": 7}},
		`{"u":{"x":1},"v":7}`},
	{"enum, array, map, fixed and nested record", record(`
		{"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
		{"name":"a","type":{"type":"array","items":"int"}},
		{"name":"m","type":{"type":"map","values":"string"}},
		{"name":"x","type":{"type":"fixed","name":"F4","size":4}},
		{"name":"in","type":{"type":"record","name":"Inner","fields":[{"name":"k","type":"string"},{"name":"z","type":{"type":"array","items":"Inner"}}]}},
		{"name":"again","type":"Color"},
		{"name":"empty","type":{"type":"array","items":"string"}}`),
		map[string]any{"e": "GREEN", "a": []int32{1, 2, 3}, "m": map[string]any{"k\"ey": "v"}, "x": [4]byte{1, 2, 3, 4},
			"in": map[string]any{"k": "outer", "z": []any{map[string]any{"k": "inner", "z": []any{}}}}, "again": "RED", "empty": []string{}},
		`{"e":"GREEN","a":[1,2,3],"m":{"k\"ey":"v"},"x":"AQIDBA==","in":{"k":"outer","z":[{"k":"inner","z":[]}]},"again":"RED","empty":[]}`},
	{"logical types", record(`
		{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
		{"name":"neg","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
		{"name":"small","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":4}},
		{"name":"whole","type":{"type":"bytes","logicalType":"decimal","precision":30,"scale":0}},
		{"name":"fdec","type":{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":18,"scale":3}},
		{"name":"day","type":{"type":"int","logicalType":"date"}},
		{"name":"tms","type":{"type":"int","logicalType":"time-millis"}},
		{"name":"tus","type":{"type":"long","logicalType":"time-micros"}},
		{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
		{"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
		{"name":"lts","type":{"type":"long","logicalType":"local-timestamp-millis"}},
		{"name":"ltsu","type":{"type":"long","logicalType":"local-timestamp-micros"}},
		{"name":"id","type":{"type":"string","logicalType":"uuid"}},
		{"name":"dur","type":{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}},
		{"name":"opt","type":["null",{"type":"long","logicalType":"timestamp-millis"}]},
		{"name":"unknown","type":{"type":"long","logicalType":"timestamp-nanos"}}`),
		map[string]any{
			"dec": big.NewRat(1234, 100), "neg": big.NewRat(-5, 100), "small": big.NewRat(3, 10000),
			"whole":   new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(25), nil)),
			"fdec":    big.NewRat(-1234567, 1000),
			"day":     time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC),
			"tms":     13*time.Hour + 45*time.Minute + 30*time.Second + 250*time.Millisecond,
			"tus":     time.Hour + time.Microsecond,
			"ts":      time.Date(2024, 5, 1, 13, 45, 30, 250e6, time.UTC),
			"tsu":     time.Date(1969, 12, 31, 23, 59, 59, 999999e3, time.UTC),
			"lts":     time.Date(2024, 5, 1, 13, 45, 30, 0, time.UTC),
			"ltsu":    time.Date(2024, 5, 1, 13, 45, 30, 1000, time.UTC),
			"id":      "3e0d0c6e-8f4b-4a52-9f57-5b8f3a2f4f10",
			"dur":     avro.LogicalDuration{Months: 1, Days: 2, Milliseconds: 3},
			"opt":     time.Date(2000, 1, 2, 3, 4, 5, 0, time.UTC),
			"unknown": int64(1714571130000000000),
		},
		`{"dec":"12.34","neg":"-0.05","small":"0.0003","whole":"10000000000000000000000000","fdec":"-1234.567",` +
			`"day":"2024-05-01","tms":"13:45:30.250","tus":"01:00:00.000001","ts":"2024-05-01T13:45:30.250Z","tsu":"1969-12-31T23:59:59.999999Z",` +
			`"lts":"2024-05-01T13:45:30.000","ltsu":"2024-05-01T13:45:30.000001","id":"3e0d0c6e-8f4b-4a52-9f57-5b8f3a2f4f10",` +
			`"dur":{"months":1,"days":2,"milliseconds":3},"opt":"2000-01-02T03:04:05.000Z","unknown":1714571130000000000}`},
	{"recursive list", `{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}`,
		map[string]any{"v": int32(1), "next": map[string]any{"Node": map[string]any{"v": int32(2), "next": nil}}},
		`{"v":1,"next":{"v":2,"next":null}}`},
	{"map of arrays of nulls", `{"type":"map","values":{"type":"array","items":"null"}}`,
		map[string]any{"a": []any{nil, nil}}, `{"a":[null,null]}`},
}

func TestAvroMapping(t *testing.T) {
	for _, tc := range avroCases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := avro.ParseWithCache(tc.schema, "", &avro.SchemaCache{})
			if err != nil {
				t.Fatalf("parsing: %v", err)
			}
			payload, err := avro.Marshal(s, tc.value)
			if err != nil {
				t.Fatalf("encoding: %v", err)
			}
			d, err := compileAvro(tc.schema, nil)
			if err != nil {
				t.Fatalf("compiling: %v", err)
			}
			prefix := []byte("kept,")
			got, err := d.appendJSON(prefix, payload)
			if err != nil {
				t.Fatalf("decoding %x: %v", payload, err)
			}
			if !strings.HasPrefix(string(got), "kept,") {
				t.Fatalf("the decoder overwrote what was in the buffer: %q", got)
			}
			got = got[len(prefix):]
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// Named types from another subject: the referenced schemas are parsed
// first, in a cache of the schema's own.
func TestAvroReferences(t *testing.T) {
	address := `{"type":"record","name":"Address","namespace":"shop","fields":[{"name":"city","type":"string"}]}`
	order := `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"to","type":"shop.Address"},{"name":"from","type":["null","Address"]}]}`
	cache := &avro.SchemaCache{}
	avro.MustParse(`"int"`) // the default cache is not the one used
	if _, err := avro.ParseWithCache(address, "", cache); err != nil {
		t.Fatal(err)
	}
	s, err := avro.ParseWithCache(order, "", cache)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := avro.Marshal(s, map[string]any{"to": map[string]any{"city": "Oslo"}, "from": nil})
	if err != nil {
		t.Fatal(err)
	}
	d, err := compileAvro(order, []string{address})
	if err != nil {
		t.Fatalf("compiling with the reference: %v", err)
	}
	got, err := d.appendJSON(nil, payload)
	if err != nil || string(got) != `{"to":{"city":"Oslo"},"from":null}` {
		t.Errorf("got %s, %v", got, err)
	}
	if _, err := compileAvro(order, nil); err == nil {
		t.Error("compiled a schema whose referenced type is missing")
	}
}

func TestAvroRefusesWhatItsSchemaDoesNotRead(t *testing.T) {
	list := `{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}`
	deep := make([]byte, 0, 2*maxAvroDepth+10)
	for range maxAvroDepth + 5 {
		deep = append(deep, 2) // branch 1: another Node
	}
	deep = append(deep, 0)
	tests := []struct {
		name, schema string
		payload      []byte
		says         string
	}{
		{"truncated", record(`{"name":"s","type":"string"}`), []byte{10, 'a'}, "length of 5"},
		{"nothing", record(`{"name":"i","type":"int"}`), nil, "ends before"},
		{"bytes left over", `"int"`, []byte{2, 2}, "left after the value"},
		{"union branch out of range", record(`{"name":"u","type":["null","int"]}`), []byte{4}, "union branch 2 of 2"},
		{"negative union branch", record(`{"name":"u","type":["null","int"]}`), []byte{1}, "union branch -1"},
		{"enum index out of range", `{"type":"enum","name":"E","symbols":["A"]}`, []byte{2}, "enum index 1 of 1"},
		{"boolean that is neither", `"boolean"`, []byte{7}, "boolean byte 0x07"},
		{"int beyond 32 bits", `"int"`, []byte{0x80, 0x80, 0x80, 0x80, 0x20}, "out of 32-bit range"},
		{"varint beyond 64 bits", `"long"`, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "longer than 64 bits"},
		{"array claiming more items than bytes", `{"type":"array","items":"int"}`, []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}, "a block of"},
		{"array of nulls claiming billions", `{"type":"array","items":"null"}`, []byte{0xfe, 0xff, 0xff, 0xff, 0x0f, 0}, "a block of"},
		{"fixed cut short", `{"type":"fixed","name":"F","size":16}`, []byte{1, 2}, "ends before"},
		{"nested past the limit", list, deep, "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := compileAvro(tc.schema, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := d.appendJSON([]byte("x"), tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one saying %q", err, tc.says)
			}
			if string(out) != "x" {
				t.Errorf("a failed decode left %q in the buffer", out)
			}
		})
	}
}

// The mapping's output is limited by what the payload can stand for: an
// array of empty records that claims millions of items in a few bytes is
// refused before it writes megabytes per byte.
func TestAvroBoundsWhatAPayloadWrites(t *testing.T) {
	d, err := compileAvro(`{"type":"array","items":{"type":"array","items":"null"}}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 8 outer items of 1<<23 nulls each: a dozen bytes, 40 MB of JSON.
	payload := []byte{16}
	for range 8 {
		payload = append(payload, 0x80, 0x80, 0x80, 0x08, 0)
	}
	payload = append(payload, 0)
	_, err = d.appendJSON(nil, payload)
	if err == nil || !strings.Contains(err.Error(), "far more JSON") {
		t.Fatalf("error %v, want the output bound", err)
	}
}

func FuzzAvro(f *testing.F) {
	schemaText := avroCases[7].schema // every kind of node
	d, err := compileAvro(schemaText, nil)
	if err != nil {
		f.Fatal(err)
	}
	s := avro.MustParse(schemaText)
	seed, err := avro.Marshal(s, avroCases[7].value)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, err := d.appendJSON(nil, payload)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %x", out, payload)
		}
		var u *UndecodableError
		_ = errors.As(err, &u)
	})
}
