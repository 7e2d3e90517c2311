package schema_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kafka-connector/kafka-connector/schema"
	"github.com/kafka-connector/kafka-connector/schema/schematest"
)

func newRegistry(t *testing.T, o schema.Options) *schema.Registry {
	t.Helper()
	r, err := schema.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sameJSON reports whether a and b are the same JSON value, whatever their
// spacing and the order of their members.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("not JSON: %s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("not JSON: %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

const (
	orderV1 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"amount","type":"int"}]}`
	orderV2 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"amount","type":"int"},` +
		`{"name":"coupon","type":["null","string"],"default":null},{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"},"default":0}]}`
	address     = `{"type":"record","name":"Address","namespace":"shop","fields":[{"name":"city","type":"string"}]}`
	parcel      = `{"type":"record","name":"Parcel","namespace":"shop","fields":[{"name":"to","type":"shop.Address"}]}`
	jsonSchema  = `{"type":"object","properties":{"amount":{"type":"number"}}}`
	notAProto   = `syntax = "proto3"; message {`
	unknownType = 999999
)

// Every kind of schema, written by independent encoders, decodes to its
// mapping, and says which schema it was.
func TestDecodeEveryKindOfSchema(t *testing.T) {
	reg := schematest.Start(t)
	v1 := reg.Register("orders-value", sr.Schema{Schema: orderV1})
	v2 := reg.Register("orders-value", sr.Schema{Schema: orderV2})
	if v1 == v2 || reg.Version("orders-value", v2) != 2 {
		t.Fatalf("two versions of one subject: ids %d and %d", v1, v2)
	}
	reg.Register("address", sr.Schema{Schema: address})
	parcelID := reg.Register("parcels-value", sr.Schema{Schema: parcel, References: []sr.SchemaReference{{Name: "shop.Address", Subject: "address", Version: 1}}})
	reg.Register("common.proto", sr.Schema{Schema: schematest.CommonProto, Type: sr.TypeProtobuf})
	shopID := reg.Register("shop-value", sr.Schema{Schema: schematest.ShopProto, Type: sr.TypeProtobuf,
		References: []sr.SchemaReference{{Name: "common.proto", Subject: "common.proto", Version: 1}}})
	jsonID := reg.Register("payments-value", sr.Schema{Schema: jsonSchema, Type: sr.TypeJSON})

	cache := &avro.SchemaCache{}
	if _, err := avro.ParseWithCache(address, "", cache); err != nil {
		t.Fatal(err)
	}
	parcelSchema, err := avro.ParseWithCache(parcel, "", cache)
	if err != nil {
		t.Fatal(err)
	}
	_, shop := schematest.Shop(t)
	line := func(sku string, qty int32, units int64) *dynamicpb.Message {
		common := shop.Imports().Get(0).FileDescriptor
		price := schematest.Set(schematest.Message(t, common, "Money"), map[string]any{"currency": "EUR", "units": units})
		return schematest.Set(schematest.Message(t, shop, "Order.Line"), map[string]any{"sku": sku, "qty": qty, "price": price})
	}
	order := schematest.Set(schematest.Message(t, shop, "Order"), map[string]any{
		"id": "o-1", "lines": []*dynamicpb.Message{line("apple", 3, 2), line("pear", 1, 5)},
		"status": protoreflect.EnumNumber(1), "at": timestamppb.New(time.Date(2024, 5, 1, 13, 45, 30, 0, time.UTC)),
		"note": []byte{0xff, 0}, "big": uint64(1 << 60),
	})
	tests := []struct {
		name  string
		value []byte
		id    int
		want  string
	}{
		{"avro, first version", schematest.Avro(t, v1, orderV1, map[string]any{"id": "a", "amount": int32(5)}), v1,
			`{"id":"a","amount":5}`},
		{"avro, second version", schematest.Avro(t, v2, orderV2, map[string]any{"id": "b", "amount": int32(7), "coupon": "SPRING",
			"at": time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)}), v2,
			`{"id":"b","amount":7,"coupon":"SPRING","at":"2024-05-01T00:00:00.000Z"}`},
		{"avro with a referenced type", schematest.AvroWith(t, parcelID, parcelSchema, map[string]any{"to": map[string]any{"city": "Oslo"}}), parcelID,
			`{"to":{"city":"Oslo"}}`},
		{"protobuf, first message (index 0, one zero byte)", schematest.Protobuf(t, shopID, []int{0},
			schematest.Set(schematest.Message(t, shop, "Ping"), map[string]any{"id": "p"})), shopID,
			`{"id":"p"}`},
		{"protobuf, second message, with an import and a well-known type", schematest.Protobuf(t, shopID, []int{1}, order), shopID,
			`{"id":"o-1","lines":[{"sku":"apple","qty":3,"price":{"currency":"EUR","units":"2"}},{"sku":"pear","qty":1,"price":{"currency":"EUR","units":"5"}}],` +
				`"status":"PAID","at":"2024-05-01T13:45:30Z","note":"/wA=","big":"1152921504606846976","amount":0}`},
		{"protobuf, nested message (indexes 1, 0)", schematest.Protobuf(t, shopID, []int{1, 0}, line("fig", 0, 0)), shopID,
			`{"sku":"fig","qty":0,"price":{"currency":"EUR","units":"0"}}`},
		{"json schema", schematest.JSON(t, jsonID, `{"amount": 12.5, "who": "ü"}`), jsonID, `{"amount":12.5,"who":"ü"}`},
	}
	r := newRegistry(t, schema.Options{URLs: []string{reg.URL()}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, s, err := r.Decode(context.Background(), []byte("["), tc.value)
			if err != nil {
				t.Fatalf("decoding %x: %v", tc.value, err)
			}
			if s.ID != tc.id || s.IDText != fmt.Sprint(tc.id) {
				t.Errorf("schema %d (%q), want %d", s.ID, s.IDText, tc.id)
			}
			if out[0] != '[' {
				t.Fatalf("the buffer's start was overwritten: %q", out)
			}
			if !sameJSON(t, string(out[1:]), tc.want) {
				t.Errorf("got  %s\nwant %s", out[1:], tc.want)
			}
		})
	}
}

