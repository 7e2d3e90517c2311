package connector_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

const partitions = 3

func fn(name, topics string) types.Function {
	return types.Function{Name: name, Annotations: map[string]string{"topic": topics}}
}

// delivered is what a function received successfully: per topic and
// partition, the offsets in the order they arrived, and the records.
type delivered struct {
	offsets map[string]map[int32][]int64
	records map[string]map[int32][]types.Record
	batches []int // sizes
}

func successes(t *testing.T, calls []*gatewaytest.Call) delivered {
	t.Helper()
	d := delivered{offsets: map[string]map[int32][]int64{}, records: map[string]map[int32][]types.Record{}}
	for _, c := range calls {
		if c.Status < 200 || c.Status > 299 {
			continue
		}
		e, err := c.Event()
		if err != nil {
			t.Fatalf("invocation body is not an event: %v: %s", err, c.Body)
		}
		d.batches = append(d.batches, len(e.Records))
		for _, r := range e.Records {
			k := r.Ckafka
			if d.offsets[k.Topic] == nil {
				d.offsets[k.Topic] = map[int32][]int64{}
				d.records[k.Topic] = map[int32][]types.Record{}
			}
			d.offsets[k.Topic][k.Partition] = append(d.offsets[k.Topic][k.Partition], k.Offset)
			d.records[k.Topic][k.Partition] = append(d.records[k.Topic][k.Partition], k)
		}
	}
	return d
}

func (d delivered) count(topic string) int {
	n := 0
	for _, offs := range d.offsets[topic] {
		n += len(offs)
	}
	return n
}

// produceSpread writes n messages per partition, with values "p<partition>-<i>".
func produceSpread(client *testkit.Client, topic string, n int) {
	var recs []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for i := 0; i < n; i++ {
			recs = append(recs, testkit.Record(topic, p, []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("p%d-%d", p, i))))
		}
	}
	client.Produce(recs...)
}

// produceNumbered writes the numbers from from to to-1, each a message's
// value, to partition 0 of topic.
func produceNumbered(client *testkit.Client, topic string, from, to int) {
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, testkit.Record(topic, 0, nil, []byte(strconv.Itoa(i))))
	}
	client.Produce(recs...)
}

func inOrder(offsets []int64, n int) bool {
	if len(offsets) != n {
		return false
	}
	for i, o := range offsets {
		if o != int64(i) {
			return false
		}
	}
	return true
}

func TestDeliversEveryMessageInOrderPerPartition(t *testing.T) {
	client, gw, cfg := setup(t, "orders")
	gw.SetFunctions(fn("billing", "orders"))
	cfg.MaxMessages = 7
	testkit.Start(t, cfg)

	produceSpread(client, "orders", 50)
	testkit.Eventually(t, 30*time.Second, func() bool {
		return successes(t, gw.Calls("billing")).count("orders") >= 150
	}, "150 messages delivered")

	d := successes(t, gw.Calls("billing"))
	for p := int32(0); p < partitions; p++ {
		if !inOrder(d.offsets["orders"][p], 50) {
			t.Errorf("partition %d: offsets %v, want 0..49 once each in order", p, d.offsets["orders"][p])
		}
		for i, r := range d.records["orders"][p] {
			if want := fmt.Sprintf("p%d-%d", p, i); r.MsgBody != want || r.MsgKey != fmt.Sprintf("k%d", i) {
				t.Errorf("partition %d offset %d: key %q body %q, want k%d %q", p, i, r.MsgKey, r.MsgBody, i, want)
			}
		}
	}
	for _, n := range d.batches {
		if n < 1 || n > 7 {
			t.Errorf("batch of %d records, want 1 to 7", n)
		}
	}
}

