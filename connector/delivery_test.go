package connector_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// failValues fails every batch holding a record whose body starts with "bad".
func failValues(c *gatewaytest.Call) (int, []byte) {
	if bytes.Contains(c.Body, []byte(`"msgBody":"bad`)) {
		return http.StatusInternalServerError, []byte("cannot handle this")
	}
	return http.StatusOK, nil
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestDeadLetterTopicTakesWhatCannotBeDelivered(t *testing.T) {
	client, gw, cfg := setup(t, "orders", "orders.dlq")
	cluster := client.Cluster
	gw.SetFunctions(fn("strict", "orders"))
	gw.Handle("strict", failValues)
	cfg.MaxRetries = 2
	cfg.DeadLetterTopic = "orders.dlq"
	cfg.MaxMessages = 2

	bad := &kgo.Record{Topic: "orders", Partition: 1, Key: []byte("k1"), Value: []byte("bad-1"),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}}}
	client.Produce(bad, testkit.Record("orders", 1, nil, []byte("bad-2")))
	testkit.Start(t, cfg)

	letters := testkit.ReadAll(t, cluster, "orders.dlq", 2, 30*time.Second)
	// Dead letters are partitioned by key, so they may be read in any order.
	slices.SortFunc(letters, func(a, b *kgo.Record) int {
		return strings.Compare(header(a, connector.HeaderOriginalOffset), header(b, connector.HeaderOriginalOffset))
	})
	first := letters[0]
	if string(first.Key) != "k1" || string(first.Value) != "bad-1" || header(first, "trace") != "t-1" {
		t.Errorf("dead letter %q=%q, headers %v: want the original key, value and headers", first.Key, first.Value, first.Headers)
	}
	for name, want := range map[string]string{
		connector.HeaderOriginalTopic: "orders", connector.HeaderOriginalPartition: "1", connector.HeaderOriginalOffset: "0",
		connector.HeaderFunction: "strict", connector.HeaderAttempts: "3",
	} {
		if got := header(first, name); got != want {
			t.Errorf("dead letter header %s = %q, want %q", name, got, want)
		}
	}
	if !strings.Contains(header(first, connector.HeaderLastFailure), "500") {
		t.Errorf("last failure %q does not name the status", header(first, connector.HeaderLastFailure))
	}
	if got := header(first, connector.HeaderLastAnswer); got != "cannot handle this" {
		t.Errorf("last answer %q, want the function's last answer", got)
	}
	if letters[1].Key != nil || header(letters[1], connector.HeaderOriginalOffset) != "1" {
		t.Errorf("second dead letter: key %q, offset header %q", letters[1].Key, header(letters[1], connector.HeaderOriginalOffset))
	}
	if n := len(gw.Calls("strict")); n != 3 {
		t.Errorf("the failing batch was tried %d times, want 1 + max_retries 2", n)
	}

	// The partition moves on: later messages are delivered.
	client.Produce(testkit.Record("orders", 1, nil, []byte("good")))
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("strict")).count("orders") == 1
	}, "the next message is delivered after the dead-lettered batch")
	testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-strict")["orders"][1] == 3 },
		"partition 1 committed past the dead-lettered batch and the next message")
}

func TestDeadLetterWriteFailureKeepsTheBatchUncommitted(t *testing.T) {
	client, gw, cfg := setup(t, "payments", "payments.dlq")
	cluster := client.Cluster
	gw.SetFunctions(fn("strict", "payments"))
	gw.Handle("strict", failValues)
	cfg.MaxRetries = 0
	cfg.DeadLetterTopic = "payments.dlq"
	client.Produce(testkit.Record("payments", 2, nil, []byte("bad")))
	refused := testkit.FailProduces(cluster, "payments.dlq", 8)
	testkit.Start(t, cfg)

	testkit.Eventually(t, 30*time.Second, func() bool { return refused.Load() >= 2 }, "the dead-letter write is refused")
	if got := client.Committed("kafka-connector-strict")["payments"][2]; got > 0 {
		t.Fatalf("committed %d while the dead letter was not written", got)
	}
	letters := testkit.ReadAll(t, cluster, "payments.dlq", 1, 60*time.Second)
	if string(letters[0].Value) != "bad" {
		t.Errorf("dead letter %q", letters[0].Value)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-strict")["payments"][2] == 1 },
		"committed once the dead letter is written")
}

