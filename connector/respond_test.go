package connector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/respond"
	"github.com/kafka-connector/kafka-connector/types"
)

// echoRecords answers a batch with one record per message, whose value
// names the message's topic, partition and offset and whose key is the
// message's.
func echoRecords(c *gatewaytest.Call) (int, []byte) {
	e, err := c.Event()
	if err != nil {
		return http.StatusBadRequest, nil
	}
	type rec struct {
		Key     *string           `json:"key,omitempty"`
		Value   string            `json:"value"`
		Headers map[string]string `json:"headers,omitempty"`
	}
	var out struct {
		Records []rec `json:"records"`
	}
	for _, r := range e.Records {
		k := r.Ckafka
		v := rec{Value: fmt.Sprintf("%s/%d/%d", k.Topic, k.Partition, k.Offset), Headers: map[string]string{"from": "echo"}}
		if k.MsgKey != "" {
			key := k.MsgKey
			v.Key = &key
		}
		out.Records = append(out.Records, v)
	}
	b, _ := json.Marshal(out)
	return http.StatusOK, b
}

// readCommitted reads every record of topic as a read_committed consumer
// sees them once nothing more is written: it writes a marker to each
// partition and reads until every marker came. Transactions still open
// hold the markers back until they are decided.
func readCommitted(t *testing.T, cluster *kfake.Cluster, topic string, parts int32) []*kgo.Record {
	t.Helper()
	// Each call's markers are its own: a test that reads twice must not
	// stop at the first call's markers, before what was written since.
	marker := "end-marker " + strconv.FormatInt(time.Now().UnixNano(), 10)
	w := testkit.NewClient(t, cluster)
	for p := int32(0); p < parts; p++ {
		w.Produce(testkit.Record(topic, p, nil, []byte(marker)))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	ends := 0
	for ends < int(parts) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d end markers of %d from %s (and %d records)", ends, parts, topic, len(out))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			switch {
			case string(r.Value) == marker:
				ends++
			case !strings.HasPrefix(string(r.Value), "end-marker "):
				out = append(out, r)
			}
		})
	}
	return out
}

// countOutputs counts the records read by their value.
func countOutputs(recs []*kgo.Record) map[string]int {
	n := make(map[string]int)
	for _, r := range recs {
		n[string(r.Value)]++
	}
	return n
}

// committedAll waits until the group committed every partition of topic up
// to its end.
func committedAll(t *testing.T, client *testkit.Client, group, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := client.Admin.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() bool {
		got := client.Committed(group)[topic]
		for p := int32(0); p < partitions; p++ {
			end, _ := ends.Lookup(topic, p)
			if got[p] != end.Offset {
				return false
			}
		}
		return true
	}, "the group commits every partition of %s to its end: %v", topic, client.Committed(group))
}

// Under at-least-once, every message's answer reaches the response topic,
// with the headers naming its batch, in the partition the rule says, and
// answers of the other forms write what the answer format says.
func TestAnswersAreWrittenToTheResponseTopic(t *testing.T) {
	client, gw, cfg := enriching(t, 4)
	gw.Handle("enrich", echoRecords)
	testkit.Start(t, cfg)

	produceSpread(client, "orders", 10)
	committedAll(t, client, "kafka-connector-enrich", "orders")
	got := readCommitted(t, client.Cluster, "orders.enriched", partitions)
	n := countOutputs(got)
	for p := 0; p < partitions; p++ {
		for o := 0; o < 10; o++ {
			if n[fmt.Sprintf("orders/%d/%d", p, o)] < 1 {
				t.Errorf("no answer for orders/%d/%d", p, o)
			}
		}
	}
	for _, r := range got {
		var p int32
		var o int64
		fmt.Sscanf(string(r.Value), "orders/%d/%d", &p, &o)
		first, _ := strconv.ParseInt(header(r, respond.HeaderSourceFirstOffset), 10, 64)
		last, _ := strconv.ParseInt(header(r, respond.HeaderSourceLastOffset), 10, 64)
		if header(r, respond.HeaderSourceTopic) != "orders" || header(r, respond.HeaderSourcePartition) != strconv.Itoa(int(p)) ||
			o < first || o > last || header(r, respond.HeaderFunction) != "enrich" || header(r, "from") != "echo" ||
			header(r, respond.HeaderIdempotencyKey) != fmt.Sprintf("enrich/orders/%d/%d-%d", p, first, last) {
			t.Errorf("record %s: headers %v do not name its batch", r.Value, r.Headers)
		}
		if string(r.Key) != fmt.Sprintf("k%d", o) {
			t.Errorf("record %s: key %q, want the function's k%d", r.Value, r.Key, o)
		}
	}

}

