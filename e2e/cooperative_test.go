package e2e

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// Scenario: a fourth replica joins three while a function is fed a steady
// stream and one of its invocations takes 8 s. Under the default
// cooperative-sticky assignor the partitions that the new replica does not
// take are delivered through the rebalance; under the eager sticky
// assignor every partition waits for the slow invocation. The scenario
// runs both, one after the other, and reports the longest pause of the
// partitions that stayed and of those that moved (the slow call's own
// partition aside); nothing is lost or reordered in either.
func TestScaleOutPausesOnlyMovedPartitions(t *testing.T) {
	for _, assignor := range []string{"cooperative-sticky", "sticky"} {
		t.Run(assignor, func(t *testing.T) { scaleOut(t, assignor) })
	}
}

func scaleOut(t *testing.T, assignor string) {
	const (
		topic      = "stream"
		partitions = 12
	)
	e := newEnv(t, map[string]int32{topic: partitions})
	subs := map[string][]string{"steady": {topic}}
	e.gw.SetFunctions(fn("steady", topic))
	// Calls take 100 ms, but one, made as the fourth replica starts, takes
	// 8 s: an eager rebalance waits for it.
	var slowNext atomic.Bool
	slowPartition := make(chan int32, 1)
	e.gw.Behave("steady", func(c *gatewaytest.Call, _ int64) (int, []byte) {
		d := 100 * time.Millisecond
		if slowNext.CompareAndSwap(true, false) {
			d = 8 * time.Second
			p, _ := strconv.Atoi(c.Header.Get("X-Kafka-Partition"))
			slowPartition <- int32(p)
		}
		select {
		case <-time.After(d):
		case <-c.Context().Done():
		}
		return http.StatusOK, nil
	})
	s := e.settings().with("assignor", assignor)
	var procs []*process
	for _, name := range []string{"a", "b", "c"} {
		procs = append(procs, startConnector(t, name, s))
	}
	for _, p := range procs {
		p.waitReady(60 * time.Second)
	}
	// About 1,000 messages a second for 20 s, in small steps: every
	// partition has a batch to deliver whenever its last call ends.
	const n = 20000
	producer := e.client.produceInBackground(workload(topic, partitions, n, 11), 20, 20*time.Millisecond)
	testkit.Eventually(t, 60*time.Second, func() bool { return e.gw.Delivered("steady", topic) >= n/4 },
		"a quarter of the stream delivered before the fourth replica starts")

	slowNext.Store(true)
	slow := <-slowPartition
	joining := time.Now()
	d := startConnector(t, "d", s)
	procs = append(procs, d)
	var taken map[int32]bool
	var settled time.Time
	testkit.Eventually(t, 60*time.Second, func() bool {
		taken, settled = claimedBy(d, topic)
		return len(taken) == partitions/4
	}, "the fourth replica takes its share of the partitions")
	producer.wait(t)
	e.waitDelivered(120*time.Second, subs, procs...)

	for _, p := range procs {
		if code := p.terminate(30 * time.Second); code != 0 {
			t.Errorf("%s: exit status %d after SIGTERM, want 0", p.name, code)
		}
		p.assertNoCrash()
	}
	calls := e.gw.Calls("steady")
	v := check(t, e.produced(), calls, e.expect(subs, nil))
	// The longest gap between two deliveries of a partition, over the
	// rebalance and the two seconds after it.
	pause := map[bool]time.Duration{} // by whether the partition moved
	byPartition := map[int32][]time.Time{}
	for _, c := range calls {
		if c.OK {
			p := c.partition().Partition
			byPartition[p] = append(byPartition[p], c.Received)
		}
	}
	for p, times := range byPartition {
		if p == slow {
			continue // its own call is the slow one
		}
		slices.SortFunc(times, time.Time.Compare)
		for i := 1; i < len(times); i++ {
			if times[i].After(joining) && times[i-1].Before(settled.Add(2*time.Second)) {
				pause[taken[p]] = max(pause[taken[p]], times[i].Sub(times[i-1]))
			}
		}
	}
	e.summary(v, "assignor %s: the rebalance took %v; longest pause of the partitions that stayed %v, of those that moved %v (partition %d, moved %v, had the 8 s call)",
		assignor, settled.Sub(joining).Round(10*time.Millisecond), pause[false].Round(10*time.Millisecond),
		pause[true].Round(10*time.Millisecond), slow, taken[slow])
}

// claimedBy returns the partitions of topic that the replica claimed, in
// the sessions it joined and in later rebalances, and when it last did.
func claimedBy(p *process, topic string) (map[int32]bool, time.Time) {
	claimed := map[int32]bool{}
	var last time.Time
	for _, l := range p.find("joined consumer group") {
		// claims reads map[topic:[0 4 8]].
		_, list, found := strings.Cut(l.str("claims"), topic+":[")
		if !found {
			continue
		}
		list, _, _ = strings.Cut(list, "]")
		for _, f := range strings.Fields(list) {
			if n, err := strconv.Atoi(f); err == nil {
				claimed[int32(n)] = true
				last = l.time()
			}
		}
	}
	for _, l := range p.find("claimed partition in a rebalance", "topic", topic) {
		if n, err := strconv.Atoi(l.str("partition")); err == nil {
			claimed[int32(n)] = true
			last = l.time()
		}
	}
	return claimed, last
}
