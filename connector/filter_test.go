package connector_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

func filtered(name, topics, expr string) types.Function {
	f := fn(name, topics)
	f.Annotations[types.AnnotationFilter] = expr
	return f
}

// logLines returns the connector's log lines whose message contains msg
// and whose function is function.
func logLines(t *testing.T, logs, msg, function string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m, _ := line["msg"].(string); strings.Contains(m, msg) && line["function"] == function {
			out = append(out, line)
		}
	}
	return out
}

func TestFiltersOnKeyValueJSONAndHeaders(t *testing.T) {
	client, gw, cfg := setup(t, "mixed")
	created := []kgo.RecordHeader{{Key: "event-type", Value: []byte("created")}}
	rec := func(p int32, key, value string, headers ...kgo.RecordHeader) *kgo.Record {
		r := &kgo.Record{Topic: "mixed", Partition: p, Value: []byte(value), Headers: headers}
		if key != "" {
			r.Key = []byte(key)
		}
		return r
	}
	client.Produce(
		rec(0, "eu-1", `{"type":"order","amount":150}`, created...),
		rec(0, "us-1", `{"type":"order","amount":50}`, kgo.RecordHeader{Key: "event-type", Value: []byte("updated")}),
		rec(0, "eu-2", `urgent, and not JSON`),
		rec(0, "", `{"type":"refund","amount":500}`, created...),
		rec(0, "eu-3", `{"type":"order","amount":101}`),
		rec(0, "\xff", "\xfe", created...), // bytes, not strings
		rec(1, "us-2", `{"type":"order","amount":10}`),
		rec(1, "us-3", `plain`),
		rec(2, "eu-4", `{"type":"order","amount":1000}`, created...),
	)
	end := map[int32]int64{0: 6, 1: 2, 2: 1}
	want := map[string]map[int32][]int64{
		"eu-only":    {0: {0, 2, 4}, 2: {0}},
		"big-orders": {0: {0, 4}, 2: {0}},
		"created":    {0: {0, 3, 5}, 2: {0}},
		"urgent":     {0: {2}},
		"everything": {0: {0, 1, 2, 3, 4, 5}, 1: {0, 1}, 2: {0}},
	}
	gw.SetFunctions(
		filtered("eu-only", "mixed", `key.startsWith("eu-")`),
		filtered("big-orders", "mixed", `json.type == "order" && json.amount > 100`),
		filtered("created", "mixed", `headers["event-type"] == "created"`),
		filtered("urgent", "mixed", `value.contains("urgent")`),
		fn("everything", "mixed"),
	)
	r := testkit.Start(t, cfg)
	metrics := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer metrics.Close()
	testkit.Eventually(t, 20*time.Second, r.Ready, "every trigger in its group")

	for name, offsets := range want {
		group := "kafka-connector-" + name
		testkit.Eventually(t, 30*time.Second, func() bool {
			c := client.Committed(group)["mixed"]
			return c[0] == end[0] && c[1] == end[1] && c[2] == end[2]
		}, "%s commits every partition to its end, past the messages it does not take", name)
		got := successes(t, gw.Calls(name)).offsets["mixed"]
		for p := range end {
			if !slices.Equal(got[p], offsets[p]) {
				t.Errorf("%s got offsets %v of partition %d, want %v", name, got[p], p, offsets[p])
			}
		}
		total := 0
		for _, o := range offsets {
			total += len(o)
		}
		metric := fmt.Sprintf(`kafka_connector_messages_filtered_total{function=%q,topic="mixed"} %d`, name, 9-total)
		testkit.Eventually(t, 10*time.Second, func() bool { return strings.Contains(scrapeMetrics(t, metrics.URL), metric) },
			"%s in:\n%s", metric, grep(scrapeMetrics(t, metrics.URL), "filtered"))
	}

	// A key that is bytes cannot start with a string, a value that is not
	// JSON has no json, a missing header is no such key: each such message
	// does not match, and only the first of each trigger is logged, with
	// where it happened.
	for name, at := range map[string]struct {
		filter            string
		partition, offset float64
		err               string
	}{
		"eu-only": {`key.startsWith("eu-")`, 0, 5, "no such overload"},
		"urgent":  {`value.contains("urgent")`, 0, 5, "no such overload"},
	} {
		lines := logLines(t, r.Logs(), "kafka-filter failed", name)
		if len(lines) != 1 {
			t.Fatalf("%s: %d filter failures logged, want 1: %v", name, len(lines), lines)
		}
		l := lines[0]
		if l["topic"] != "mixed" || l["partition"] != at.partition || l["offset"] != at.offset ||
			!strings.Contains(fmt.Sprint(l["error"]), at.err) || l["filter"] != at.filter {
			t.Errorf("%s: filter failure logged as %v, want mixed/%v/%v with %q", name, l, at.partition, at.offset, at.err)
		}
	}
	// Several failures on several partitions, one line.
	for _, name := range []string{"big-orders", "created"} {
		if lines := logLines(t, r.Logs(), "kafka-filter failed", name); len(lines) != 1 {
			t.Errorf("%s: %d filter failures logged, want 1: %v", name, len(lines), lines)
		}
	}
}

