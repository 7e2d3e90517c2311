package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// Scenario 1: the connector is killed with SIGKILL in mid-stream, again and
// again, and restarted each time. Nothing may be lost; duplicates may only
// come from batches delivered after the last flush of offsets or in flight.
// It reports the deliveries each crash repeated against what was delivered
// in the commit_interval before it: with the default interval, and under
// soak with a tenth of it as well.
func TestKill9MidStreamLosesNothing(t *testing.T) {
	intervals := []time.Duration{time.Second}
	if soak() {
		intervals = append(intervals, 100*time.Millisecond)
	}
	for _, interval := range intervals {
		t.Run("commit_interval="+interval.String(), func(t *testing.T) { kill9MidStream(t, interval) })
	}
}

// commitMargin is how much later than commit_interval a delivery may still
// be unflushed when the connector dies: the call's answer reaching the
// connector, the offset commit's round trip, a loaded machine.
const commitMargin = 2 * time.Second

func kill9MidStream(t *testing.T, commitInterval time.Duration) {
	const partitions = 4
	e := newEnv(t, map[string]int32{"orders": partitions})
	n, kills := scale(24000, 200000), scale(3, 10)
	subs := map[string][]string{"billing": {"orders"}, "audit": {"orders"}}
	e.gw.SetFunctions(fn("billing", "orders"), fn("audit", "orders"))
	// billing's calls are held when a kill comes, so that batches are in
	// flight at that moment; audit runs free, so that some of what it got
	// is delivered but not yet committed.
	wire := newTripwire(e.gw, "billing", "orders")
	e.gw.Behave("billing", wire.behaviour())
	samples := e.client.sampleCommits([]string{group("billing"), group("audit")}, 250*time.Millisecond)

	records := workload("orders", partitions, n, 1)
	chunk := n / (kills + 1)
	committed := func() int64 {
		var sum int64
		for _, g := range []string{group("billing"), group("audit")} {
			for _, off := range e.client.mustCommitted(g) {
				sum += off
			}
		}
		return sum
	}
	var killedAt []time.Time
	var last *process
	for round := 0; round <= kills; round++ {
		p := startConnector(t, "connector", e.settings().with("commit_interval", commitInterval.String()))
		last = p
		before := committed()
		end := min((round+1)*chunk, n)
		if round == kills {
			end = n
		}
		// Once the connector is in its groups (after a kill, only when the
		// dead member's session has expired), the chunk trickles in, so
		// that the connector is killed while it is still consuming.
		p.waitReady(60 * time.Second)
		producer := e.client.produceInBackground(records[round*chunk:end], chunk/10, 300*time.Millisecond)
		if round == kills {
			producer.wait(t)
			break
		}
		// Once this connector has committed, the next call of billing is
		// held and the connector dies with it in flight.
		testkit.Eventually(t, 90*time.Second, func() bool { return committed() > before }, "connector %d committing", round+1)
		wire.arm(e.gw.Delivered("billing") + 1)
		wire.waitHeld(t, 60*time.Second)
		p.kill9()
		killedAt = append(killedAt, time.Now())
		wire.disarm()
		producer.wait(t)
		t.Logf("kill %d: billing had %d, audit %d of %d messages", round+1,
			e.gw.Delivered("billing"), e.gw.Delivered("audit"), e.client.log.count("orders"))
	}
	e.waitDelivered(120*time.Second, subs, last)
	if code := last.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	last.assertNoCrash()

	calls := e.gw.Calls("")
	v := check(t, e.produced(), calls, e.expect(subs, samples.Stop()))
	window := commitInterval + commitMargin
	bound := dupBound(calls, killedAt, window)
	if v.Duplicates > bound {
		t.Errorf("%d duplicates, more than the %d messages delivered in the %v before the kills", v.Duplicates, bound, window)
	}
	var perKill []string
	for i, n := range repeatsByKill(calls, killedAt) {
		k := killedAt[i : i+1]
		perKill = append(perKill, fmt.Sprintf("kill %d: %d repeated, %d delivered in the commit_interval before it, %d in the %v before it",
			i+1, n, dupBound(calls, k, commitInterval), dupBound(calls, k, window), window))
	}
	t.Logf("commit_interval=%v: %s", commitInterval, strings.Join(perKill, "; "))
	e.summary(v, "%d kills, commit_interval %v, duplicate bound %d", kills, commitInterval, bound)
}

// repeatsByKill counts, for each kill, the records delivered successfully
// after it, and before the next one, that had been delivered successfully
// before it: the deliveries that crash repeated.
func repeatsByKill(calls []*call, kills []time.Time) []int {
	type delivery struct {
		function string
		p        tp
		offset   int64
	}
	first := map[delivery]time.Time{}
	for _, c := range calls {
		if !c.OK {
			continue
		}
		for _, r := range c.event.Records {
			d := delivery{c.Function, tp{r.Ckafka.Topic, r.Ckafka.Partition}, r.Ckafka.Offset}
			if at, ok := first[d]; !ok || c.Received.Before(at) {
				first[d] = c.Received
			}
		}
	}
	repeats := make([]int, len(kills))
	for _, c := range calls {
		// The last kill before the call, if any.
		i := sort.Search(len(kills), func(i int) bool { return kills[i].After(c.Received) }) - 1
		if !c.OK || i < 0 {
			continue
		}
		for _, r := range c.event.Records {
			if first[delivery{c.Function, tp{r.Ckafka.Topic, r.Ckafka.Partition}, r.Ckafka.Offset}].Before(kills[i]) {
				repeats[i]++
			}
		}
	}
	return repeats
}