func TestGivingUpWithoutDeadLetterTopicCommitsAndMovesOn(t *testing.T) {
	client, gw, cfg := setup(t, "logs")
	gw.SetFunctions(fn("strict", "logs"))
	gw.Handle("strict", failValues)
	cfg.MaxRetries = 1
	client.Produce(testkit.Record("logs", 0, nil, []byte("bad")))
	testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("strict")) == 2 }, "one try and one retry")
	client.Produce(testkit.Record("logs", 0, nil, []byte("fine")))
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("strict")).count("logs") == 1 },
		"the next message is delivered")
}

func TestPartialBatchFailureRetriesFromTheFirstFailedRecord(t *testing.T) {
	client, gw, cfg := setup(t, "items")
	gw.SetFunctions(fn("picky", "items"))
	var mu sync.Mutex
	reported := false
	gw.Handle("picky", func(c *gatewaytest.Call) (int, []byte) {
		mu.Lock()
		defer mu.Unlock()
		e, _ := c.Event()
		if !reported && len(e.Records) > 0 && e.Records[0].Ckafka.Offset == 0 {
			reported = true
			// Offsets 4 and 6 failed, reported out of order.
			return http.StatusOK, []byte(`{"batchItemFailures":[{"partition":0,"offset":6},{"partition":0,"offset":4}]}`)
		}
		return http.StatusOK, []byte(`{"batchItemFailures":[]}`)
	})
	cfg.MaxMessages = 10
	var recs []*kgo.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, testkit.Record("items", 0, nil, []byte("item-"+strconv.Itoa(i))))
	}
	client.Produce(recs...)
	testkit.Start(t, cfg)

	testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("picky")) >= 2 }, "a retry after the partial failure")
	calls := gw.Calls("picky")
	first, _ := calls[0].Event()
	second, _ := calls[1].Event()
	if len(first.Records) != 10 {
		t.Fatalf("first batch has %d records, want 10", len(first.Records))
	}
	var offsets []int64
	for _, r := range second.Records {
		offsets = append(offsets, r.Ckafka.Offset)
	}
	if !slices.Equal(offsets, []int64{4, 5, 6, 7, 8, 9}) {
		t.Errorf("retry carries offsets %v, want 4..9: from the first failed record on", offsets)
	}
	if calls[1].Header.Get("X-Delivery-Attempt") != "2" || calls[1].Header.Get("X-Idempotency-Key") == calls[0].Header.Get("X-Idempotency-Key") {
		t.Errorf("retry headers: attempt %s, key %s (first key %s)", calls[1].Header.Get("X-Delivery-Attempt"),
			calls[1].Header.Get("X-Idempotency-Key"), calls[0].Header.Get("X-Idempotency-Key"))
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-picky")["items"][0] == 10 },
		"everything committed after the retry succeeded")
}

