package connector_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/schema/schematest"
	"github.com/kafka-connector/kafka-connector/types"
)

const (
	orderV1 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"amount","type":"int"}]}`
	// The second version adds a union and logical types, with defaults,
	// as a compatible evolution does.
	orderV2 = `{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"amount","type":"int"},
		{"name":"coupon","type":["null","string"],"default":null},
		{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"},"default":0},
		{"name":"total","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2},"default":"\u0000"}]}`
)

func annotated(name, topics string, annotations ...string) types.Function {
	f := fn(name, topics)
	for i := 0; i+1 < len(annotations); i += 2 {
		f.Annotations[annotations[i]] = annotations[i+1]
	}
	return f
}

// sameJSON reports whether a and b hold the same JSON value, whatever
// their spacing and member order.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// A function reads Avro, Protobuf and JSON Schema values as JSON text with
// the ID of the schema beside it, keys in a format of their own, and a
// filter reads the decoded record.
func TestSchemaRegistryValuesAreDecoded(t *testing.T) {
	client, gw, cfg := setup(t, "orders", "shop", "payments")
	reg := schematest.Start(t)
	v1 := reg.Register("orders-value", sr.Schema{Schema: orderV1})
	v2 := reg.Register("orders-value", sr.Schema{Schema: orderV2})
	keyID := reg.Register("shop-key", sr.Schema{Schema: `"string"`})
	reg.Register("common.proto", sr.Schema{Schema: schematest.CommonProto, Type: sr.TypeProtobuf})
	shopID := reg.Register("shop-value", sr.Schema{Schema: schematest.ShopProto, Type: sr.TypeProtobuf,
		References: []sr.SchemaReference{{Name: "common.proto", Subject: "common.proto", Version: 1}}})
	payID := reg.Register("payments-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	cfg.SchemaRegistryURL = []string{reg.URL()}
	cfg.ValueFormat = "schema-registry"

	at := time.Date(2024, 5, 1, 13, 45, 30, 250e6, time.UTC)
	orders := [][]byte{
		schematest.Avro(t, v1, orderV1, map[string]any{"id": "a", "amount": int32(5)}),
		schematest.Avro(t, v2, orderV2, map[string]any{"id": "b", "amount": int32(150), "coupon": "SPRING", "at": at, "total": big.NewRat(-1250, 100)}),
		schematest.Avro(t, v1, orderV1, map[string]any{"id": "c", "amount": int32(101)}),
		schematest.Avro(t, v2, orderV2, map[string]any{"id": "d", "amount": int32(7), "coupon": nil, "at": at, "total": big.NewRat(3, 1)}),
	}
	wantOrders := []string{
		`{"id":"a","amount":5}`,
		`{"id":"b","amount":150,"coupon":"SPRING","at":"2024-05-01T13:45:30.250Z","total":"-12.50"}`,
		`{"id":"c","amount":101}`,
		`{"id":"d","amount":7,"coupon":null,"at":"2024-05-01T13:45:30.250Z","total":"3.00"}`,
	}
	wantIDs := []int{v1, v2, v1, v2}
	var recs []*kgo.Record
	for i, v := range orders {
		recs = append(recs, testkit.Record("orders", 0, []byte(fmt.Sprintf("k%d", i)), v))
	}

	_, shop := schematest.Shop(t)
	common := shop.Imports().Get(0).FileDescriptor
	line := schematest.Set(schematest.Message(t, shop, "Order.Line"), map[string]any{"sku": "fig", "qty": int32(2),
		"price": schematest.Set(schematest.Message(t, common, "Money"), map[string]any{"currency": "EUR", "units": int64(3)})})
	order := schematest.Set(schematest.Message(t, shop, "Order"), map[string]any{"id": "o-1", "lines": []*dynamicpb.Message{line},
		"status": protoreflect.EnumNumber(1), "at": timestamppb.New(at), "big": uint64(1 << 60)})
	ping := schematest.Set(schematest.Message(t, shop, "Ping"), map[string]any{"id": "p"})
	shopKey := schematest.Avro(t, keyID, `"string"`, "order-1")
	recs = append(recs,
		testkit.Record("shop", 1, shopKey, schematest.Protobuf(t, shopID, []int{1}, order)),
		testkit.Record("shop", 1, shopKey, schematest.Protobuf(t, shopID, []int{1, 0}, line)),
		testkit.Record("shop", 1, nil, schematest.Protobuf(t, shopID, []int{0}, ping)),
		testkit.Record("payments", 2, []byte(`{"user": 1}`), schematest.JSON(t, payID, `{"amount": 12.5}`)),
	)
	client.Produce(recs...)

	gw.SetFunctions(
		fn("orders-fn", "orders"),
		annotated("big-orders", "orders", types.AnnotationFilter, `json.amount > 100`),
		annotated("raw-orders", "orders", types.AnnotationValueFormat, "raw"),
		annotated("shop-fn", "shop", types.AnnotationKeyFormat, "schema-registry"),
		annotated("payments-fn", "payments", types.AnnotationKeyFormat, "json"),
		annotated("misspelt", "orders", types.AnnotationValueFormat, "avro"),
	)
	r := testkit.Start(t, cfg)
	for group, want := range map[string][2]int64{"orders-fn": {0, 4}, "big-orders": {0, 4}, "raw-orders": {0, 4}, "shop-fn": {1, 3}, "payments-fn": {2, 1}} {
		topic := map[string]string{"shop-fn": "shop", "payments-fn": "payments"}[group]
		if topic == "" {
			topic = "orders"
		}
		testkit.Eventually(t, 30*time.Second, func() bool {
			return client.Committed("kafka-connector-" + group)[topic][int32(want[0])] == want[1]
		}, "%s commits %s/%d to %d", group, topic, want[0], want[1])
	}

	got := successes(t, gw.Calls("orders-fn")).records["orders"][0]
	if len(got) != len(orders) {
		t.Fatalf("orders-fn got %d records, want %d", len(got), len(orders))
	}
	for i, rec := range got {
		if !sameJSON(t, rec.MsgBody, wantOrders[i]) || rec.MsgBodySchemaID != strconv.Itoa(wantIDs[i]) || rec.MsgBodyEncoding != "" ||
			rec.MsgKey != fmt.Sprintf("k%d", i) || rec.MsgKeySchemaID != "" {
			t.Errorf("orders-fn record %d: %+v\nwant body %s of schema %d, key k%d", i, rec, wantOrders[i], wantIDs[i], i)
		}
	}
	if offsets := successes(t, gw.Calls("big-orders")).offsets["orders"][0]; !slices.Equal(offsets, []int64{1, 2}) {
		t.Errorf("the filter json.amount > 100 let through offsets %v, want 1 and 2", offsets)
	}
	for i, rec := range successes(t, gw.Calls("raw-orders")).records["orders"][0] {
		if body, err := rec.Body(); err != nil || string(body) != string(orders[i]) || rec.MsgBodySchemaID != "" {
			t.Errorf("raw-orders record %d: %+v, want the bytes as written", i, rec)
		}
	}
	shopGot := successes(t, gw.Calls("shop-fn")).records["shop"][1]
	wantShop := []struct{ key, keySchema, body string }{
		{`"order-1"`, strconv.Itoa(keyID), `{"id":"o-1","lines":[{"sku":"fig","qty":2,"price":{"currency":"EUR","units":"3"}}],"status":"PAID",` +
			`"at":"2024-05-01T13:45:30.250Z","note":"","big":"1152921504606846976","amount":0}`},
		{`"order-1"`, strconv.Itoa(keyID), `{"sku":"fig","qty":2,"price":{"currency":"EUR","units":"3"}}`},
		{"None", "", `{"id":"p"}`},
	}
	if len(shopGot) != len(wantShop) {
		t.Fatalf("shop-fn got %d records, want %d", len(shopGot), len(wantShop))
	}
	for i, rec := range shopGot {
		w := wantShop[i]
		if rec.MsgKey != w.key || rec.MsgKeySchemaID != w.keySchema || !sameJSON(t, rec.MsgBody, w.body) || rec.MsgBodySchemaID != strconv.Itoa(shopID) {
			t.Errorf("shop-fn record %d: %+v\nwant key %s (schema %s), body %s of schema %d", i, rec, w.key, w.keySchema, w.body, shopID)
		}
	}
	pay := successes(t, gw.Calls("payments-fn")).records["payments"][2]
	if len(pay) != 1 || pay[0].MsgKey != `{"user": 1}` || pay[0].MsgKeySchemaID != "" || pay[0].MsgBody != `{"amount": 12.5}` || pay[0].MsgBodySchemaID != strconv.Itoa(payID) {
		t.Errorf("payments-fn got %+v", pay)
	}

	if n := len(gw.Calls("misspelt")); n != 0 {
		t.Errorf("misspelt, whose kafka-value-format is not a format, was invoked %d times", n)
	}
	lines := logLines(t, r.Logs(), "function has no trigger", "misspelt")
	if len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["problem"]), `kafka-value-format="avro"`) {
		t.Errorf("misspelt: logged %v, want one line naming kafka-value-format", lines)
	}
	// Each schema was fetched once, however many messages and functions
	// read it.
	for _, id := range []int{v1, v2, shopID, keyID, payID} {
		if n := reg.Requests(fmt.Sprintf("/schemas/ids/%d", id)); n != 1 {
			t.Errorf("schema %d fetched %d times", id, n)
		}
	}
}