func TestEventShapeAndHeaders(t *testing.T) {
	client, gw, cfg := setup(t, "shape")
	gw.SetFunctions(fn("shape-fn", "shape"))
	testkit.Start(t, cfg)

	client.Produce(
		testkit.Record("shape", 1, nil, []byte("Hello from Ckafka!")),
		testkit.Record("shape", 1, []byte("key-1"), []byte("Hello from Ckafka again!")),
	)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("shape-fn")).count("shape") == 2
	}, "2 messages delivered")

	calls := gw.Calls("shape-fn")
	var records []map[string]any
	for _, c := range calls {
		var body map[string]any
		dec := json.NewDecoder(bytes.NewReader(c.Body))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("body is not JSON: %v: %s", err, c.Body)
		}
		if len(body) != 1 {
			t.Errorf("event has fields %v, want only Records", keys(body))
		}
		list, ok := body["Records"].([]any)
		if !ok {
			t.Fatalf("Records is %T, want a list", body["Records"])
		}
		for _, item := range list {
			wrapper := item.(map[string]any)
			if len(wrapper) != 1 {
				t.Errorf("record wrapper has fields %v, want only Ckafka", keys(wrapper))
			}
			records = append(records, wrapper["Ckafka"].(map[string]any))
		}
		h := c.Header
		for name, want := range map[string]string{
			"Content-Type":       "application/json",
			"X-Connector":        "kafka-connector",
			"X-Topic":            "shape",
			"X-Kafka-Partition":  "1",
			"X-Delivery-Attempt": "1",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("header %s = %q, want %q", name, got, want)
			}
		}
		if h.Get("X-Idempotency-Key") == "" || h.Get("X-Kafka-First-Offset") == "" || h.Get("X-Kafka-Last-Offset") == "" {
			t.Errorf("missing idempotency key or offsets in %v", h)
		}
	}
	want := []map[string]any{
		{"topic": "shape", "partition": json.Number("1"), "offset": json.Number("0"), "msgKey": "None", "msgBody": "Hello from Ckafka!"},
		{"topic": "shape", "partition": json.Number("1"), "offset": json.Number("1"), "msgKey": "key-1", "msgBody": "Hello from Ckafka again!"},
	}
	if len(records) != 2 {
		t.Fatalf("got %d records, want 2", len(records))
	}
	for i := range want {
		if fmt.Sprint(records[i]) != fmt.Sprint(want[i]) {
			t.Errorf("record %d = %v, want exactly %v", i, records[i], want[i])
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestBinaryKeysAndValuesSurvive(t *testing.T) {
	client, gw, cfg := setup(t, "bin")
	gw.SetFunctions(fn("bin-fn", "bin"))
	testkit.Start(t, cfg)

	values := [][]byte{
		{0xff, 0xfe, 0x00, 0x01},
		[]byte("plain \"quoted\" \\ text\n\t\x01 ünïcödé ✓"),
		{},
		nil,
		bytes.Repeat([]byte{0x80}, 1000),
	}
	keys := [][]byte{{0xc3, 0x28}, []byte("text-key"), {}, nil, {0x00}}
	var recs []*kgo.Record
	for i := range values {
		recs = append(recs, testkit.Record("bin", 0, keys[i], values[i]))
	}
	client.Produce(recs...)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("bin-fn")).count("bin") == len(values)
	}, "%d messages delivered", len(values))

	got := successes(t, gw.Calls("bin-fn")).records["bin"][0]
	for i, r := range got {
		key, err := r.Key()
		if err != nil {
			t.Fatal(err)
		}
		body, err := r.Body()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(key, keys[i]) || (key == nil) != (keys[i] == nil) {
			t.Errorf("record %d: key %q (encoding %q), want %q", i, key, r.MsgKeyEncoding, keys[i])
		}
		// A null value (a tombstone on a compacted topic) is not an empty one.
		if !bytes.Equal(body, values[i]) || (body == nil) != (values[i] == nil) || r.Tombstone() != (values[i] == nil) {
			t.Errorf("record %d: body %q (nil: %v, encoding %q, null %q), want %q (nil: %v)",
				i, body, body == nil, r.MsgBodyEncoding, r.MsgBodyNull, values[i], values[i] == nil)
		}
	}
	if got[0].MsgBodyEncoding != types.Base64 || got[1].MsgBodyEncoding != "" {
		t.Errorf("encodings %q and %q, want base64 for bytes and none for text", got[0].MsgBodyEncoding, got[1].MsgBodyEncoding)
	}
}