// TestLargeBatchesKeepTheirRecordsThroughRetries sends batches large
// enough to be lent to the HTTP transport and given back to the encoder
// once done (see gateway.Request.Released), through failures and partial
// successes twice in a row, while the partition goes on reading: every
// body the function receives must hold exactly its records, each with its
// own value, and every record must be delivered.
func TestLargeBatchesKeepTheirRecordsThroughRetries(t *testing.T) {
	for _, ordering := range []string{"partition", "none"} {
		t.Run(ordering, func(t *testing.T) {
			client, gw, cfg := setup(t, "big")
			gw.SetFunctions(fn("bulk", "big"))
			cfg.Ordering, cfg.MaxMessages = ordering, 10
			if ordering == "none" {
				cfg.Concurrency = 4
			}
			const perPartition = 60
			value := func(p int32, offset int64) string {
				return strings.Repeat(fmt.Sprintf("p%d-o%d;", p, offset), 6000/8)
			}
			var mu sync.Mutex
			var problems []string
			retried, partial := 0, 0
			gw.Handle("bulk", func(c *gatewaytest.Call) (int, []byte) {
				mu.Lock()
				defer mu.Unlock()
				e, err := c.Event()
				if err != nil || len(e.Records) == 0 {
					problems = append(problems, fmt.Sprintf("a body that is not an event of records (%v): %.80q", err, c.Body))
					return http.StatusBadRequest, nil
				}
				// The records are those the headers name, one after another.
				from, _ := strconv.ParseInt(c.Header.Get("X-Kafka-First-Offset"), 10, 64)
				to, _ := strconv.ParseInt(c.Header.Get("X-Kafka-Last-Offset"), 10, 64)
				if n := int64(len(e.Records)); e.Records[0].Ckafka.Offset != from || e.Records[n-1].Ckafka.Offset != to || to-from+1 != n {
					problems = append(problems, fmt.Sprintf("a body of %d records from offset %d to %d under headers naming %d to %d",
						n, e.Records[0].Ckafka.Offset, e.Records[n-1].Ckafka.Offset, from, to))
				}
				for _, r := range e.Records {
					if k := r.Ckafka; k.MsgBody != value(k.Partition, k.Offset) {
						problems = append(problems, fmt.Sprintf("partition %d offset %d: body %.40q...", k.Partition, k.Offset, k.MsgBody))
					}
				}
				attempt, _ := strconv.Atoi(c.Header.Get("X-Delivery-Attempt"))
				first := e.Records[0].Ckafka
				switch {
				case attempt == 1 && first.Offset%20 == 0:
					retried++
					return http.StatusInternalServerError, []byte("not yet")
				case attempt <= 2 && first.Offset%20 >= 10 && len(e.Records) > 2:
					// The first record succeeded, the rest is retried.
					partial++
					return http.StatusOK, fmt.Appendf(nil, `{"batchItemFailures":[{"partition":%d,"offset":%d}]}`,
						first.Partition, e.Records[1].Ckafka.Offset)
				}
				return http.StatusOK, nil
			})
			var recs []*kgo.Record
			for p := range int32(partitions) {
				for o := range int64(perPartition) {
					recs = append(recs, testkit.Record("big", p, nil, []byte(value(p, o))))
				}
			}
			client.Produce(recs...)
			testkit.Start(t, cfg)

			testkit.Eventually(t, 30*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				c := client.Committed("kafka-connector-bulk")["big"]
				return len(problems) > 0 || c[0] == perPartition && c[1] == perPartition && c[2] == perPartition
			}, "every message delivered and committed")
			mu.Lock()
			defer mu.Unlock()
			if len(problems) > 0 {
				t.Fatalf("%d bodies or records were not what was sent, such as %s", len(problems), problems[0])
			}
			if retried == 0 || partial == 0 {
				t.Fatalf("%d failed and %d partly failed calls: the test did not retry", retried, partial)
			}
			d := successes(t, gw.Calls("bulk"))
			for p := range int32(partitions) {
				if got := len(unique(d.offsets["big"][p])); got != perPartition {
					t.Errorf("partition %d: %d distinct offsets delivered, want %d", p, got, perPartition)
				}
			}
		})
	}
}

func TestAsynchronousInvocation(t *testing.T) {
	client, gw, cfg := setup(t, "async")
	gw.SetFunctions(fn("queued", "async"))
	cfg.AsynchronousInvocation = true
	cfg.CallbackURL = "http://callback.example/result"
	testkit.Start(t, cfg)
	produceSpread(client, "async", 4)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("queued")).count("async") == 12 },
		"every message posted to the queue")
	for _, c := range gw.Calls("queued") {
		if !c.Async || c.Status != http.StatusAccepted || c.Header.Get("X-Callback-Url") != cfg.CallbackURL {
			t.Errorf("call async=%v status %d callback %q", c.Async, c.Status, c.Header.Get("X-Callback-Url"))
		}
	}
}