// A function asks for the schema-registry format from a connector that has
// no registry: its trigger alone is off.
func TestRegistryFormatWithoutARegistry(t *testing.T) {
	client, gw, cfg := setup(t, "plain")
	client.Produce(testkit.Record("plain", 0, nil, []byte("hello")))
	gw.SetFunctions(annotated("decoding", "plain", types.AnnotationValueFormat, "schema-registry"), fn("plain-fn", "plain"))
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("plain-fn")).count("plain") == 1 }, "plain-fn is fed")
	lines := logLines(t, r.Logs(), "function has no trigger", "decoding")
	if len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["problem"]), "schema_registry_url is not set") {
		t.Errorf("logged %v, want the problem: no schema_registry_url", lines)
	}
	if n := len(gw.Calls("decoding")); n != 0 {
		t.Errorf("invoked %d times", n)
	}
}

// A message that will never decode does not block its partition and does
// not vanish: it goes to the dead-letter topic with the reason, or without
// one is delivered undecoded with the reason beside it, whatever the
// filter says. Both are counted.
func TestUndecodableMessages(t *testing.T) {
	for _, dlq := range []bool{false, true} {
		t.Run(fmt.Sprintf("dead-letter topic %v", dlq), func(t *testing.T) {
			client, gw, cfg := setup(t, "mixed")
			reg := schematest.Start(t)
			v1 := reg.Register("mixed-value", sr.Schema{Schema: orderV1})
			cfg.SchemaRegistryURL = []string{reg.URL()}
			cfg.ValueFormat = "schema-registry"
			if dlq {
				client.CreateTopic("mixed.dlq", 1)
				cfg.DeadLetterTopic = "mixed.dlq"
			}
			good := schematest.Avro(t, v1, orderV1, map[string]any{"id": "a", "amount": int32(5)})
			unknown, _ := (&sr.ConfluentHeader{}).AppendEncode(nil, 4242, nil)
			corrupt := append([]byte(nil), good[:len(good)-1]...) // the amount cut off
			poison := map[int64]struct {
				value []byte
				says  string
			}{
				1: {[]byte("plain text"), "no magic byte"},
				2: {append(unknown, 2, 'x'), "schema 4242: the registry does not know it"},
				3: {corrupt, fmt.Sprintf("schema %d: a AVRO payload its schema does not read", v1)},
			}
			client.Produce(
				testkit.Record("mixed", 0, []byte("k0"), good),
				testkit.Record("mixed", 0, []byte("k1"), poison[1].value),
				testkit.Record("mixed", 0, []byte("k2"), poison[2].value),
				testkit.Record("mixed", 0, []byte("k3"), poison[3].value),
				testkit.Record("mixed", 0, []byte("k4"), good),
			)
			// The filter rejects every good message: it cannot read the
			// undecodable ones, which are delivered all the same.
			gw.SetFunctions(annotated("strict", "mixed", types.AnnotationFilter, `json.amount > 100`))
			r := testkit.Start(t, cfg)
			metrics := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
			defer metrics.Close()
			testkit.Eventually(t, 30*time.Second, func() bool { return client.Committed("kafka-connector-strict")["mixed"][0] == 5 },
				"committed past every message")
			counted := `kafka_connector_undecodable_messages_total{function="strict",topic="mixed"} 3`
			testkit.Eventually(t, 10*time.Second, func() bool { return strings.Contains(scrapeMetrics(t, metrics.URL), counted) },
				"%s in:\n%s", counted, grep(scrapeMetrics(t, metrics.URL), "undecodable"))

			got := successes(t, gw.Calls("strict")).records["mixed"][0]
			if dlq {
				if len(got) != 0 {
					t.Errorf("delivered %+v, want nothing: the good messages are filtered out, the others dead-lettered", got)
				}
				letters := testkit.ReadAll(t, client.Cluster, "mixed.dlq", 3, 30*time.Second)
				for _, l := range letters {
					offset, _ := strconv.ParseInt(header(l, "x-original-offset"), 10, 64)
					p, ok := poison[offset]
					if !ok || string(l.Value) != string(p.value) || !strings.HasPrefix(header(l, "x-last-failure"), "value not decoded: ") ||
						!strings.Contains(header(l, "x-last-failure"), p.says) || header(l, "x-attempts") != "0" || header(l, "x-function") != "strict" {
						t.Errorf("dead letter of offset %d: %q with headers %v; want its bytes and a failure saying %q", offset, l.Value, l.Headers, p.says)
					}
				}
				return
			}
			if len(got) != 3 {
				t.Fatalf("delivered %d records, want the 3 undecodable ones: %+v", len(got), got)
			}
			for _, rec := range got {
				p := poison[rec.Offset]
				body, err := rec.Body()
				if err != nil || string(body) != string(p.value) || rec.MsgBodyEncoding != types.Base64 ||
					!strings.Contains(rec.MsgBodyDecodeError, p.says) || rec.MsgBodySchemaID != "" {
					t.Errorf("offset %d delivered as %+v; want its bytes in base64 and a msgBodyDecodeError saying %q", rec.Offset, rec, p.says)
				}
			}
			if lines := logLines(t, r.Logs(), "could not be decoded", "strict"); len(lines) != 1 {
				t.Errorf("%d log lines about undecodable messages, want the first only: %v", len(lines), lines)
			}
		})
	}
}

