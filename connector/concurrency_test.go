package connector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// keyLedger checks, as the function sees its calls, that under key
// ordering a message is first sent only after every earlier message of its
// key succeeded, or in the same batch behind them, and that no two calls in
// flight share a key.
type keyLedger struct {
	mu       sync.Mutex
	offsets  map[string][]int64 // every offset of a key, as produced
	finished map[int64]bool     // offsets of successful calls
	busy     map[string]bool    // keys of the calls in flight
	problems []string
}

func (l *keyLedger) enter(e types.Event) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	inBatch := map[int64]bool{}
	for _, r := range e.Records {
		k := r.Ckafka.MsgKey
		if !contains(keys, k) {
			if l.busy[k] {
				l.problems = append(l.problems, fmt.Sprintf("key %s in two calls at once", k))
			}
			keys = append(keys, k)
		}
		for _, o := range l.offsets[k] {
			if o >= r.Ckafka.Offset {
				break
			}
			if !l.finished[o] && !inBatch[o] {
				l.problems = append(l.problems, fmt.Sprintf("offset %d of key %s sent before offset %d finished", r.Ckafka.Offset, k, o))
			}
		}
		inBatch[r.Ckafka.Offset] = true
	}
	for _, k := range keys {
		l.busy[k] = true
	}
	return keys
}

func (l *keyLedger) leave(e types.Event, keys []string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.busy, k)
	}
	if ok {
		for _, r := range e.Records {
			l.finished[r.Ckafka.Offset] = true
		}
	}
}

func contains(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// TestKeyOrderHoldsUnderRetries: under ordering=key, the keys whose first
// calls fail are retried in order while the other keys go on.
func TestKeyOrderHoldsUnderRetries(t *testing.T) {
	client, gw, cfg := setup(t, "orders")
	gw.SetFunctions(fn("keyed", "orders"))
	cfg.Ordering, cfg.Concurrency, cfg.MaxMessages = "key", 8, 4
	cfg.MaxWait = 10 * time.Millisecond

	const keys, perKey = 20, 10
	ledger := &keyLedger{offsets: map[string][]int64{}, finished: map[int64]bool{}, busy: map[string]bool{}}
	var recs []*kgo.Record
	for i := range keys * perKey {
		k := fmt.Sprintf("k%02d", i%keys)
		ledger.offsets[k] = append(ledger.offsets[k], int64(i))
		recs = append(recs, testkit.Record("orders", 0, []byte(k), []byte(strconv.Itoa(i))))
	}
	// Keys k00 to k03 fail their first two attempts, every batch of them.
	failing := func(e types.Event) bool {
		for _, r := range e.Records {
			if n, _ := strconv.Atoi(strings.TrimPrefix(r.Ckafka.MsgKey, "k")); n < 4 {
				return true
			}
		}
		return false
	}
	var order struct {
		sync.Mutex
		events []string // "fail", "other" (a success without a failing key), "slow" (a success with one)
	}
	gw.Handle("keyed", func(c *gatewaytest.Call) (int, []byte) {
		e, err := c.Event()
		if err != nil {
			return http.StatusBadRequest, nil
		}
		held := ledger.enter(e)
		time.Sleep(2 * time.Millisecond) // the function's own work
		attempt, _ := strconv.Atoi(c.Header.Get("X-Delivery-Attempt"))
		fail := failing(e) && attempt <= 2
		ledger.leave(e, held, !fail)
		order.Lock()
		switch {
		case fail:
			order.events = append(order.events, "fail")
		case failing(e):
			order.events = append(order.events, "slow")
		default:
			order.events = append(order.events, "other")
		}
		order.Unlock()
		if fail {
			return http.StatusInternalServerError, []byte("not yet")
		}
		return http.StatusOK, nil
	})
	client.Produce(recs...)
	testkit.Start(t, cfg)

	testkit.Eventually(t, 30*time.Second, func() bool { return client.Committed("kafka-connector-keyed")["orders"][0] == keys*perKey },
		"every message delivered and committed")
	ledger.mu.Lock()
	if len(ledger.problems) > 0 {
		t.Errorf("key order broken: %s", strings.Join(ledger.problems[:min(5, len(ledger.problems))], "; "))
	}
	ledger.mu.Unlock()
	d := successes(t, gw.Calls("keyed"))
	if got := len(unique(d.offsets["orders"][0])); got != keys*perKey {
		t.Errorf("%d distinct offsets delivered, want %d", got, keys*perKey)
	}
	// The other keys went on while the failing ones were retried: some of
	// their batches succeeded between a failure and the next success of a
	// failing key.
	order.Lock()
	defer order.Unlock()
	between, failed := 0, false
	for _, ev := range order.events {
		switch ev {
		case "fail":
			failed = true
		case "slow":
			failed = false
		case "other":
			if failed {
				between++
			}
		}
	}
	if between == 0 {
		t.Errorf("no other key was delivered while a failing key was retried: %v", order.events)
	}
}

// TestCommitNeverPassesAnUnfinishedMessage: under ordering=none, the calls
// after a stalled one finish, but the group's committed offset, read by an
// independent client, stays at the stalled message until it finishes.
func TestCommitNeverPassesAnUnfinishedMessage(t *testing.T) {
	client, gw, cfg := setup(t, "events")
	gw.SetFunctions(fn("loose", "events"))
	// The window holds the stalled message and all that follow.
	cfg.Ordering, cfg.Concurrency, cfg.MaxMessages = "none", 10, 1
	release := make(chan struct{})
	var after atomic.Int32 // calls after the stalled one that succeeded
	gw.Handle("loose", func(c *gatewaytest.Call) (int, []byte) {
		switch first, _ := strconv.Atoi(c.Header.Get("X-Kafka-First-Offset")); {
		case first == 2:
			select {
			case <-release:
			case <-c.Context().Done():
				return http.StatusServiceUnavailable, nil
			}
		case first > 2:
			after.Add(1)
		}
		return http.StatusOK, nil
	})
	produceNumbered(client, "events", 0, 10)
	testkit.Start(t, cfg)

	testkit.Eventually(t, 20*time.Second, func() bool { return after.Load() >= 7 }, "the calls after the stalled one succeed")
	testkit.Eventually(t, 10*time.Second, func() bool {
		c := client.Committed("kafka-connector-loose")["events"][0]
		if c > 2 {
			t.Fatalf("committed %d while offset 2 is in flight", c)
		}
		return c == 2
	}, "offsets 0 and 1 committed")
	close(release)
	testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-loose")["events"][0] == 10 },
		"everything committed once the stalled call finished")
}