// Each form of answer writes what the answer format says, to the response
// topic a function's annotation names; an unkeyed record goes to the
// partition numbered as its input partition.
func TestAnswerFormsWriteWhatTheFormatSays(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string // values written, in order
	}{
		{"plain", "hello", []string{"hello"}},
		{"echo", `{"Records":[1]}`, []string{`{"Records":[1]}`}},
		{"empty", "", nil},
		{"nothing", `{"records":[]}`, nil},
		{"values", `{"records":[{"value":{"a":1}},{"value":"text"},{"value":null}],"batchItemFailures":[]}`, []string{`{"a":1}`, "text", ""}},
	}
	var topics []string
	for _, tc := range cases {
		topics = append(topics, "in-"+tc.name, "out-"+tc.name)
	}
	client, gw, cfg := setup(t, topics...)
	var fns []types.Function
	for _, tc := range cases {
		f := fn(tc.name, "in-"+tc.name)
		f.Annotations[types.AnnotationResponseTopic] = "out-" + tc.name
		fns = append(fns, f)
		gw.Handle(tc.name, func(*gatewaytest.Call) (int, []byte) { return http.StatusOK, []byte(tc.body) })
		client.Produce(testkit.Record("in-"+tc.name, 1, nil, []byte("x")))
	}
	gw.SetFunctions(fns...)
	r := testkit.Start(t, cfg)
	for _, tc := range cases {
		committedAll(t, client, "kafka-connector-"+tc.name, "in-"+tc.name)
	}
	r.Stop()
	for _, tc := range cases {
		var values []string
		for _, rec := range readCommitted(t, client.Cluster, "out-"+tc.name, partitions) {
			values = append(values, string(rec.Value))
			if rec.Key == nil && rec.Partition != 1 {
				t.Errorf("%s: an unkeyed answer of input partition 1 went to partition %d", tc.name, rec.Partition)
			}
		}
		if fmt.Sprint(values) != fmt.Sprint(tc.want) {
			t.Errorf("%s: wrote %q, want %q", tc.name, values, tc.want)
		}
	}
}

// A refused write of an answer keeps its batch uncommitted, and says what
// to do, until the write succeeds; the batch is not invoked again meanwhile.
func TestResponseWriteFailureKeepsTheBatchUncommitted(t *testing.T) {
	client, gw, cfg := setup(t, "payments", "payments.ok")
	cfg.ResponseTopic = "payments.ok"
	gw.SetFunctions(fn("validate", "payments"))
	gw.Handle("validate", echoRecords)
	client.Produce(testkit.Record("payments", 2, nil, []byte("p")))
	const refusals = 8
	refused := testkit.RefuseProduces(client.Cluster, "payments.ok", refusals, kerr.TopicAuthorizationFailed)
	r := testkit.Start(t, cfg)
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()

	// The offset is read before the refusals are counted: a commit seen
	// while writes were still refused came before the answer was written.
	committedEarly := false
	testkit.Eventually(t, 30*time.Second, func() bool {
		committed := client.Committed("kafka-connector-validate")["payments"][2]
		n := refused.Load()
		committedEarly = committedEarly || committed > 0 && n < refusals
		return committedEarly || n >= refusals
	}, "the answer's write is refused %d times", refusals)
	if committedEarly {
		t.Fatal("the batch was committed while its answer was not written")
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return client.Committed("kafka-connector-validate")["payments"][2] == 1 },
		"committed once the answer is written")
	if n := len(gw.Calls("validate")); n != 1 {
		t.Errorf("%d invocations: a failed write is retried without invoking the function again", n)
	}
	out := countOutputs(readCommitted(t, client.Cluster, "payments.ok", partitions))
	if out["payments/2/0"] != 1 {
		t.Errorf("answers written %v", out)
	}
	m := scrapeMetrics(t, srv.URL)
	if !strings.Contains(m, `kafka_connector_response_errors_total{function="validate",reason="not_authorized",topic="payments"}`) {
		t.Errorf("the refusals are not counted:\n%s", grep(m, "response_"))
	}
	if !strings.Contains(r.Logs(), "grant its user WRITE and DESCRIBE on the topic") {
		t.Error("the log does not say what to do")
	}
}