func TestBatchesFlushOnCountBytesAndTime(t *testing.T) {
	tests := []struct {
		name     string
		max      int
		maxBytes int
		maxWait  time.Duration
		values   []int // sizes of the values written at once to one partition
		want     func(t *testing.T, sizes []int, bodies [][]byte)
	}{
		{
			name: "count", max: 10, maxWait: time.Minute, values: repeat(100, 100),
			want: func(t *testing.T, sizes []int, _ [][]byte) {
				// A minute-long wait never expires: only the count can
				// have sent these batches.
				if !slices.Equal(sizes, repeatInts(10, 10)) {
					t.Errorf("batch sizes %v, want ten batches of 10", sizes)
				}
			},
		},
		{
			name: "bytes", max: 1000, maxBytes: 2048, maxWait: time.Minute, values: append(repeat(400, 300), 5000, 10),
			want: func(t *testing.T, sizes []int, bodies [][]byte) {
				// The last message, of 10 bytes, waits out the minute: it
				// is not in the batches checked here.
				for i, b := range bodies {
					if len(b) > 2048 && sizes[i] != 1 {
						t.Errorf("batch %d: %d bytes in %d records, over max_bytes", i, len(b), sizes[i])
					}
				}
				last := bodies[len(bodies)-1]
				if sizes[len(sizes)-1] != 1 || len(last) < 5000 {
					t.Errorf("the 5000-byte message came in a batch of %d records (%d bytes), want alone", sizes[len(sizes)-1], len(last))
				}
			},
		},
		{
			name: "time", max: 1000, maxWait: 300 * time.Millisecond, values: repeat(10, 3),
			want: func(t *testing.T, sizes []int, _ [][]byte) {
				if !slices.Equal(sizes, []int{3}) {
					t.Errorf("batch sizes %v, want one batch of 3 sent when max_wait passed", sizes)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, gw, cfg := setup(t, "flush")
			gw.SetFunctions(fn("flush-fn", "flush"))
			cfg.MaxMessages, cfg.MaxWait = tc.max, tc.maxWait
			if tc.maxBytes > 0 {
				cfg.MaxBytes = tc.maxBytes
			}
			// The messages are all written before the connector starts,
			// so that batches depend on the limits and not on timing.
			var recs []*kgo.Record
			for _, size := range tc.values {
				recs = append(recs, testkit.Record("flush", 0, nil, bytes.Repeat([]byte("x"), size)))
			}
			client.Produce(recs...)
			testkit.Start(t, cfg)

			expect := len(tc.values)
			if tc.name == "bytes" {
				expect-- // the last one waits for max_wait
			}
			testkit.Eventually(t, 20*time.Second, func() bool {
				return successes(t, gw.Calls("flush-fn")).count("flush") >= expect
			}, "%d messages delivered", expect)
			var sizes []int
			var bodies [][]byte
			for _, c := range gw.Calls("flush-fn") {
				e, _ := c.Event()
				sizes = append(sizes, len(e.Records))
				bodies = append(bodies, c.Body)
			}
			tc.want(t, sizes, bodies)
		})
	}
}

func repeat(size, n int) []int { return repeatInts(size, n) }

func repeatInts(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestFailingBatchIsRetriedWithGrowingDelaysAndNothingNewerInBetween(t *testing.T) {
	client, gw, cfg := setup(t, "retry")
	gw.SetFunctions(fn("flaky", "retry"))
	const failures = 4
	var calls atomic.Int32
	gw.Handle("flaky", func(c *gatewaytest.Call) (int, []byte) {
		if c.Header.Get("X-Kafka-Partition") == "0" && calls.Add(1) <= failures {
			return http.StatusInternalServerError, []byte("boom")
		}
		return http.StatusOK, nil
	})
	cfg.RetryBackoffInitial = 40 * time.Millisecond
	cfg.MaxMessages = 5
	// All messages are there before the connector starts, so the first
	// batch of partition 0 is full and later ones are ready to be sent.
	produceSpread(client, "retry", 20)
	testkit.Start(t, cfg)

	testkit.Eventually(t, 30*time.Second, func() bool {
		return successes(t, gw.Calls("flaky")).count("retry") >= 60
	}, "60 messages delivered")

	var p0 []*gatewaytest.Call
	for _, c := range gw.Calls("flaky") {
		if c.Header.Get("X-Kafka-Partition") == "0" {
			p0 = append(p0, c)
		}
	}
	if len(p0) < failures+1 {
		t.Fatalf("partition 0 got %d calls, want at least %d", len(p0), failures+1)
	}
	first := p0[:failures+1]
	for i, c := range first {
		if !bytes.Equal(c.Body, first[0].Body) {
			t.Errorf("attempt %d carried a different body than attempt 1", i+1)
		}
		if got := c.Header.Get("X-Delivery-Attempt"); got != strconv.Itoa(i+1) {
			t.Errorf("attempt %d has X-Delivery-Attempt %s", i+1, got)
		}
		if c.Header.Get("X-Idempotency-Key") != first[0].Header.Get("X-Idempotency-Key") {
			t.Errorf("attempt %d has another idempotency key", i+1)
		}
	}
	if p0[failures+1].Header.Get("X-Idempotency-Key") == first[0].Header.Get("X-Idempotency-Key") {
		t.Errorf("the next batch reuses the idempotency key of the retried one")
	}
	var prev time.Duration
	for i := 1; i < len(first); i++ {
		gap := first[i].Received.Sub(first[i-1].Received)
		if gap < prev {
			t.Errorf("retry %d came %v after the previous attempt, sooner than the %v before it", i, gap, prev)
		}
		if gap < cfg.RetryBackoffInitial*8/10 {
			t.Errorf("retry %d came after %v, under the initial backoff", i, gap)
		}
		prev = gap
	}
	d := successes(t, gw.Calls("flaky"))
	for p := int32(0); p < partitions; p++ {
		if !inOrder(d.offsets["retry"][p], 20) {
			t.Errorf("partition %d delivered %v, want 0..19 in order once each", p, d.offsets["retry"][p])
		}
	}
}

func TestOneFailingFunctionDoesNotDelayAnother(t *testing.T) {
	client, gw, cfg := setup(t, "shared")
	gw.SetFunctions(fn("broken", "shared"), fn("healthy", "shared"))
	gw.Handle("broken", func(*gatewaytest.Call) (int, []byte) { return http.StatusServiceUnavailable, nil })
	testkit.Start(t, cfg)

	produceSpread(client, "shared", 30)
	testkit.Eventually(t, 30*time.Second, func() bool {
		return successes(t, gw.Calls("healthy")).count("shared") == 90
	}, "the healthy function got all 90 messages while the other one fails")
	testkit.Eventually(t, 20*time.Second, func() bool {
		seen := map[string]bool{}
		for _, c := range gw.Calls("broken") {
			seen[c.Header.Get("X-Kafka-Partition")] = true
		}
		return len(seen) == partitions && len(gw.Calls("broken")) > partitions
	}, "the failing function is tried, and retried, on every partition")
}

func TestNothingIsCommittedBeforeSuccess(t *testing.T) {
	client, gw, cfg := setup(t, "acks")
	gw.SetFunctions(fn("fragile", "acks"))
	var fail atomic.Bool
	fail.Store(true)
	gw.Handle("fragile", func(*gatewaytest.Call) (int, []byte) {
		if fail.Load() {
			return http.StatusBadGateway, nil
		}
		return http.StatusOK, nil
	})
	produceSpread(client, "acks", 10)

	first := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("fragile")) >= 3*partitions },
		"several failed attempts on every partition")
	first.Stop()
	for topic, parts := range client.Committed("kafka-connector-fragile") {
		for p, off := range parts {
			if off > 0 {
				t.Errorf("%s/%d committed at %d although nothing succeeded", topic, p, off)
			}
		}
	}

	// A new connector in the same group gets the same messages again.
	fail.Store(false)
	before := len(gw.Calls("fragile"))
	second := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("fragile")[before:]).count("acks") == 30
	}, "the restarted connector delivers the 30 uncommitted messages")
	second.Stop()
	committed := client.Committed("kafka-connector-fragile")
	for p := int32(0); p < partitions; p++ {
		if committed["acks"][p] != 10 {
			t.Errorf("partition %d committed at %d after success, want 10", p, committed["acks"][p])
		}
	}

	// And a third one, after they were committed, gets nothing again.
	produceSpread(client, "acks", 1)
	before = len(gw.Calls("fragile"))
	testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("fragile")[before:]).count("acks") >= 3
	}, "the new messages delivered")
	d := successes(t, gw.Calls("fragile")[before:])
	for p := int32(0); p < partitions; p++ {
		if !slices.Equal(d.offsets["acks"][p], []int64{10}) {
			t.Errorf("partition %d delivered %v after a clean restart, want only the new offset 10", p, d.offsets["acks"][p])
		}
	}
}