// TestAStalledCallHoldsOnlyItsOwnSlot: under ordering=none, while the
// oldest call is stalled, the partition's other slot goes on with the
// messages after it, up to the window (three times the batches in flight);
// with a window of exactly the batches in flight, the slot whose call
// finished first would wait for the stalled one.
func TestAStalledCallHoldsOnlyItsOwnSlot(t *testing.T) {
	client, gw, cfg := setup(t, "ticks")
	gw.SetFunctions(fn("steady", "ticks"))
	cfg.Ordering, cfg.Concurrency, cfg.MaxMessages = "none", 2, 1
	release := make(chan struct{})
	var mu sync.Mutex
	after := map[int]bool{} // offsets after the stalled one that succeeded
	gw.Handle("steady", func(c *gatewaytest.Call) (int, []byte) {
		first, _ := strconv.Atoi(c.Header.Get("X-Kafka-First-Offset"))
		if first == 0 {
			select {
			case <-release:
			case <-c.Context().Done():
				return http.StatusServiceUnavailable, nil
			}
			return http.StatusOK, nil
		}
		mu.Lock()
		defer mu.Unlock()
		after[first] = true
		return http.StatusOK, nil
	})
	produceNumbered(client, "ticks", 0, 10)
	testkit.Start(t, cfg)

	// Offsets 1 to 5: the window of 6 messages from the stalled one.
	testkit.Eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		if after[6] {
			t.Fatal("offset 6 delivered while offset 0 held a window of 6 messages")
		}
		return len(after) == 5
	}, "the other slot delivers offsets 1 to 5 while offset 0 is stalled")
	if c := client.Committed("kafka-connector-steady")["ticks"][0]; c != 0 {
		t.Fatalf("committed %d while offset 0 is in flight", c)
	}
	close(release)
	testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-steady")["ticks"][0] == 10 },
		"everything committed once the stalled call finished")
}