// A partition goes on with its next batch while an answer is written, but
// no further: while the brokers refuse the answer of offset 0, the function
// gets offset 1 and not offset 2, and nothing is committed; once it is
// written, the answers follow in input order and everything is committed.
func TestNextBatchGoesWhileAnAnswerIsWritten(t *testing.T) {
	client, gw, cfg := enriching(t, 1)
	gw.Handle("enrich", echoRecords)
	for o := range 3 {
		client.Produce(testkit.Record("orders", 2, nil, []byte(strconv.Itoa(o))))
	}
	const refusals = 8
	refused := testkit.FailProduces(client.Cluster, "orders.enriched", refusals)
	testkit.Start(t, cfg)

	// Each figure is read before the refusals are counted: what is seen
	// while writes were still refused happened before the answer of
	// offset 0 was written.
	overlapped := false
	testkit.Eventually(t, 30*time.Second, func() bool {
		calls := len(gw.Calls("enrich"))
		committed := client.Committed("kafka-connector-enrich")["orders"][2]
		n := refused.Load()
		if n < refusals {
			if committed > 0 {
				t.Fatalf("offset %d committed while the answer of offset 0 was not written", committed)
			}
			if calls > 2 {
				t.Fatalf("%d invocations while the answer of offset 0 was not written: at most one batch goes ahead of an answer", calls)
			}
			overlapped = overlapped || calls == 2
		}
		return n >= refusals
	}, "the answer's write is refused %d times", refusals)
	if !overlapped {
		t.Error("the next batch waited for the answer to be written")
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return client.Committed("kafka-connector-enrich")["orders"][2] == 3 },
		"committed once the answers are written")
	var order []string
	for _, r := range readCommitted(t, client.Cluster, "orders.enriched", partitions) {
		order = append(order, string(r.Value))
	}
	if want := []string{"orders/2/0", "orders/2/1", "orders/2/2"}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("answers written %v, want %v once each, in input order", order, want)
	}
}

// An answer acknowledged while the partition has more to deliver holds
// nothing back until the partition is idle: once the answer of offset 0 is
// written, the batches after it that answer nothing are committed as they
// finish, while a later call is still in flight.
func TestAnAcknowledgedAnswerHoldsNothingBack(t *testing.T) {
	client, gw, cfg := enriching(t, 1)
	var running atomic.Pointer[testkit.Running]
	written := func() bool {
		r := running.Load()
		if r == nil {
			return false
		}
		mfs, _ := r.Metrics().Gather()
		for _, mf := range mfs {
			if mf.GetName() == "kafka_connector_response_records_total" {
				return len(mf.GetMetric()) > 0 && mf.GetMetric()[0].GetCounter().GetValue() >= 1
			}
		}
		return false
	}
	release := make(chan struct{})
	defer close(release)
	gw.Handle("enrich", func(c *gatewaytest.Call) (int, []byte) {
		e, err := c.Event()
		if err != nil || len(e.Records) != 1 {
			return http.StatusBadRequest, nil
		}
		switch e.Records[0].Ckafka.Offset {
		case 0:
			return echoRecords(c)
		case 3:
			// The answer of offset 0 was written, as far as the
			// connector knows, before offset 3 is answered.
			for !written() {
				select {
				case <-c.Context().Done():
					return http.StatusServiceUnavailable, nil
				case <-time.After(5 * time.Millisecond):
				}
			}
		case 5:
			<-release
		}
		return http.StatusOK, nil // nothing to write
	})
	for o := range 6 {
		client.Produce(testkit.Record("orders", 2, nil, []byte(strconv.Itoa(o))))
	}
	running.Store(testkit.Start(t, cfg))
	testkit.Eventually(t, 30*time.Second, func() bool { return client.Committed("kafka-connector-enrich")["orders"][2] == 5 },
		"offsets 0 to 4 committed while offset 5 is in flight: %v", client.Committed("kafka-connector-enrich"))
}