func TestRejectedMessagesAreCommittedWithoutAnInvocation(t *testing.T) {
	client, gw, cfg := setup(t, "sparse")
	gw.SetFunctions(filtered("picky", "sparse", `value.startsWith("yes")`))
	cfg.MaxWait = 500 * time.Millisecond // the rejected messages are read while the batch is open
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, r.Ready, "ready")

	// Nothing but rejected messages: committed without any invocation.
	var no []*kgo.Record
	for range 5 {
		no = append(no, testkit.Record("sparse", 1, nil, []byte("no")))
	}
	client.Produce(no...)
	testkit.Eventually(t, 20*time.Second, func() bool { return client.Committed("kafka-connector-picky")["sparse"][1] == 5 },
		"the rejected stretch is committed")
	if n := len(gw.Calls("picky")); n != 0 {
		t.Fatalf("%d invocations for rejected messages", n)
	}

	// Rejected messages among and after accepted ones: one batch with a gap,
	// and the commit goes past the rejected tail.
	client.Produce(
		testkit.Record("sparse", 0, nil, []byte("yes-0")),
		testkit.Record("sparse", 0, nil, []byte("no")),
		testkit.Record("sparse", 0, nil, []byte("yes-2")),
		testkit.Record("sparse", 0, nil, []byte("no")),
		testkit.Record("sparse", 0, nil, []byte("no")),
	)
	testkit.Eventually(t, 20*time.Second, func() bool { return client.Committed("kafka-connector-picky")["sparse"][0] == 5 },
		"committed past the rejected messages after the last accepted one")
	d := successes(t, gw.Calls("picky"))
	if !slices.Equal(d.offsets["sparse"][0], []int64{0, 2}) {
		t.Errorf("delivered offsets %v, want 0 and 2", d.offsets["sparse"][0])
	}
	keys := map[string]bool{}
	for _, c := range gw.Calls("picky") {
		e, _ := c.Event()
		first, last := e.Records[0].Ckafka.Offset, e.Records[len(e.Records)-1].Ckafka.Offset
		h := c.Header
		if h.Get("X-Kafka-First-Offset") != strconv.FormatInt(first, 10) || h.Get("X-Kafka-Last-Offset") != strconv.FormatInt(last, 10) {
			t.Errorf("records %d to %d sent as offsets %s to %s", first, last, h.Get("X-Kafka-First-Offset"), h.Get("X-Kafka-Last-Offset"))
		}
		key := h.Get("X-Idempotency-Key")
		if !strings.HasPrefix(key, fmt.Sprintf("picky/sparse/0/%d-%d/", first, last)) || keys[key] {
			t.Errorf("idempotency key %q for records %d to %d: want one of its own, naming the filter", key, first, last)
		}
		keys[key] = true
	}
}

func TestRejectedMessagesWaitForTheBatchBeforeThem(t *testing.T) {
	client, gw, cfg := setup(t, "held")
	gw.SetFunctions(filtered("stubborn", "held", `value.startsWith("yes")`))
	var fail atomic.Bool
	fail.Store(true)
	gw.Handle("stubborn", func(*gatewaytest.Call) (int, []byte) {
		if fail.Load() {
			return http.StatusBadGateway, nil
		}
		return http.StatusOK, nil
	})
	client.Produce(
		testkit.Record("held", 0, nil, []byte("yes-0")),
		testkit.Record("held", 0, nil, []byte("no")),
		testkit.Record("held", 0, nil, []byte("no")),
	)
	first := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, first.Ready, "in its group")
	testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("stubborn")) >= 3 }, "several failed attempts")
	first.Stop() // flushes whatever was marked
	if got := client.Committed("kafka-connector-stubborn")["held"][0]; got > 0 {
		t.Fatalf("committed %d while the batch before the rejected messages was not delivered", got)
	}

	fail.Store(false)
	testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return client.Committed("kafka-connector-stubborn")["held"][0] == 3 },
		"committed past the rejected messages once the batch before them is delivered")
}