// TestMaxInflightIsNeverExceeded: the function never sees more calls at
// once than max_inflight, across partitions each allowed more.
func TestMaxInflightIsNeverExceeded(t *testing.T) {
	client, gw, cfg := setup(t, "jobs")
	gw.SetFunctions(fn("capped", "jobs"))
	cfg.Ordering, cfg.Concurrency, cfg.MaxInflight, cfg.MaxMessages = "none", 8, 3, 1
	cfg.MaxWait = 0
	var now, peak atomic.Int32
	gw.Handle("capped", func(c *gatewaytest.Call) (int, []byte) {
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(5 * time.Millisecond) // the function's own work
		return http.StatusOK, nil
	})
	produceSpread(client, "jobs", 30)
	testkit.Start(t, cfg)

	testkit.Eventually(t, 30*time.Second, func() bool {
		c := client.Committed("kafka-connector-capped")["jobs"]
		return c[0] == 30 && c[1] == 30 && c[2] == 30
	}, "every message delivered and committed")
	if p := peak.Load(); p > 3 {
		t.Errorf("%d calls at once, want at most max_inflight 3", p)
	}
	if p := peak.Load(); p < 2 {
		t.Errorf("at most %d call at once: the partitions did not overlap", p)
	}
}

// TestBackPressureWaitsAndIsNotARetry: a 429 with Retry-After is waited
// out and not counted against max_retries, nor as a failure or a retry in
// the metrics, and it is logged at debug level, with one info line.
func TestBackPressureWaitsAndIsNotARetry(t *testing.T) {
	client, gw, cfg := setup(t, "slow")
	gw.SetFunctions(fn("busy", "slow"))
	cfg.Ordering, cfg.Concurrency, cfg.MaxMessages = "none", 4, 1
	cfg.MaxRetries = 0 // a counted failure would give up at once
	cfg.RetryBackoffMax = 5 * time.Second
	cfg.LogLevel = "debug"
	var mu sync.Mutex
	throttled := map[string]bool{} // by idempotency key
	gw.Handle("busy", func(c *gatewaytest.Call) (int, []byte) {
		mu.Lock()
		defer mu.Unlock()
		key := c.Header.Get("X-Idempotency-Key")
		if throttled[key] {
			return http.StatusOK, nil
		}
		throttled[key] = true
		c.Reply.Set("Retry-After", "1")
		return http.StatusTooManyRequests, []byte("slow down")
	})
	produceNumbered(client, "slow", 0, 6)
	r := testkit.Start(t, cfg)

	testkit.Eventually(t, 30*time.Second, func() bool { return client.Committed("kafka-connector-busy")["slow"][0] == 6 },
		"every message delivered and committed")
	if d := successes(t, gw.Calls("busy")); d.count("slow") != 6 {
		t.Errorf("%d messages delivered, want 6: a throttled batch was given up on", d.count("slow"))
	}
	// Each throttled batch waits at least its Retry-After, as the wait the
	// connector chose says.
	waits, infos := 0, 0
	for _, line := range strings.Split(r.Logs(), "\n") {
		var l struct {
			Level   string        `json:"level"`
			Msg     string        `json:"msg"`
			RetryIn time.Duration `json:"retry_in"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || !strings.Contains(l.Msg, "slow down") {
			continue
		}
		if l.Level == "INFO" {
			infos++
			continue
		}
		waits++
		if l.RetryIn < time.Second {
			t.Errorf("a throttled batch waits %v, want at least the Retry-After of 1s: %s", l.RetryIn, line)
		}
	}
	if waits != 6 || infos != 1 {
		t.Errorf("%d waits logged at debug level and %d lines at info level for 6 throttled batches; want 6 and 1", waits, infos)
	}
	if strings.Contains(r.Logs(), "giving up") {
		t.Errorf("a throttled batch was given up on:\n%s", r.Logs())
	}
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()
	text := scrapeMetrics(t, srv.URL)
	if line := grep(text, `kafka_connector_backpressure_waits_total{function="busy",topic="slow"}`); !strings.HasSuffix(line, " 6") {
		t.Errorf("back-pressure waits: %q, want 6", line)
	}
	for _, counter := range []string{"give_ups_total", "retries_total", "invocation_failures_total"} {
		if line := grep(text, `kafka_connector_`+counter+`{function="busy"`); line != "" && !strings.HasSuffix(line, " 0") {
			t.Errorf("%s: %q, want none: back-pressure is neither a failure nor a retry", counter, line)
		}
	}
	if line := grep(text, `kafka_connector_invocation_duration_seconds_count{function="busy",status_class="throttled"}`); !strings.HasSuffix(line, " 6") {
		t.Errorf("throttled invocations: %q, want 6", line)
	}
	if line := grep(text, `status_class="4xx"`); line != "" {
		t.Errorf("back-pressure counted as a 4xx failure: %q", line)
	}
}

// TestBackPressureFindsTheFunctionLimit: without max_inflight, a function
// that accepts 2 calls at once and answers 429 beyond teaches the
// connector its limit, across the partitions, each of which would keep a
// call in flight on its own.
func TestBackPressureFindsTheFunctionLimit(t *testing.T) {
	client, gw, cfg := setup(t, "narrow")
	gw.SetFunctions(fn("watchdog", "narrow"))
	cfg.Ordering, cfg.Concurrency, cfg.MaxMessages = "none", 4, 1
	cfg.RetryBackoffInitial, cfg.RetryBackoffMax = time.Millisecond, 20*time.Millisecond
	const accepts = 2
	var inFlight atomic.Int32
	gw.Handle("watchdog", func(c *gatewaytest.Call) (int, []byte) {
		if inFlight.Add(1) > accepts {
			inFlight.Add(-1)
			return http.StatusTooManyRequests, []byte("concurrent request limit exceeded")
		}
		defer inFlight.Add(-1)
		time.Sleep(2 * time.Millisecond)
		return http.StatusOK, nil
	})
	produceSpread(client, "narrow", 100)
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 60*time.Second, func() bool {
		c := client.Committed("kafka-connector-watchdog")["narrow"]
		return c[0] == 100 && c[1] == 100 && c[2] == 100
	}, "every message delivered and committed")
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()
	text := scrapeMetrics(t, srv.URL)
	line := grep(text, `kafka_connector_inflight_limit{function="watchdog"}`)
	var limit float64
	if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &limit); err != nil || limit < 1 || limit > partitions {
		t.Errorf("the function's learnt limit: %q; want between 1 and %d, the partitions each keeping a call in flight", line, partitions)
	}
}

// TestRebalanceWithCallsInFlightLosesNothing: a second replica joins while
// the first has several batches of each partition in flight; whatever the
// calls in flight came to, every message is delivered and the group ends
// committed at the end of every partition.
func TestRebalanceWithCallsInFlightLosesNothing(t *testing.T) {
	client, gw, cfg := setup(t, "busy-topic")
	gw.SetFunctions(fn("parallel", "busy-topic"))
	cfg.Ordering, cfg.Concurrency, cfg.MaxMessages = "none", 4, 5
	const group = "kafka-connector-parallel"
	// The first calls are held until the group is rebalancing, so that the
	// rebalance finds them in flight.
	released := make(chan struct{})
	var held atomic.Int32
	gw.Handle("parallel", func(c *gatewaytest.Call) (int, []byte) {
		held.Add(1)
		defer held.Add(-1)
		select {
		case <-released:
		case <-c.Context().Done():
		}
		return http.StatusOK, nil
	})
	first := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, first.Ready, "the first replica is ready")
	produceSpread(client, "busy-topic", 100)
	testkit.Eventually(t, 20*time.Second, func() bool { return held.Load() >= 2*partitions }, "several calls of each partition in flight")
	inFlight := held.Load()
	second := testkit.Start(t, cfg)
	testkit.Eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		groups, err := client.Admin.DescribeGroups(ctx, group)
		return err == nil && strings.Contains(groups[group].State, "Rebalance")
	}, "the group rebalancing")
	close(released)
	testkit.Eventually(t, 30*time.Second, func() bool { return client.Members(group) == 2 && second.Ready() },
		"the second replica joined")
	produceSpread(client, "busy-topic", 20)
	testkit.Eventually(t, 60*time.Second, func() bool {
		d := successes(t, gw.Calls("parallel"))
		for p := int32(0); p < partitions; p++ {
			if len(unique(d.offsets["busy-topic"][p])) != 120 {
				return false
			}
		}
		return true
	}, "every message delivered across the rebalance")
	testkit.Eventually(t, 20*time.Second, func() bool {
		got := client.Committed(group)["busy-topic"]
		return got[0] == 120 && got[1] == 120 && got[2] == 120
	}, "committed at the end of every partition: %v", client.Committed(group))
	t.Logf("%d calls were in flight when the group began to rebalance", inFlight)
}
