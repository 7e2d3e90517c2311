package e2e

import (
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// Scenario 4: the gateway first answers 503 to every invocation, then goes
// away entirely (connection refused), then comes back. No message is
// skipped, the attempts of a batch come further and further apart, and
// delivery resumes by itself.
func TestGatewayOutageBacksOffAndResumes(t *testing.T) {
	const partitions = 4
	e := newEnv(t, map[string]int32{"clicks": partitions})
	n := scale(20000, 200000)
	subs := map[string][]string{"stats": {"clicks"}, "archive": {"clicks"}}
	e.gw.SetFunctions(fn("stats", "clicks"), fn("archive", "clicks"))
	var unavailable atomic.Bool
	for f := range subs {
		e.gw.Behave(f, func(*gatewaytest.Call, int64) (int, []byte) {
			if unavailable.Load() {
				return http.StatusServiceUnavailable, []byte("no endpoints available")
			}
			return http.StatusOK, nil
		})
	}
	initial, capped := 100*time.Millisecond, 1600*time.Millisecond
	s := e.settings().with("retry_backoff_initial", initial.String(), "retry_backoff_max", capped.String())
	p := startConnector(t, "connector", s)
	p.waitReady(60 * time.Second)

	records := workload("clicks", partitions, n, 4)
	e.client.mustProduce(records[:n/4])
	e.waitDelivered(60*time.Second, subs, p)

	// Outage, first as 503s: the attempts are seen by the gateway.
	unavailable.Store(true)
	e.client.mustProduce(records[n/4:])
	const attempts = 6
	testkit.Eventually(t, 60*time.Second, func() bool {
		for _, c := range e.gw.Calls("stats") {
			if c.attempt() >= attempts {
				return true
			}
		}
		return false
	}, "a batch of stats attempted %d times", attempts)

	// Then the gateway is gone: connections are refused.
	downAt := time.Now()
	e.gw.Down()
	testkit.Eventually(t, 60*time.Second, func() bool {
		return len(filterAfter(p.find("invocation failed; retrying", "failure", "connection refused"), downAt)) >= 2*partitions &&
			len(filterAfter(p.find("cannot list functions"), downAt)) > 0
	}, "the connector retrying against a gateway that refuses connections, and failing to list functions")
	unavailable.Store(false)
	e.gw.Up()
	e.waitDelivered(120*time.Second, subs, p)

	// The spacing of the attempts of one batch grows: each delay doubles
	// (less up to a fifth of jitter) until the cap.
	byBatch := map[string][]*call{}
	for _, c := range e.gw.Calls("stats") {
		if c.Status == http.StatusServiceUnavailable {
			key := c.Header.Get("X-Idempotency-Key")
			byBatch[key] = append(byBatch[key], c)
		}
	}
	checked := 0
	for key, cs := range byBatch {
		if len(cs) < attempts {
			continue
		}
		checked++
		sort.Slice(cs, func(i, j int) bool { return cs[i].attempt() < cs[j].attempt() })
		var gaps []time.Duration
		for i := 1; i < attempts; i++ {
			if cs[i].attempt() != cs[i-1].attempt()+1 {
				t.Errorf("%s: attempt %d came after attempt %d", key, cs[i].attempt(), cs[i-1].attempt())
			}
			gaps = append(gaps, cs[i].Received.Sub(cs[i-1].Received))
		}
		nominal := initial
		for i, gap := range gaps {
			// Timers never fire early: the gap is at least the delay
			// less its jitter.
			if gap < nominal*8/10 {
				t.Errorf("%s: retry %d came %v after the attempt before, sooner than %v less a fifth", key, i+1, gap, nominal)
			}
			// Two retries later the delay is four times as long, which
			// no jitter or scheduling noise can hide.
			if i >= 2 && gap <= 2*gaps[i-2] {
				t.Errorf("%s: retry spacing does not grow: %v", key, gaps)
			}
			nominal = min(2*nominal, capped)
		}
		if checked == 1 {
			t.Logf("spacing of the attempts of %s: %v", key, gaps)
		}
	}
	if checked == 0 {
		t.Errorf("no batch of stats was attempted %d times", attempts)
	}
	refused := filterAfter(p.find("invocation failed; retrying", "failure", "connection refused"), downAt)
	for _, l := range refused {
		if d, _ := strconv.ParseInt(l.str("retry_in"), 10, 64); time.Duration(d) > capped {
			t.Errorf("retry_in %v is over retry_backoff_max %v: %v", time.Duration(d), capped, l)
		}
	}

	if code := p.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	p.assertNoCrash()
	v := check(t, e.produced(), e.gw.Calls(""), e.expect(subs, nil))
	if v.Duplicates != 0 {
		t.Errorf("%d duplicates: a failed attempt is no delivery, so none were expected", v.Duplicates)
	}
	e.summary(v, "%d calls refused or failed during the outage", len(refused))
}

func filterAfter(lines []logLine, at time.Time) []logLine {
	var out []logLine
	for _, l := range lines {
		if l.time().After(at) {
			out = append(out, l)
		}
	}
	return out
}

// Scenario 5: one function is slower than upstream_timeout now and then,
// another fails every other call. Everything is delivered, nothing skipped.
func TestSlowAndFlakyFunctionsGetEverything(t *testing.T) {
	const partitions = 4
	e := newEnv(t, map[string]int32{"jobs": partitions})
	n := scale(20000, 200000)
	subs := map[string][]string{"slow": {"jobs"}, "flaky": {"jobs"}, "fine": {"jobs"}}
	e.gw.SetFunctions(fn("slow", "jobs"), fn("flaky", "jobs"), fn("fine", "jobs"))
	timeout := time.Second
	var timedOut atomic.Int32
	e.gw.Behave("slow", func(c *gatewaytest.Call, _ int64) (int, []byte) {
		// One batch in eight is too slow on its first attempt: the
		// function answers only once the connector has given up.
		if c.Header.Get("X-Delivery-Attempt") == "1" && batchNumber(c)%8 == 3 {
			select {
			case <-c.Context().Done():
				timedOut.Add(1)
			case <-time.After(time.Minute):
			}
		}
		return http.StatusOK, nil
	})
	e.gw.Behave("flaky", func(_ *gatewaytest.Call, n int64) (int, []byte) {
		if n%2 == 1 {
			return http.StatusInternalServerError, []byte("Traceback (most recent call last): ...")
		}
		return http.StatusOK, nil
	})
	p := startConnector(t, "connector", e.settings().with("upstream_timeout", timeout.String()))
	p.waitReady(60 * time.Second)
	e.client.mustProduce(workload("jobs", partitions, n, 5))
	e.waitDelivered(120*time.Second, subs, p)

	if timedOut.Load() == 0 {
		t.Errorf("no invocation of slow ran past upstream_timeout: the scenario proved nothing")
	}
	if lines := p.find("invocation failed; retrying", "function", "slow", "failure", "deadline exceeded"); len(lines) < int(timedOut.Load()) {
		t.Errorf("%d invocations ran past upstream_timeout, but %d log lines say so", timedOut.Load(), len(lines))
	}
	failed := 0
	for _, c := range e.gw.Calls("flaky") {
		if !c.OK {
			failed++
		}
	}
	if lines := p.find("invocation failed; retrying", "function", "flaky", "failure", "status 500"); len(lines) != failed {
		t.Errorf("flaky failed %d times, but %d log lines say so", failed, len(lines))
	}
	if code := p.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	p.assertNoCrash()
	v := check(t, e.produced(), e.gw.Calls(""), e.expect(subs, nil))
	if v.Duplicates != 0 {
		t.Errorf("%d duplicates: an answer the connector gave up on is no delivery, so none were expected", v.Duplicates)
	}
	e.summary(v, "%d invocations timed out, %d failed with 500", timedOut.Load(), failed)
}

// batchNumber numbers the batches of a partition by their first offset.
func batchNumber(c *gatewaytest.Call) int64 {
	first, _ := strconv.ParseInt(c.Header.Get("X-Kafka-First-Offset"), 10, 64)
	p, _ := strconv.ParseInt(c.Header.Get("X-Kafka-Partition"), 10, 64)
	return first/100 + p
}

// Scenario 6: a function is deleted while its batches are being retried.
// Its retries stop at once instead of waiting out their backoff, its group
// is left, and the other function on the topic never notices.
func TestDeletedFunctionStopsRetryingAtOnce(t *testing.T) {
	const partitions = 4
	e := newEnv(t, map[string]int32{"signups": partitions})
	n := scale(20000, 200000)
	e.gw.SetFunctions(fn("doomed", "signups"), fn("steady", "signups"))
	e.gw.Behave("doomed", func(*gatewaytest.Call, int64) (int, []byte) {
		return http.StatusBadGateway, []byte("function crashed")
	})
	// After its second attempt a batch of doomed waits 4.8 to 6 s: a
	// trigger that waited out its backoff would still be there then.
	initial := 3 * time.Second
	rebuild := 300 * time.Millisecond
	s := e.settings().with("retry_backoff_initial", initial.String(), "retry_backoff_max", "30s", "rebuild_interval", rebuild.String())
	p := startConnector(t, "connector", s)
	p.waitReady(60 * time.Second)
	records := workload("signups", partitions, n, 6)
	e.client.mustProduce(records[:n/2])
	e.waitDelivered(60*time.Second, map[string][]string{"steady": {"signups"}}, p)
	// Every partition of doomed is between its second attempt and its
	// third when the function is deleted.
	testkit.Eventually(t, 30*time.Second, func() bool {
		retried := map[tp]bool{}
		for _, c := range e.gw.Calls("doomed") {
			if c.attempt() == 2 {
				retried[c.partition()] = true
			}
		}
		return len(retried) == partitions
	}, "a second attempt of doomed on every partition")

	removedAt := time.Now()
	e.gw.SetFunctions(fn("steady", "signups"))
	testkit.Eventually(t, initial*8/10*2-rebuild, func() bool {
		return len(p.find("trigger stopped", "function", "doomed")) > 0
	}, "doomed's trigger stopping before its next retry was due")
	stopped := p.find("trigger stopped", "function", "doomed")[0].time()
	if members := e.client.members(group("doomed")); members != 0 {
		t.Errorf("doomed's group still has %d members after its trigger stopped", members)
	}
	if lines := p.find("stopping trigger", "function", "doomed", "reason", "gone"); len(lines) != 1 {
		t.Errorf("%d log lines say doomed's trigger stops because the function is gone, want 1", len(lines))
	}

	e.client.mustProduce(records[n/2:])
	e.waitDelivered(60*time.Second, map[string][]string{"steady": {"signups"}}, p)
	// By now every retry doomed had scheduled would have been made.
	for _, c := range e.gw.Calls("doomed") {
		if c.Received.After(removedAt) {
			t.Errorf("doomed was invoked %v after it was deleted (attempt %d of %s..%s of partition %s)",
				c.Received.Sub(removedAt), c.attempt(), c.Header.Get("X-Kafka-First-Offset"), c.Header.Get("X-Kafka-Last-Offset"), c.Header.Get("X-Kafka-Partition"))
		}
		if c.OK {
			t.Errorf("doomed succeeded once: the scenario is broken")
		}
	}
	if steadyGroup := e.client.members(group("steady")); steadyGroup != 1 {
		t.Errorf("steady's group has %d members, want 1: it must not have been disturbed", steadyGroup)
	}
	for _, msg := range []string{"stopping trigger", "restarting trigger"} {
		if restarts := p.find(msg, "function", "steady"); len(restarts) != 0 {
			t.Errorf("steady's trigger was stopped or restarted: %v", restarts)
		}
	}
	if code := p.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	p.assertNoCrash()
	v := check(t, e.produced(), e.gw.Calls(""), e.expect(map[string][]string{"steady": {"signups"}}, nil))
	if v.Duplicates != 0 {
		t.Errorf("%d duplicates for steady, want none", v.Duplicates)
	}
	e.summary(v, "doomed's trigger stopped %v after the function was deleted", stopped.Sub(removedAt).Round(time.Millisecond))
}

// Scenario 7: SIGTERM while batches are in flight. They finish, their
// offsets are committed, the exit status is 0, and a restart delivers
// none of them again.
func TestSigtermFinishesBatchesInFlight(t *testing.T) {
	const partitions = 4
	e := newEnv(t, map[string]int32{"invoices": partitions})
	n := scale(20000, 200000)
	subs := map[string][]string{"printer": {"invoices"}, "mailer": {"invoices"}}
	e.gw.SetFunctions(fn("printer", "invoices"), fn("mailer", "invoices"))
	wire := newTripwire(e.gw, "printer", "invoices")
	var abandoned atomic.Int32
	e.gw.Behave("printer", func(c *gatewaytest.Call, n int64) (int, []byte) {
		status, body := wire.behaviour()(c, n)
		if status != http.StatusOK {
			abandoned.Add(1)
		}
		return status, body
	})
	records := workload("invoices", partitions, n, 7)
	p := startConnector(t, "connector", e.settings())
	p.waitReady(60 * time.Second)
	wire.arm(n / 4)
	e.client.mustProduce(records[:n/2])
	wire.waitHeld(t, 60*time.Second)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A connector that abandoned the invocations in flight would hang up
	// on them at once; one that waits keeps them open until released.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && !p.hasExited() && abandoned.Load() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if p.hasExited() {
		t.Fatalf("the connector exited (status %d) with invocations still in flight", p.exitCode)
	}
	if abandoned.Load() != 0 {
		t.Fatalf("the connector hung up on %d invocations in flight after SIGTERM", abandoned.Load())
	}
	held := int(wire.h.waiting.Load())
	wire.disarm()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit within 30 s of SIGTERM:\n%s", p.tail(20))
	}
	if p.exitCode != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", p.exitCode)
	}
	if len(p.find("kafka-connector stopped")) != 1 || len(p.find("shutdown timeout reached")) != 0 {
		t.Errorf("the log does not end with a clean stop:\n%s", p.tail(10))
	}

	// Everything delivered is committed: the highest offset delivered to
	// each partition, plus one. The restart must not go below it.
	var floors []floor
	for f := range subs {
		committed := e.client.mustCommitted(group(f))
		floors = append(floors, floor{At: time.Now(), Group: group(f), Offsets: committed})
		for part := int32(0); part < partitions; part++ {
			pp := tp{"invoices", part}
			var next int64
			for _, c := range e.gw.Calls(f) {
				if c.OK && c.partition() == pp {
					next = max(next, c.firstOffset()+int64(len(c.event.Records)))
				}
			}
			if committed[pp] != next {
				t.Errorf("%s %s: committed %d after SIGTERM, but delivered up to %d", f, pp, committed[pp], next-1)
			}
		}
	}

	p2 := startConnector(t, "connector", e.settings())
	e.client.mustProduce(records[n/2:])
	e.waitDelivered(60*time.Second, subs, p2)
	if code := p2.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	p.assertNoCrash()
	p2.assertNoCrash()
	v := check(t, e.produced(), e.gw.Calls(""), e.expect(subs, floors))
	if v.Duplicates != 0 {
		t.Errorf("%d duplicates: a clean stop commits everything delivered, so none were expected", v.Duplicates)
	}
	e.summary(v, "%d invocations in flight at SIGTERM", held)
}