// A gateway without a queue worker answers 404 on /async-function/: the
// retries go on, with one hint saying so, not one at every retry.
func TestAsynchronousInvocationWithoutAQueueSaysSoOnce(t *testing.T) {
	client, gw, cfg := setup(t, "unqueued")
	gw.NoQueue = true
	gw.SetFunctions(fn("queued", "unqueued"))
	cfg.AsynchronousInvocation = true
	r := testkit.Start(t, cfg)
	produceSpread(client, "unqueued", 1)
	testkit.Eventually(t, 30*time.Second, func() bool {
		return strings.Count(r.Logs(), `"msg":"invocation failed; retrying"`) >= 3*partitions
	}, "every partition retries a few times")
	if n := strings.Count(r.Logs(), "needs the gateway's queue worker"); n != 1 {
		t.Errorf("the hint about the queue worker was logged %d times, want once:\n%s", n, r.Logs())
	}
	if got := client.Committed("kafka-connector-queued")["unqueued"]; len(got) > 0 {
		t.Errorf("committed %v while every invocation failed", got)
	}
}

func TestRecordExtras(t *testing.T) {
	client, gw, cfg := setup(t, "extras")
	gw.SetFunctions(fn("curious", "extras"))
	cfg.RecordExtras = true
	testkit.Start(t, cfg)
	ts := time.UnixMilli(1767225600123)
	client.Produce(&kgo.Record{Topic: "extras", Partition: 0, Value: []byte("v"), Timestamp: ts,
		Headers: []kgo.RecordHeader{{Key: "trace-id", Value: []byte("abc")}, {Key: "raw", Value: []byte{0xff}}}},
		&kgo.Record{Topic: "extras", Partition: 0, Value: []byte("bare"), Timestamp: ts})
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("curious")).count("extras") == 2 }, "delivered")
	for _, c := range gw.Calls("curious") {
		if bytes.Contains(c.Body, []byte(`"msgBody":"bare"`)) && !bytes.Contains(c.Body, []byte(`"msgBody":"bare","timestamp":1767225600123,"headers":{}}`)) {
			t.Errorf("a message without headers: %s; want headers {} beside its timestamp", c.Body)
		}
	}
	r := successes(t, gw.Calls("curious")).records["extras"][0][0]
	if r.Timestamp == nil || *r.Timestamp != ts.UnixMilli() {
		t.Errorf("timestamp %v, want %d", r.Timestamp, ts.UnixMilli())
	}
	if r.Headers["trace-id"] != "abc" || r.Headers["raw"] != "base64:/w==" {
		t.Errorf("headers %v", r.Headers)
	}
}

func TestAnnotationsOverrideTheSettingsOfOneFunction(t *testing.T) {
	client, gw, cfg := setup(t, "tuned")
	annotated := func(name string, annotations ...string) types.Function {
		f := fn(name, "tuned")
		for i := 0; i < len(annotations); i += 2 {
			f.Annotations[annotations[i]] = annotations[i+1]
		}
		return f
	}
	gw.SetFunctions(
		annotated("small-batches", "kafka-max-messages", "3", "kafka-max-wait", "5s"),
		annotated("own-group", "kafka-group", "legacy-consumers", "kafka-max-wait", "10ms"),
		annotated("paused", "kafka-enabled", "false"),
		annotated("misconfigured", "kafka-max-messages", "lots"),
		annotated("twin-a", "kafka-group", "twins"),
		annotated("twin-b", "kafka-group", "twins"),
		annotated("plain"),
	)
	cfg.MaxWait = time.Minute // only the annotation's shorter wait or a full batch can send
	cfg.MaxMessages = 1000
	produceNumbered(client, "tuned", 0, 10)
	r := testkit.Start(t, cfg)
	metrics := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer metrics.Close()

	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("small-batches")).count("tuned") == 10
	}, "the function with kafka-max-messages=3 gets its messages")
	for _, n := range successes(t, gw.Calls("small-batches")).batches {
		if n > 3 {
			t.Errorf("batch of %d for a function with kafka-max-messages=3", n)
		}
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		return client.Committed("legacy-consumers")["tuned"][0] == 10
	}, "kafka-group=legacy-consumers is the group that commits")
	for _, name := range []string{"paused", "misconfigured", "twin-a", "twin-b"} {
		if n := len(gw.Calls(name)); n != 0 {
			t.Errorf("%s, paused, misconfigured or sharing a group, was invoked %d times", name, n)
		}
	}
	scrape := scrapeMetrics(t, metrics.URL)
	if !strings.Contains(scrape, `kafka_connector_function_config_error{function="misconfigured"} 1`) {
		t.Errorf("no config error metric for the misconfigured function in:\n%s", grep(scrape, "config_error"))
	}
	if !strings.Contains(scrape, `kafka_connector_function_config_error{function="twin-a"} 1`) {
		t.Errorf("no config error metric for a function sharing its group with another in:\n%s", grep(scrape, "config_error"))
	}
	if !strings.Contains(scrape, `kafka_connector_functions{state="invalid"} 3`) {
		t.Errorf("functions{state=invalid} is not 3:\n%s", grep(scrape, "kafka_connector_functions"))
	}
}