// Scenario 2: three connectors share the groups; one is killed and another
// started while messages flow. Partitions move, nothing is lost, order
// within each partition is kept.
func TestRebalanceAcrossConnectorsKeepsOrder(t *testing.T) {
	const partitions = 6
	e := newEnv(t, map[string]int32{"payments": partitions})
	n := scale(30000, 300000)
	subs := map[string][]string{"ledger": {"payments"}, "fraud": {"payments"}}
	e.gw.SetFunctions(fn("ledger", "payments"), fn("fraud", "payments"))
	wire := newTripwire(e.gw, "ledger", "payments")
	e.gw.Behave("ledger", wire.behaviour())
	samples := e.client.sampleCommits([]string{group("ledger"), group("fraud")}, 250*time.Millisecond)

	var procs []*process
	for _, name := range []string{"a", "b", "c"} {
		procs = append(procs, startConnector(t, name, e.settings()))
	}
	for _, p := range procs {
		p.waitReady(60 * time.Second)
	}
	// The stream lasts long enough to run through the rebalances.
	producer := e.client.produceInBackground(workload("payments", partitions, n, 2), n/60, 250*time.Millisecond)

	wire.arm(n / 4)
	wire.waitHeld(t, 60*time.Second)
	killedAt := time.Now()
	procs[0].kill9()
	wire.disarm()
	d := startConnector(t, "d", e.settings())
	procs = append(procs[1:], d)

	producer.wait(t)
	e.waitDelivered(120*time.Second, subs, procs...)
	d.waitReady(60 * time.Second)

	// The partitions of the dead connector moved: the new one owns some.
	if claimed, _ := claimedBy(d, "payments"); len(claimed) == 0 {
		t.Errorf("the connector started after the kill never claimed a partition:\n%s", d.tail(20))
	}
	for _, p := range procs {
		if code := p.terminate(30 * time.Second); code != 0 {
			t.Errorf("%s: exit status %d after SIGTERM, want 0", p.name, code)
		}
		p.assertNoCrash()
	}
	calls := e.gw.Calls("")
	v := check(t, e.produced(), calls, e.expect(subs, samples.Stop()))
	// A rebalance lets the invocations in flight finish and commits them,
	// so only the kill may cause duplicates.
	bound := dupBound(calls, []time.Time{killedAt}, 3*time.Second)
	if v.Duplicates > bound {
		t.Errorf("%d duplicates, more than the %d messages delivered in the 3 s before the kill", v.Duplicates, bound)
	}
	e.summary(v, "1 kill and 1 new connector among 3, duplicate bound %d", bound)
}

// Scenario 3: the whole cluster stops and starts again on the same ports
// with its data. The connector reconnects by itself and carries on.
func TestBrokerRestartIsSurvived(t *testing.T) {
	const partitions = 4
	e := newEnv(t, map[string]int32{"events": partitions})
	n := scale(20000, 200000)
	subs := map[string][]string{"indexer": {"events"}, "mailer": {"events"}}
	e.gw.SetFunctions(fn("indexer", "events"), fn("mailer", "events"))
	wire := newTripwire(e.gw, "indexer", "events")
	e.gw.Behave("indexer", wire.behaviour())
	samples := e.client.sampleCommits([]string{group("indexer"), group("mailer")}, 250*time.Millisecond)

	records := workload("events", partitions, n, 3)
	p := startConnector(t, "connector", e.settings())
	p.waitReady(60 * time.Second)
	wire.arm(n / 4)
	e.client.mustProduce(records[:n/2])
	// Before the brokers go, mailer has everything committed and indexer
	// has batches in flight.
	testkit.Eventually(t, 60*time.Second, func() bool {
		var sum int64
		for _, off := range e.client.mustCommitted(group("mailer")) {
			sum += off
		}
		return sum == int64(n/2)
	}, "mailer committing the first %d messages", n/2)
	wire.waitHeld(t, 60*time.Second)

	e.kafka.Stop()
	stoppedAt := time.Now()
	wire.disarm()
	// The brokers stay away until both triggers have lost their group
	// sessions, so that the connector has to rejoin from scratch.
	for _, f := range []string{"indexer", "mailer"} {
		testkit.Eventually(t, 60*time.Second, func() bool {
			return len(p.find("cannot consume", "function", f)) > 0
		}, "%s's trigger losing its group session", f)
	}
	e.kafka.Start()
	restartedAt := time.Now()
	e.client.mustProduce(records[n/2:])
	e.waitDelivered(120*time.Second, subs, p)
	p.waitReady(60 * time.Second)

	if code := p.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	p.assertNoCrash()
	var noticed []string
	for _, l := range p.logs() {
		if (l.level() == "WARN" || l.level() == "ERROR") && l.time().After(stoppedAt) && len(noticed) < 3 {
			noticed = append(noticed, fmt.Sprintf("%s %s", l.msg(), l.str("error")))
		}
	}
	calls := e.gw.Calls("")
	v := check(t, e.produced(), calls, e.expect(subs, samples.Stop()))
	// What was delivered while the brokers were away could not be
	// committed, and is delivered again: the bound counts it with what was
	// delivered in the 3 s before they went.
	bound := dupBound(calls, []time.Time{restartedAt}, restartedAt.Sub(stoppedAt)+3*time.Second)
	if v.Duplicates > bound {
		t.Errorf("%d duplicates, more than the %d messages delivered from 3 s before the brokers stopped until they were back", v.Duplicates, bound)
	}
	e.summary(v, "1 cluster restart, duplicate bound %d; first log lines after it: %s", bound, strings.Join(noticed, " | "))
}