func TestUndecodableValues(t *testing.T) {
	reg := schematest.Start(t)
	v1 := reg.Register("orders-value", sr.Schema{Schema: orderV1})
	bad := reg.Register("broken-value", sr.Schema{Schema: notAProto, Type: sr.TypeProtobuf})
	shop := reg.Register("shop-value", sr.Schema{Schema: schematest.ShopProto, Type: sr.TypeProtobuf}) // without its reference
	jsonID := reg.Register("payments-value", sr.Schema{Schema: jsonSchema, Type: sr.TypeJSON})
	header := func(id int, rest ...byte) []byte {
		b, _ := (&sr.ConfluentHeader{}).AppendEncode(nil, id, nil)
		return append(b, rest...)
	}
	tests := []struct {
		name  string
		value []byte
		says  string
	}{
		{"empty", []byte{}, "no magic byte"},
		{"plain text", []byte(`{"amount":5}`), "first byte 0x7b"},
		{"header cut short", []byte{0, 0, 1}, "shorter than"},
		{"unknown schema id", header(unknownType, 2, 'a', 2), "does not know it"},
		{"payload cut short", header(v1, 10, 'a'), "does not read"},
		{"schema that does not compile", header(bad, 0), "does not compile"},
		{"import without its reference", header(shop, 0), "not among the schema's references"},
		{"json schema value that is not json", header(jsonID, '{', '"'), "not JSON"},
	}
	r := newRegistry(t, schema.Options{URLs: []string{reg.URL()}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := r.Decode(context.Background(), []byte("x"), tc.value)
			var u *schema.UndecodableError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want an UndecodableError saying %q", err, tc.says)
			}
			if string(out) != "x" {
				t.Errorf("a failed decode changed the buffer: %q", out)
			}
		})
	}
	// A schema that does not compile is not fetched again; an unknown ID
	// is, as a registry of several nodes may not know a new schema yet.
	for range 3 {
		r.Decode(context.Background(), nil, header(bad, 0))
		r.Decode(context.Background(), nil, header(unknownType))
	}
	if n := reg.Requests(fmt.Sprintf("/schemas/ids/%d", bad)); n != 1 {
		t.Errorf("a schema that does not compile was fetched %d times", n)
	}
	if n := reg.Requests(fmt.Sprintf("/schemas/ids/%d", unknownType)); n != 4 {
		t.Errorf("an unknown schema was asked for %d times in 4 decodes", n)
	}
}