func TestStartPositionByTime(t *testing.T) {
	client, gw, cfg := setup(t, "history")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var recs []*kgo.Record
	for p := int32(0); p < 2; p++ {
		for i := 0; i < 6; i++ {
			recs = append(recs, &kgo.Record{Topic: "history", Partition: p, Value: []byte(fmt.Sprintf("p%d-%d", p, i)), Timestamp: base.Add(time.Duration(i) * time.Minute)})
		}
	}
	// Partition 2 holds only messages older than the start time.
	recs = append(recs, &kgo.Record{Topic: "history", Partition: 2, Value: []byte("old"), Timestamp: base})
	client.Produce(recs...)

	start := base.Add(3 * time.Minute)
	f := fn("replayer", "history")
	f.Annotations["kafka-initial-offset"] = start.Format(time.RFC3339)
	gw.SetFunctions(f)
	testkit.Start(t, cfg)

	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("replayer")).count("history") >= 6
	}, "the messages from the start time on are delivered")
	client.Produce(testkit.Record("history", 2, nil, []byte("new")))
	testkit.Eventually(t, 20*time.Second, func() bool {
		return len(successes(t, gw.Calls("replayer")).offsets["history"][2]) == 1
	}, "partition 2 starts at its end and delivers the new message")
	d := successes(t, gw.Calls("replayer"))
	for p := int32(0); p < 2; p++ {
		if !slices.Equal(d.offsets["history"][p], []int64{3, 4, 5}) {
			t.Errorf("partition %d delivered %v, want 3, 4, 5 (written at or after the start time)", p, d.offsets["history"][p])
		}
	}
	if got := d.records["history"][2][0].MsgBody; got != "new" {
		t.Errorf("partition 2 delivered %q, want only the new message", got)
	}
}

func TestLatestStartsAtTheEnd(t *testing.T) {
	client, gw, cfg := setup(t, "live")
	gw.SetFunctions(fn("live-fn", "live"))
	produceSpread(client, "live", 3)
	cfg.InitialOffset = types.StartOffset{}
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, r.Ready, "the connector is ready")
	// The start position is committed at once, so even a restart before
	// any delivery does not skip what is written in between.
	testkit.Eventually(t, 10*time.Second, func() bool {
		return client.Committed("kafka-connector-live-fn")["live"][0] == 3
	}, "the latest offset is committed as the start")
	r.Stop()
	produceSpread(client, "live", 1)
	testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("live-fn")).count("live") == 3
	}, "the messages written while the connector was down are delivered")
	d := successes(t, gw.Calls("live-fn"))
	for p := int32(0); p < partitions; p++ {
		if !slices.Equal(d.offsets["live"][p], []int64{3}) {
			t.Errorf("partition %d delivered %v, want only offset 3", p, d.offsets["live"][p])
		}
	}
}