func TestRemovedFunctionStopsConsuming(t *testing.T) {
	client, gw, cfg := setup(t, "events")
	gw.SetFunctions(fn("leaving", "events"), fn("staying", "events"))
	testkit.Start(t, cfg)

	produceSpread(client, "events", 5)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("leaving")).count("events") == 15 && successes(t, gw.Calls("staying")).count("events") == 15
	}, "both functions got the first messages")

	gw.SetFunctions(fn("staying", "events"))
	testkit.Eventually(t, 20*time.Second, func() bool { return client.Members("kafka-connector-leaving") == 0 },
		"the removed function's trigger leaves its group")
	before := len(gw.Calls("leaving"))
	produceSpread(client, "events", 5)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("staying")).count("events") == 30
	}, "the remaining function gets the new messages")
	if after := len(gw.Calls("leaving")); after != before {
		t.Errorf("the removed function was invoked %d more times", after-before)
	}
}

func TestShutdownFinishesTheInvocationInFlightAndCommitsIt(t *testing.T) {
	tests := []struct {
		maxMessages int
		committed   int64 // after the stop
	}{
		{maxMessages: 1000, committed: 5}, // the batch in flight holds all five
		{maxMessages: 1, committed: 1},    // the four fetched after it must not start
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("max_messages=%d", tc.maxMessages), func(t *testing.T) {
			client, gw, cfg := setup(t, "drain")
			gw.SetFunctions(fn("slow", "drain"))
			started := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			gw.Handle("slow", func(c *gatewaytest.Call) (int, []byte) {
				once.Do(func() { close(started) })
				select {
				case <-release:
				case <-c.Context().Done():
					return http.StatusGatewayTimeout, nil
				}
				return http.StatusOK, nil
			})
			cfg.MaxMessages = tc.maxMessages
			for i := 0; i < 5; i++ {
				client.Produce(testkit.Record("drain", 2, nil, []byte{'a' + byte(i)}))
			}
			r := testkit.Start(t, cfg)
			<-started

			stopped := make(chan struct{})
			go func() { r.Stop(); close(stopped) }()
			// The connector must wait for the invocation in flight rather
			// than abandon it.
			select {
			case <-stopped:
				t.Fatal("the connector stopped before the invocation in flight finished")
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			<-stopped
			if got := client.Committed("kafka-connector-slow")["drain"][2]; got != tc.committed {
				t.Errorf("partition 2 committed at %d after shutdown, want %d", got, tc.committed)
			}
			if n := len(gw.Calls("slow")); n != 1 {
				t.Errorf("%d invocations, want only the one in flight", n)
			}
		})
	}
}

