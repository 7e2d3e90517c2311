package e2e

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// Scenario: under ordering=key, with several batches of a partition in
// flight at once, the connector is killed with SIGKILL mid-stream and
// started again. Nothing is lost, and every key's messages are first
// delivered in their order.
func TestKill9WithKeyOrderingLosesNothing(t *testing.T) {
	const partitions = 4
	e := newEnv(t, map[string]int32{"carts": partitions})
	n := scale(12000, 120000)
	subs := map[string][]string{"cart": {"carts"}}
	e.gw.SetFunctions(fn("cart", "carts"))
	wire := newTripwire(e.gw, "cart", "carts")
	e.gw.Behave("cart", wire.behaviour())
	samples := e.client.sampleCommits([]string{group("cart")}, 250*time.Millisecond)
	s := e.settings().with("ordering", "key", "concurrency", "8", "max_messages", "20")

	// Forty keys, so that each partition holds long runs of every key.
	records := workload("carts", partitions, n, 7)
	for i, r := range records {
		if bytes.HasPrefix(r.Key, []byte("key-")) {
			r.Key = fmt.Appendf(nil, "cart-%d", i%40)
		}
	}
	committed := func() int64 {
		var sum int64
		for _, off := range e.client.mustCommitted(group("cart")) {
			sum += off
		}
		return sum
	}
	first := startConnector(t, "first", s)
	first.waitReady(60 * time.Second)
	producer := e.client.produceInBackground(records, n/20, 100*time.Millisecond)
	testkit.Eventually(t, 90*time.Second, func() bool { return committed() > 0 }, "the first connector committing")
	wire.arm(e.gw.Delivered("cart") + 1)
	wire.waitHeld(t, 60*time.Second)
	first.kill9()
	killedAt := time.Now()
	wire.disarm()

	second := startConnector(t, "second", s)
	producer.wait(t)
	e.waitDelivered(120*time.Second, subs, second)
	if code := second.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	second.assertNoCrash()

	calls := e.gw.Calls("")
	expect := e.expect(subs, samples.Stop())
	expect.keyOrder = true
	v := check(t, e.produced(), calls, expect)
	bound := dupBound(calls, []time.Time{killedAt}, 3*time.Second)
	if v.Duplicates > bound {
		t.Errorf("%d duplicates, more than the %d messages delivered in the 3 s before the kill", v.Duplicates, bound)
	}
	e.summary(v, "ordering=key, concurrency=8, 1 kill, duplicate bound %d", bound)
}