func TestMetricsAfterARun(t *testing.T) {
	client, gw, cfg := setup(t, "counted")
	gw.SetFunctions(fn("counted-fn", "counted"))
	var mu sync.Mutex
	failed := 0
	gw.Handle("counted-fn", func(*gatewaytest.Call) (int, []byte) {
		mu.Lock()
		defer mu.Unlock()
		if failed < 2 {
			failed++
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	r := testkit.Start(t, cfg)
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()
	produceSpread(client, "counted", 20)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("counted-fn")).count("counted") == 60 }, "delivered")

	testkit.Eventually(t, 10*time.Second, func() bool {
		m := scrapeMetrics(t, srv.URL)
		return strings.Contains(m, `kafka_connector_messages_consumed_total{function="counted-fn",topic="counted"} 60`) &&
			strings.Contains(m, `kafka_connector_invocation_failures_total{function="counted-fn",topic="counted"} 2`) &&
			strings.Contains(m, `kafka_connector_retries_total{function="counted-fn",topic="counted"} 2`) &&
			strings.Contains(m, `kafka_connector_committed_offset{function="counted-fn",partition="0",topic="counted"} 20`) &&
			strings.Contains(m, `kafka_connector_consumer_lag_messages{function="counted-fn",partition="2",topic="counted"} 0`) &&
			strings.Contains(m, `kafka_connector_invocation_duration_seconds_count{function="counted-fn",status_class="5xx"} 2`) &&
			strings.Contains(m, `kafka_connector_functions{state="running"} 1`) &&
			strings.Contains(m, "\nkafka_connector_ready 1\n")
	}, "metrics show 60 consumed, 2 failures and retries, offsets committed, no lag, ready:\n%s", grep(scrapeMetrics(t, srv.URL), "kafka_connector_"))
}

func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMovedLeadersAreFollowed: every partition's leadership moves to
// another broker while the trigger consumes. The trigger learns of it from
// its fetches failing, long before sarama's metadata refresh of every ten
// minutes, and what is written afterwards is delivered, in order, nothing
// lost.
func TestMovedLeadersAreFollowed(t *testing.T) {
	client, gw, cfg := setup(t, "moving")
	gw.SetFunctions(fn("mover", "moving"))
	produceSpread(client, "moving", 1)
	testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("mover")).count("moving") == partitions },
		"the messages written before the move")

	c := client.Cluster
	for p := int32(0); p < partitions; p++ {
		to := (c.LeaderFor("moving", p) + 1) % testkit.Brokers
		if err := c.MoveTopicPartition("moving", p, to); err != nil {
			t.Fatalf("moving moving/%d to broker %d: %v", p, to, err)
		}
	}
	produceSpread(client, "moving", 1)
	testkit.Eventually(t, 30*time.Second, func() bool { return successes(t, gw.Calls("mover")).count("moving") == 2*partitions },
		"the messages written after the move")
	for p, offsets := range successes(t, gw.Calls("mover")).offsets["moving"] {
		if !slices.Equal(offsets, []int64{0, 1}) {
			t.Errorf("partition %d: offsets %v delivered, want [0 1]", p, offsets)
		}
	}
}