func TestReplicasShareThePartitionsAndHandThemOver(t *testing.T) {
	client, gw, cfg := setup(t, "shared-work")
	gw.SetFunctions(fn("worker", "shared-work"))
	cfg.MaxMessages = 5

	first := testkit.Start(t, cfg)
	produceSpread(client, "shared-work", 20)
	second := testkit.Start(t, cfg)
	testkit.Eventually(t, 30*time.Second, func() bool { return client.Members("kafka-connector-worker") == 2 },
		"both replicas are members of the function's group")
	produceSpread(client, "shared-work", 20)
	first.Stop()
	produceSpread(client, "shared-work", 20)
	testkit.Eventually(t, 30*time.Second, func() bool {
		d := successes(t, gw.Calls("worker"))
		for p := int32(0); p < partitions; p++ {
			if len(unique(d.offsets["shared-work"][p])) != 60 {
				return false
			}
		}
		return true
	}, "every message delivered while the partitions moved between replicas")
	second.Stop()

	d := successes(t, gw.Calls("worker"))
	for p := int32(0); p < partitions; p++ {
		// A replay may restart from a committed offset, but new offsets are
		// first delivered in order.
		next := int64(0)
		for _, o := range d.offsets["shared-work"][p] {
			if o > next {
				t.Fatalf("partition %d: offset %d delivered before %d", p, o, next)
			}
			if o == next {
				next++
			}
		}
	}
}

func unique(offsets []int64) map[int64]bool {
	m := map[int64]bool{}
	for _, o := range offsets {
		m[o] = true
	}
	return m
}

// setup starts what most tests run against: an embedded cluster holding the
// topics, a client of it, a recording gateway, and the connector settings
// for them.
func setup(t *testing.T, topics ...string) (*testkit.Client, *gatewaytest.Gateway, config.Config) {
	t.Helper()
	cluster := testkit.Cluster(t, partitions, topics...)
	gw, url := testkit.Gateway(t)
	return testkit.NewClient(t, cluster), gw, testkit.Config(t, cluster, url)
}
