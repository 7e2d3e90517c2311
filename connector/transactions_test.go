package connector_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"net/http/httptest"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// A transactional producer, as Kafka Streams, Flink or Debezium write.
func transactionalProducer(t *testing.T, client *testkit.Client, id string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(client.Cluster.ListenAddrs()...),
		kgo.TransactionalID(id),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// writeTransaction writes two messages to each partition in one
// transaction, committed or aborted, and returns their values.
func writeTransaction(t *testing.T, cl *kgo.Client, topic string, n int, commit bool) map[int32][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	values := make(map[int32][]string)
	var recs []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for j := 0; j < 2; j++ {
			v := fmt.Sprintf("txn%d-p%d-%d", n, p, j)
			values[p] = append(values[p], v)
			recs = append(recs, testkit.Record(topic, p, nil, []byte(v)))
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if commit {
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	} else if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	return values
}

func bodies(d delivered, topic string, p int32) []string {
	var out []string
	for _, r := range d.records[topic][p] {
		out = append(out, r.MsgBody)
	}
	return out
}

// Under read_committed, the default, a function receives exactly the
// messages of committed transactions, in order; a still-open transaction is
// delivered once committed; and the group's position ends past the last
// transaction marker, so that lag reads 0. Under read_uncommitted it
// receives the aborted ones too.
func TestTransactionsDeliverOnlyWhatWasCommitted(t *testing.T) {
	client, gw, cfg := setup(t, "ledger")
	dirty := fn("dirty-reader", "ledger")
	dirty.Annotations[types.AnnotationIsolationLevel] = "read_uncommitted"
	gw.SetFunctions(fn("clean-reader", "ledger"), dirty)
	r := testkit.Start(t, cfg)
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()
	testkit.Eventually(t, 20*time.Second, r.Ready, "ready")

	tx := transactionalProducer(t, client, "ledger-writer")
	want := make(map[int32][]string)
	all := make(map[int32][]string)
	for n := 0; n < 12; n++ {
		commit := n%3 != 2
		for p, vs := range writeTransaction(t, tx, "ledger", n, commit) {
			all[p] = append(all[p], vs...)
			if commit {
				want[p] = append(want[p], vs...)
			}
		}
		if n == 5 { // plain messages between transactions
			client.Produce(testkit.Record("ledger", 0, nil, []byte("plain")))
			want[0] = append(want[0], "plain")
			all[0] = append(all[0], "plain")
		}
	}
	// A transaction left open: not delivered until it is committed.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, testkit.Record("ledger", 1, nil, []byte("pending"))).FirstErr(); err != nil {
		t.Fatal(err)
	}
	count := func(w map[int32][]string) int {
		n := 0
		for _, vs := range w {
			n += len(vs)
		}
		return n
	}
	testkit.Eventually(t, 30*time.Second, func() bool {
		return successes(t, gw.Calls("clean-reader")).count("ledger") >= count(want)
	}, "the committed messages are delivered")
	testkit.Eventually(t, 30*time.Second, func() bool {
		return successes(t, gw.Calls("dirty-reader")).count("ledger") >= count(all)+1
	}, "read_uncommitted delivers every message, the open transaction's too")
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	want[1] = append(want[1], "pending")
	testkit.Eventually(t, 30*time.Second, func() bool {
		return successes(t, gw.Calls("clean-reader")).count("ledger") >= count(want)
	}, "the transaction left open is delivered once committed")

	d := successes(t, gw.Calls("clean-reader"))
	for p := int32(0); p < partitions; p++ {
		if got := bodies(d, "ledger", p); !slices.Equal(got, want[p]) {
			t.Errorf("partition %d delivered\n%v\nwant exactly the committed messages in order\n%v", p, got, want[p])
		}
	}

	// Past the last marker: the committed offset is the partition's end.
	ends, err := client.Admin.ListEndOffsets(ctx, "ledger")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		got := client.Committed("kafka-connector-clean-reader")["ledger"]
		for p := int32(0); p < partitions; p++ {
			end, _ := ends.Lookup("ledger", p)
			if got[p] != end.Offset {
				return false
			}
		}
		return true
	}, "the group's committed offsets reach the end of every partition, past the last transaction marker: %v, ends %v",
		client.Committed("kafka-connector-clean-reader"), ends)
	testkit.Eventually(t, 20*time.Second, func() bool {
		m := grep(scrapeMetrics(t, srv.URL), `consumer_lag_messages{function="clean-reader"`)
		return strings.Count(m, "\n")+1 == partitions && strings.Count(m, "} 0") == partitions
	}, "lag reads 0 in every partition:\n%s", grep(scrapeMetrics(t, srv.URL), "consumer_lag_messages"))
}

// Lag is measured whether or not batches succeed: a function that fails
// every call shows its backlog growing, and how old its oldest message is.
func TestLagGrowsWhileAFunctionFails(t *testing.T) {
	client, gw, cfg := setup(t, "backlog")
	gw.SetFunctions(fn("broken", "backlog"))
	gw.Handle("broken", func(*gatewaytest.Call) (int, []byte) { return http.StatusInternalServerError, nil })
	r := testkit.Start(t, cfg)
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()
	lag := func(p int) string {
		return fmt.Sprintf(`kafka_connector_consumer_lag_messages{function="broken",partition="%d",topic="backlog"}`, p)
	}
	written := time.Now().Add(-time.Hour)
	produce := func(n int) {
		var recs []*kgo.Record
		for p := int32(0); p < partitions; p++ {
			for i := 0; i < n; i++ {
				rec := testkit.Record("backlog", p, nil, []byte("x"))
				rec.Timestamp = written
				recs = append(recs, rec)
			}
		}
		client.Produce(recs...)
	}
	produce(10)
	testkit.Eventually(t, 20*time.Second, func() bool {
		m := scrapeMetrics(t, srv.URL)
		return strings.Contains(m, lag(0)+" 10") && strings.Contains(m, lag(1)+" 10") && strings.Contains(m, lag(2)+" 10")
	}, "a lag of 10 in every partition:\n%s", grep(scrapeMetrics(t, srv.URL), "lag"))
	produce(5)
	testkit.Eventually(t, 20*time.Second, func() bool {
		m := scrapeMetrics(t, srv.URL)
		return strings.Contains(m, lag(0)+" 15") && strings.Contains(m, lag(1)+" 15") && strings.Contains(m, lag(2)+" 15")
	}, "the lag grows with every message written:\n%s", grep(scrapeMetrics(t, srv.URL), "lag"))
	testkit.Eventually(t, 20*time.Second, func() bool {
		for _, line := range strings.Split(grep(scrapeMetrics(t, srv.URL), `oldest_undelivered_seconds{function="broken"`), "\n") {
			var age float64
			if _, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &age); err != nil || age < 3000 {
				return false
			}
		}
		return true
	}, "the oldest undelivered message is an hour old in every partition:\n%s", grep(scrapeMetrics(t, srv.URL), "oldest"))
}