func TestLatestDeliversWhatIsNewToTheFunction(t *testing.T) {
	client, gw, cfg := setup(t, "growing")
	gw.SetFunctions(fn("follower", "growing,created-later"))
	cfg.InitialOffset = types.StartOffset{}
	produceSpread(client, "growing", 2) // before the function subscribed: not for it
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, r.Ready, "ready")
	produceSpread(client, "growing", 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("follower")).count("growing") == 3 },
		"the messages written after the function subscribed")

	// A partition added to the topic, and a topic created after the function
	// subscribed: all they hold is new to the function, from their first
	// message, even when its timestamp is older than the subscription, as
	// MirrorMaker and Kafka Streams write them.
	hourAgo := time.Now().Add(-time.Hour)
	old := func(topic string, p int32, value string) *kgo.Record {
		r := testkit.Record(topic, p, nil, []byte(value))
		r.Timestamp = hourAgo
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Admin.CreatePartitions(ctx, 1, "growing"); err != nil {
		t.Fatal(err)
	}
	testkit.NewClient(t, client.Cluster).Produce(old("growing", partitions, "mirrored into the new partition"),
		testkit.Record("growing", partitions, nil, []byte("in the new partition")))
	client.CreateTopic("created-later", partitions)
	client.Produce(old("created-later", 0, "mirrored into the new topic"), testkit.Record("created-later", 0, nil, []byte("in the new topic")))
	testkit.Eventually(t, 30*time.Second, func() bool {
		d := successes(t, gw.Calls("follower"))
		return slices.Equal(d.offsets["growing"][partitions], []int64{0, 1}) && slices.Equal(d.offsets["created-later"][0], []int64{0, 1})
	}, "the new partition and the new topic are delivered from their first message")

	// A partition added to the topic created later, once its subscription
	// is recorded.
	if _, err := client.Admin.CreatePartitions(ctx, 1, "created-later"); err != nil {
		t.Fatal(err)
	}
	testkit.NewClient(t, client.Cluster).Produce(old("created-later", partitions, "mirrored into a partition added later"),
		testkit.Record("created-later", partitions, nil, []byte("in a partition added later")))
	testkit.Eventually(t, 30*time.Second, func() bool {
		return slices.Equal(successes(t, gw.Calls("follower")).offsets["created-later"][partitions], []int64{0, 1})
	}, "a partition added to the topic created later is delivered from its first message")
	testkit.Eventually(t, 10*time.Second, func() bool {
		c := client.Committed("kafka-connector-follower")
		return c["growing"][partitions] == 2 && c["created-later"][0] == 2 && c["created-later"][partitions] == 2
	}, "the new partitions committed past what was delivered")
}

func TestUnreadableFailureReportRetriesTheWholeBatch(t *testing.T) {
	reports := []string{
		`{"batchItemFailures":[{"itemIdentifier":"3"}]}`,
		`{"batchItemFailures":[{"partition":"0","offset":"3"}]}`,
		`{"batchItemFailures":[{"partition":0,"offset":3}`,
	}
	for _, report := range reports {
		t.Run(report, func(t *testing.T) {
			client, gw, cfg := setup(t, "reports")
			gw.SetFunctions(fn("reporter", "reports"))
			var mu sync.Mutex
			answered := false
			gw.Handle("reporter", func(c *gatewaytest.Call) (int, []byte) {
				mu.Lock()
				defer mu.Unlock()
				if !answered {
					answered = true
					return http.StatusOK, []byte(report)
				}
				return http.StatusOK, nil
			})
			produceNumbered(client, "reports", 0, 5)
			testkit.Start(t, cfg)
			testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("reporter")) >= 2 }, "a retry")
			calls := gw.Calls("reporter")
			if !bytes.Equal(calls[0].Body, calls[1].Body) {
				t.Errorf("the retry is not the whole batch:\n%s\n%s", calls[0].Body, calls[1].Body)
			}
		})
	}
}