// A registry that cannot be reached holds the partition at the first
// message it is needed for: the batches before it are delivered and
// committed, nothing after it is delivered, and once the registry answers
// everything is delivered in order, each message once. The wait is logged
// with the registry's URL, never its credentials, and shown in the metrics;
// a claim that ends meanwhile ends at once, uncommitted.
func TestRegistryOutageHoldsThePartition(t *testing.T) {
	const user, password = "reader", "pw-Sup3r-secret"
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	client, gw, cfg := setup(t, "orders")
	reg := schematest.Start(t, schematest.WithAuth(auth))
	a := reg.Register("orders-value", sr.Schema{Schema: orderV1})
	dir := t.TempDir()
	cfg.SchemaRegistryURL = []string{reg.URL()}
	cfg.SchemaRegistryUsernameFile = filepath.Join(dir, "user")
	cfg.SchemaRegistryPasswordFile = filepath.Join(dir, "password")
	os.WriteFile(cfg.SchemaRegistryUsernameFile, []byte(user+"\n"), 0o600)
	os.WriteFile(cfg.SchemaRegistryPasswordFile, []byte(password+"\n"), 0o600)
	cfg.ValueFormat = "schema-registry"
	cfg.MaxMessages = 2
	if err := cfg.LoadSecrets(); err != nil {
		t.Fatal(err)
	}
	value := func(id int, schema, name string) []byte {
		return schematest.Avro(t, id, schema, map[string]any{"id": name, "amount": int32(1)})
	}
	client.Produce(testkit.Record("orders", 0, nil, value(a, orderV1, "0")), testkit.Record("orders", 0, nil, value(a, orderV1, "1")))
	gw.SetFunctions(fn("orders-fn", "orders"))
	r := testkit.Start(t, cfg)
	metrics := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer metrics.Close()
	committed := func() int64 { return client.Committed("kafka-connector-orders-fn")["orders"][0] }
	testkit.Eventually(t, 30*time.Second, func() bool { return committed() == 2 }, "the first two delivered")

	// Schema b is new to the connector; a, cached, is not asked for again.
	reg.SetDown(true)
	b := reg.Register("orders-value", sr.Schema{Schema: orderV2})
	vb := schematest.Avro(t, b, orderV2, map[string]any{"id": "3", "amount": int32(1), "coupon": nil, "at": time.UnixMilli(0), "total": big.NewRat(0, 1)})
	client.Produce(
		testkit.Record("orders", 0, nil, value(a, orderV1, "2")),
		testkit.Record("orders", 0, nil, vb),
		testkit.Record("orders", 0, nil, value(a, orderV1, "4")),
		testkit.Record("orders", 0, nil, value(a, orderV1, "5")),
	)
	waiting := `kafka_connector_schema_registry_waiting_partitions{function="orders-fn"} 1`
	errorsCounted := regexp.MustCompile(`kafka_connector_schema_registry_errors_total\{function="orders-fn"\} ([0-9]+)`)
	testkit.Eventually(t, 30*time.Second, func() bool {
		m := scrapeMetrics(t, metrics.URL)
		n := errorsCounted.FindStringSubmatch(m)
		return strings.Contains(m, waiting) && n != nil && n[1] != "1" && n[1] != "2" && committed() == 3
	}, "the partition waits, shown in the metrics, after delivering what comes before the message it waits at:\n%s",
		grep(scrapeMetrics(t, metrics.URL), "schema_registry"))
	lines := logLines(t, r.Logs(), "schema registry cannot be reached", "orders-fn")
	if len(lines) < 3 || lines[0]["registry"] != reg.URL() || lines[0]["offset"] != float64(3) || !strings.Contains(fmt.Sprint(lines[0]["error"]), "503") {
		t.Fatalf("logged %v, want lines naming the registry, the offset held and the failure", lines)
	}
	if d := successes(t, gw.Calls("orders-fn")).offsets["orders"][0]; !slices.Equal(d, []int64{0, 1, 2}) {
		t.Fatalf("delivered %v while the registry was down, want 0 to 2 and nothing after the message held", d)
	}

	reg.SetDown(false)
	testkit.Eventually(t, 30*time.Second, func() bool { return committed() == 6 }, "everything delivered once the registry answers")
	testkit.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(scrapeMetrics(t, metrics.URL), `kafka_connector_schema_registry_waiting_partitions{function="orders-fn"} 0`)
	}, "the wait is over in the metrics")
	d := successes(t, gw.Calls("orders-fn"))
	if !slices.Equal(d.offsets["orders"][0], []int64{0, 1, 2, 3, 4, 5}) {
		t.Errorf("delivered %v, want each of 0 to 5 once, in order", d.offsets["orders"][0])
	}
	if rec := d.records["orders"][0][3]; rec.MsgBodySchemaID != strconv.Itoa(b) {
		t.Errorf("the message held was delivered as %+v, want it decoded with schema %d", rec, b)
	}

	// A claim that ends while its partition waits ends at once.
	reg.SetDown(true)
	c := reg.Register("other-value", sr.Schema{Schema: `{"type":"record","name":"C","fields":[{"name":"n","type":"int"}]}`})
	client.Produce(testkit.Record("orders", 0, nil, schematest.Avro(t, c, `{"type":"record","name":"C","fields":[{"name":"n","type":"int"}]}`, map[string]any{"n": int32(1)})))
	testkit.Eventually(t, 30*time.Second, func() bool { return strings.Contains(scrapeMetrics(t, metrics.URL), waiting) }, "waiting again")
	stopped := make(chan struct{})
	go func() { r.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.ShutdownTimeout):
		t.Fatal("the connector did not stop while a partition waited for the registry")
	}
	if got := committed(); got != 6 {
		t.Errorf("committed %d after stopping, want 6: the message held is not delivered", got)
	}
	for _, secret := range []string{password, auth[len("Basic "):]} {
		if strings.Contains(r.Logs(), secret) {
			t.Errorf("the logs show the registry's credentials")
		}
	}
	for _, h := range reg.Authorizations() {
		if h != auth {
			t.Errorf("a request to the registry with Authorization %q", h)
		}
	}
}