func TestBadFilterTurnsOffOnlyItsTrigger(t *testing.T) {
	client, gw, cfg := setup(t, "shared")
	gw.SetFunctions(
		filtered("unfinished", "shared", `json.amount >`),
		filtered("counting", "shared", `key.size()`),
		filtered("fine", "shared", `value != "skip"`),
	)
	produceSpread(client, "shared", 2)
	r := testkit.Start(t, cfg)
	metrics := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer metrics.Close()
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("fine")).count("shared") == 6 },
		"the function with a good filter is fed")

	for name, want := range map[string][]string{
		"unfinished": {`kafka-filter="json.amount >"`, "Syntax error"},
		"counting":   {`kafka-filter="key.size()"`, "returns int, not a bool"},
	} {
		if n := len(gw.Calls(name)); n != 0 {
			t.Errorf("%s, whose filter does not compile, was invoked %d times", name, n)
		}
		lines := logLines(t, r.Logs(), "function has no trigger", name)
		if len(lines) != 1 {
			t.Fatalf("%s: %d error lines, want 1 (the problem is logged when it changes, not at each refresh): %v", name, len(lines), lines)
		}
		problem := fmt.Sprint(lines[0]["problem"])
		for _, w := range want {
			if !strings.Contains(problem, w) {
				t.Errorf("%s: problem %q does not say %q", name, problem, w)
			}
		}
		if lines[0]["level"] != "ERROR" {
			t.Errorf("%s: logged at %v, want ERROR", name, lines[0]["level"])
		}
		metric := fmt.Sprintf(`kafka_connector_function_config_error{function=%q} 1`, name)
		if !strings.Contains(scrapeMetrics(t, metrics.URL), metric) {
			t.Errorf("no %s in:\n%s", metric, grep(scrapeMetrics(t, metrics.URL), "config_error"))
		}
	}

	// Fixing the expression starts the trigger.
	gw.SetFunctions(
		filtered("unfinished", "shared", `json.amount > 1`),
		filtered("counting", "shared", `key.size() > 0`),
		filtered("fine", "shared", `value != "skip"`),
	)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("counting")).count("shared") == 6 },
		"the fixed function is fed")
	testkit.Eventually(t, 20*time.Second, func() bool {
		return !strings.Contains(scrapeMetrics(t, metrics.URL), `kafka_connector_function_config_error{function="counting"}`)
	}, "the config error is cleared")
}

func TestPartialFailureKeepsTheRejectedTail(t *testing.T) {
	client, gw, cfg := setup(t, "partial")
	gw.SetFunctions(filtered("half", "partial", `value.startsWith("yes")`))
	cfg.MaxWait = 500 * time.Millisecond // the rejected tail is read while the batch is open
	var reported atomic.Bool
	gw.Handle("half", func(c *gatewaytest.Call) (int, []byte) {
		if !reported.Swap(true) {
			return http.StatusOK, []byte(`{"batchItemFailures":[{"partition":0,"offset":2}]}`)
		}
		return http.StatusOK, nil
	})
	client.Produce(
		testkit.Record("partial", 0, nil, []byte("yes-0")),
		testkit.Record("partial", 0, nil, []byte("no")),
		testkit.Record("partial", 0, nil, []byte("yes-2")),
		testkit.Record("partial", 0, nil, []byte("no")),
	)
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, r.Ready, "in its group")
	testkit.Eventually(t, 20*time.Second, func() bool { return client.Committed("kafka-connector-half")["partial"][0] == 4 },
		"committed past the rejected tail once the rest of the batch is delivered")
	calls := gw.Calls("half")
	var offsets [][]int64
	for _, c := range calls {
		e, _ := c.Event()
		var o []int64
		for _, r := range e.Records {
			o = append(o, r.Ckafka.Offset)
		}
		offsets = append(offsets, o)
	}
	if !slices.EqualFunc(offsets, [][]int64{{0, 2}, {2}}, slices.Equal) {
		t.Errorf("batches %v, want [0 2] then the failed [2]", offsets)
	}
}