// A schema is fetched once, however many goroutines need it at once.
func TestSchemasAreFetchedOnce(t *testing.T) {
	reg := schematest.Start(t)
	id := reg.Register("orders-value", sr.Schema{Schema: orderV1})
	value := schematest.Avro(t, id, orderV1, map[string]any{"id": "a", "amount": int32(5)})
	r := newRegistry(t, schema.Options{URLs: []string{reg.URL()}})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 50 {
				if _, _, err := r.Decode(context.Background(), nil, value); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := reg.Requests(fmt.Sprintf("/schemas/ids/%d", id)); n != 1 {
		t.Errorf("schema fetched %d times", n)
	}
}

func TestTheCacheIsBounded(t *testing.T) {
	reg := schematest.Start(t)
	var values [][]byte
	for i := range 3 {
		s := fmt.Sprintf(`{"type":"record","name":"R%d","fields":[{"name":"n","type":"int"}]}`, i)
		id := reg.Register(fmt.Sprintf("s%d", i), sr.Schema{Schema: s})
		values = append(values, schematest.Avro(t, id, s, map[string]any{"n": int32(i)}))
	}
	r := newRegistry(t, schema.Options{URLs: []string{reg.URL()}, CacheSize: 2})
	for _, v := range values {
		if _, _, err := r.Decode(context.Background(), nil, v); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Cached(); n != 2 {
		t.Fatalf("%d schemas cached, want the bound, 2", n)
	}
	// The least recently used went: the first, fetched again.
	r.Decode(context.Background(), nil, values[0])
	if n := reg.Requests("/schemas/ids/1"); n != 2 {
		t.Errorf("the evicted schema was fetched %d times, want 2", n)
	}
}

// A registry that cannot answer is a passing failure, named by its URL;
// the next URL is tried, and the one that answered is asked first after.
func TestUnavailableRegistries(t *testing.T) {
	down, up := schematest.Start(t), schematest.Start(t)
	down.SetDown(true)
	id := up.Register("orders-value", sr.Schema{Schema: orderV1})
	value := schematest.Avro(t, id, orderV1, map[string]any{"id": "a", "amount": int32(5)})

	only := newRegistry(t, schema.Options{URLs: []string{down.URL()}})
	_, _, err := only.Decode(context.Background(), nil, value)
	var u *schema.UnavailableError
	if !errors.As(err, &u) || u.Registry != down.URL() || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %v, want an UnavailableError naming %s and its 503", err, down.URL())
	}

	wrongPath := newRegistry(t, schema.Options{URLs: []string{up.URL() + "/not-the-api"}})
	if _, _, err := wrongPath.Decode(context.Background(), nil, value); !errors.As(err, &u) {
		t.Fatalf("a 404 that is not the registry's own: %v, want an UnavailableError", err)
	}

	both := newRegistry(t, schema.Options{URLs: []string{down.URL(), up.URL()}})
	if _, _, err := both.Decode(context.Background(), nil, value); err != nil {
		t.Fatalf("with a second registry up: %v", err)
	}
	if both.URL() != up.URL() {
		t.Errorf("the registry that answered is %s, want %s", both.URL(), up.URL())
	}
	before := len(down.Authorizations())
	other := up.Register("other-value", sr.Schema{Schema: address})
	if _, _, err := both.Decode(context.Background(), nil, schematest.Avro(t, other, address, map[string]any{"city": "x"})); err != nil {
		t.Fatal(err)
	}
	if n := len(down.Authorizations()) - before; n != 0 {
		t.Errorf("the registry that was down was asked %d times after another answered", n)
	}
}

func TestCredentials(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("reader:s3cret-pw"))
	tests := []struct {
		name    string
		auth    string
		options schema.Options
		ok      bool
	}{
		{"basic", basic, schema.Options{Username: "reader", Password: "s3cret-pw"}, true},
		{"bearer", "Bearer tok-123", schema.Options{Token: "tok-123"}, true},
		{"wrong password", basic, schema.Options{Username: "reader", Password: "wrong-pw"}, false},
		{"none", "Bearer tok-123", schema.Options{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := schematest.Start(t, schematest.WithAuth(tc.auth))
			id := reg.Register("orders-value", sr.Schema{Schema: orderV1})
			value := schematest.Avro(t, id, orderV1, map[string]any{"id": "a", "amount": int32(5)})
			tc.options.URLs = []string{reg.URL()}
			_, _, err := newRegistry(t, tc.options).Decode(context.Background(), nil, value)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var u *schema.UnavailableError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), "credentials") {
				t.Fatalf("error %v, want an UnavailableError about the credentials", err)
			}
			for _, secret := range []string{"s3cret", "wrong-pw", "tok-123", basic[6:]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
	if _, err := schema.New(schema.Options{URLs: []string{"http://user:pw@registry:8081"}}); err == nil || strings.Contains(err.Error(), ":pw@") {
		t.Errorf("a URL with credentials: %v, want refused without showing them", err)
	}
	if _, err := schema.New(schema.Options{URLs: []string{"http://r"}, Username: "u", Token: "t"}); err == nil {
		t.Error("both a user and a token accepted")
	}
}

func TestPrivateCA(t *testing.T) {
	reg := schematest.Start(t, schematest.WithTLS())
	id := reg.Register("orders-value", sr.Schema{Schema: orderV1})
	value := schematest.Avro(t, id, orderV1, map[string]any{"id": "a", "amount": int32(5)})
	if _, _, err := newRegistry(t, schema.Options{URLs: []string{reg.URL()}}).Decode(context.Background(), nil, value); err == nil {
		t.Fatal("trusted a certificate of an unknown CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(reg.Server().Certificate())
	r := newRegistry(t, schema.Options{URLs: []string{reg.URL()}, TLS: &tls.Config{RootCAs: pool}})
	if _, _, err := r.Decode(context.Background(), nil, value); err != nil {
		t.Fatalf("with the registry's CA: %v", err)
	}
}