// A failure report that names a record outside the batch (most often a
// position, 0 to n-1, given instead of an offset) cannot say which records
// failed: the whole batch is retried, with a warning quoting the report.
func TestFailureReportNamingNoRecordOfTheBatchRetriesItWhole(t *testing.T) {
	tests := []struct {
		name   string
		report func(partition int32, first, last int64) string
	}{
		{"positions instead of offsets", func(p int32, first, last int64) string {
			return fmt.Sprintf(`{"batchItemFailures":[{"partition":%d,"offset":%d}]}`, p, last-first)
		}},
		{"another partition", func(p int32, first, last int64) string {
			return fmt.Sprintf(`{"batchItemFailures":[{"partition":%d,"offset":%d}]}`, p+1, first)
		}},
		{"past the batch, beside one in it", func(p int32, first, last int64) string {
			return fmt.Sprintf(`{"batchItemFailures":[{"partition":%d,"offset":%d},{"partition":%d,"offset":%d}]}`, p, last, p, last+100)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, gw, cfg := setup(t, "reports")
			gw.SetFunctions(fn("reporter", "reports"))
			var mu sync.Mutex
			reported := -1 // the index of the call answered with the report
			gw.Handle("reporter", func(c *gatewaytest.Call) (int, []byte) {
				mu.Lock()
				defer mu.Unlock()
				e, _ := c.Event()
				first, last := e.Records[0].Ckafka, e.Records[len(e.Records)-1].Ckafka
				if reported < 0 && first.Offset >= 5 {
					reported = len(gw.Calls("reporter"))
					return http.StatusOK, []byte(tc.report(first.Partition, first.Offset, last.Offset))
				}
				return http.StatusOK, nil
			})
			produce := func(from, to int) { produceNumbered(client, "reports", from, to) }
			// A first delivery, so that the batch reported on starts at an
			// offset other than 0, as in a partition that has been in use.
			produce(0, 5)
			r := testkit.Start(t, cfg)
			testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("reporter")).count("reports") == 5 },
				"the first five messages delivered")
			testkit.Eventually(t, 20*time.Second, func() bool { return client.Committed("kafka-connector-reporter")["reports"][0] == 5 },
				"the first five messages committed")
			produce(5, 10)
			testkit.Eventually(t, 20*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return reported >= 0 && len(gw.Calls("reporter")) > reported+1
			}, "a call after the report")
			calls := gw.Calls("reporter")
			mu.Lock()
			i := reported
			mu.Unlock()
			if !bytes.Equal(calls[i].Body, calls[i+1].Body) {
				t.Errorf("after the report the function got\n%s\nwant the whole batch again:\n%s", calls[i+1].Body, calls[i].Body)
			}
			testkit.Eventually(t, 20*time.Second, func() bool { return client.Committed("kafka-connector-reporter")["reports"][0] == 10 },
				"everything committed once the retry succeeded")
			if logs := r.Logs(); !strings.Contains(logs, "batchItemFailures names a record that is not in this batch") || !strings.Contains(logs, `"item_offset"`) {
				t.Errorf("no warning saying what the function reported in:\n%s", logs)
			}
		})
	}
}

// TestFailureReportsFoundWherever: a function's report of failed records
// counts wherever its answer puts it and however it spells the key: after
// an echo of the batch longer than the part of the answer the gateway
// client keeps, straddling that part's end, or as Go marshals a field
// without a tag. Offset 4 of 0..9 failed: the retry must carry 4..9, and
// nothing may be committed past 4 before it.
func TestFailureReportsFoundWherever(t *testing.T) {
	report := `"batchItemFailures":[{"partition":0,"offset":4}]`
	// echoFirst pads the answer so that the report starts at byte at.
	echoFirst := func(at int) []byte {
		head := `{"Records":"`
		return []byte(head + strings.Repeat("r", at-len(head)-2) + `",` + report + `}`)
	}
	tests := []struct {
		name   string
		answer []byte
	}{
		{"after a long echo", echoFirst(gateway.MaxResponseBytes + 4096)},
		{"straddling the kept part's end", echoFirst(gateway.MaxResponseBytes - 20)},
		{"key spelled as a Go field", []byte(`{"BatchItemFailures":[{"Partition":0,"Offset":4}]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, gw, cfg := setup(t, "echoes")
			gw.SetFunctions(fn("echoer", "echoes"))
			var mu sync.Mutex
			answered := false
			gw.Handle("echoer", func(c *gatewaytest.Call) (int, []byte) {
				mu.Lock()
				defer mu.Unlock()
				if !answered {
					answered = true
					return http.StatusOK, tt.answer
				}
				return http.StatusOK, []byte(`{"batchItemFailures":[]}`)
			})
			cfg.MaxMessages = 10
			var recs []*kgo.Record
			for i := range 10 {
				recs = append(recs, testkit.Record("echoes", 0, nil, []byte("item-"+strconv.Itoa(i))))
			}
			client.Produce(recs...)
			testkit.Start(t, cfg)
			testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("echoer")) >= 2 }, "a retry after the partial failure")
			second, _ := gw.Calls("echoer")[1].Event()
			var offsets []int64
			for _, r := range second.Records {
				offsets = append(offsets, r.Ckafka.Offset)
			}
			if !slices.Equal(offsets, []int64{4, 5, 6, 7, 8, 9}) {
				t.Errorf("retry carries offsets %v, want 4..9: from the failed record on", offsets)
			}
			testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-echoer")["echoes"][0] == 10 },
				"everything committed after the retry succeeded")
		})
	}
}