// enriching is the setup of the at-least-once tests of the function
// enrich, which answers the messages of orders into orders.enriched, in
// batches of at most maxMessages.
func enriching(t *testing.T, maxMessages int) (*testkit.Client, *gatewaytest.Gateway, config.Config) {
	t.Helper()
	client, gw, cfg := setup(t, "orders", "orders.enriched")
	cfg.ResponseTopic = "orders.enriched"
	cfg.MaxMessages = maxMessages
	gw.SetFunctions(fn("enrich", "orders"))
	return client, gw, cfg
}

// exactlyOnce is the setup of the exactly-once tests: the function echoes
// every message into the response topic.
func exactlyOnce(t *testing.T, in, out string) (*testkit.Client, *gatewaytest.Gateway, config.Config) {
	t.Helper()
	client, gw, cfg := setup(t, in, out)
	cfg.ResponseTopic = out
	cfg.ResponseDelivery = types.ExactlyOnce
	cfg.MaxMessages = 5
	cfg.CommitInterval = 100 * time.Millisecond
	return client, gw, cfg
}

// wantEachOnce checks that every offset of every partition of in, up to n,
// has exactly one answer among recs, and nothing else was written.
func wantEachOnce(t *testing.T, recs []*kgo.Record, in string, n int) {
	t.Helper()
	got := countOutputs(recs)
	bad := 0
	for p := 0; p < partitions; p++ {
		for o := 0; o < n; o++ {
			v := fmt.Sprintf("%s/%d/%d", in, p, o)
			if got[v] != 1 && bad < 10 {
				t.Errorf("%s written %d times, want once", v, got[v])
				bad++
			}
			delete(got, v)
		}
	}
	if len(got) > 0 {
		t.Errorf("written but not asked for: %v", got)
	}
}

// commitsOutsideTransactions counts the group's offset commits that do not
// go through a transaction: under exactly-once there must be none.
func commitsOutsideTransactions(cluster *kfake.Cluster, group string) *atomic.Int32 {
	var n atomic.Int32
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if r := req.(*kmsg.OffsetCommitRequest); r.Group == group && len(r.Topics) > 0 {
			n.Add(1)
		}
		return nil, nil, false
	})
	return &n
}

// Under exactly-once, a read_committed reader sees each message's answer
// once, although transactions fail and their batches are delivered again;
// the offsets are committed in the transactions, never by the group.
func TestExactlyOnceWritesEachAnswerOnce(t *testing.T) {
	client, gw, cfg := exactlyOnce(t, "ledger", "ledger.out")
	gw.SetFunctions(fn("post", "ledger"))
	gw.Handle("post", echoRecords)
	outside := commitsOutsideTransactions(client.Cluster, "kafka-connector-post")
	// The first commits fail as a coordinator that lost the transaction
	// answers: each aborts a transaction holding answers.
	var failed atomic.Int32
	client.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		client.Cluster.KeepControl()
		r := req.(*kmsg.EndTxnRequest)
		if !r.Commit || failed.Load() >= 2 {
			return nil, nil, false
		}
		failed.Add(1)
		resp := r.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	r := testkit.Start(t, cfg)

	produceSpread(client, "ledger", 30)
	committedAll(t, client, "kafka-connector-post", "ledger")
	r.Stop()
	if failed.Load() < 2 {
		t.Fatalf("%d transactions failed, want 2", failed.Load())
	}
	if n := outside.Load(); n > 0 {
		t.Errorf("%d offset commits outside a transaction", n)
	}
	wantEachOnce(t, readCommitted(t, client.Cluster, "ledger.out", partitions), "ledger", 30)
	if !strings.Contains(r.Logs(), "its batches will be delivered again") {
		t.Error("the failed transactions are not logged")
	}
}

// Partitions moving between two replicas while invocations are in flight
// still write each answer once: the replica that takes a partition starts
// from what the other committed in its last transaction.
func TestExactlyOnceAcrossARebalance(t *testing.T) {
	client, gw, cfg := exactlyOnce(t, "moves", "moves.out")
	gw.SetFunctions(fn("post", "moves"))
	gw.Handle("post", func(c *gatewaytest.Call) (int, []byte) {
		select {
		case <-time.After(20 * time.Millisecond): // in flight while the group rebalances
		case <-c.Context().Done():
		}
		return echoRecords(c)
	})
	outside := commitsOutsideTransactions(client.Cluster, "kafka-connector-post")
	first := testkit.Start(t, cfg)
	produceSpread(client, "moves", 40)
	testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("post")) >= 3 }, "invocations under way")
	second := testkit.Start(t, cfg)
	testkit.Eventually(t, 30*time.Second, func() bool { return client.Members("kafka-connector-post") == 2 },
		"both replicas are members of the group")
	produceSpread(client, "moves", 40)
	first.Stop()
	produceSpread(client, "moves", 40)
	committedAll(t, client, "kafka-connector-post", "moves")
	second.Stop()
	if n := outside.Load(); n > 0 {
		t.Errorf("%d offset commits outside a transaction", n)
	}
	wantEachOnce(t, readCommitted(t, client.Cluster, "moves.out", partitions), "moves", 120)
}

// A replica that lost its partition while it held a transaction open is
// fenced when another producer of the partition starts, as the replica
// that takes the partition does: its transaction is aborted, its answers
// are never seen by read_committed readers, and its next write fails. It
// then reads the partition again from the committed offset.
func TestFencedReplicaCannotCommit(t *testing.T) {
	client, gw, cfg := exactlyOnce(t, "fence", "fence.out")
	cfg.MaxMessages = 1
	cfg.CommitInterval = time.Minute // the transaction stays open
	gw.SetFunctions(fn("post", "fence"))
	release := make(chan struct{})
	var held atomic.Int32
	gw.Handle("post", func(c *gatewaytest.Call) (int, []byte) {
		if e, err := c.Event(); err == nil && len(e.Records) == 1 && e.Records[0].Ckafka.MsgBody == "hold" && held.Add(1) == 1 {
			select {
			case <-release:
			case <-c.Context().Done():
			}
		}
		return echoRecords(c)
	})
	client.Produce(testkit.Record("fence", 0, nil, []byte("a")), testkit.Record("fence", 0, nil, []byte("b")),
		testkit.Record("fence", 0, nil, []byte("hold")))
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return held.Load() == 1 }, "the third batch is in flight")

	// The partition's next owner starts its producer.
	next, err := kgo.NewClient(kgo.SeedBrokers(client.Cluster.ListenAddrs()...),
		kgo.TransactionalID(respond.TransactionalID("kafka-connector-post", "fence", 0)), kgo.DefaultProduceTopic("fence.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := next.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := next.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := next.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if recs := readCommitted(t, client.Cluster, "fence.out", partitions); len(recs) != 0 {
		t.Fatalf("the fenced replica's answers are visible: %v", countOutputs(recs))
	}
	close(release)
	testkit.Eventually(t, 30*time.Second, func() bool { return held.Load() >= 2 }, "the batches are delivered again")
	r.Stop() // commits the transaction of the batches delivered again
	if got := client.Committed("kafka-connector-post")["fence"][0]; got != 3 {
		t.Errorf("committed offset %d, want 3", got)
	}
	if !strings.Contains(r.Logs(), "fenced this one") {
		t.Error("the fencing is not logged")
	}
	got := countOutputs(readCommitted(t, client.Cluster, "fence.out", partitions))
	for o := 0; o < 3; o++ {
		if v := fmt.Sprintf("fence/0/%d", o); got[v] != 1 {
			t.Errorf("%s written %d times, want once", v, got[v])
		}
	}
}
