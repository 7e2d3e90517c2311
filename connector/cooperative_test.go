package connector_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// When a fourth replica joins three, cooperative rebalancing moves only
// the partitions it takes: the others keep their claims and go on being
// delivered while a moved partition's invocation is still in flight, which
// under eager rebalancing stops every partition of the group. Nothing is
// lost or reordered across the move.
func TestCooperativeRebalanceKeepsUnmovedPartitionsFlowing(t *testing.T) {
	const (
		topic = "steady"
		n     = 12 // partitions
		group = "kafka-connector-steady"
	)
	cluster := testkit.Cluster(t, n, topic)
	client := testkit.NewClient(t, cluster)

	// Each replica has a gateway of its own, so that every delivery says
	// which replica made it. Once holdOn names a partition, the next call
	// of that partition waits for release.
	var (
		mu       sync.Mutex
		holdOn   = int32(-1)
		held     = make(chan struct{})
		release  = make(chan struct{})
		holdOnce sync.Once
	)
	replica := func(name string) (*gatewaytest.Gateway, *testkit.Running) {
		gw, url := testkit.Gateway(t)
		gw.SetFunctions(fn("steady", topic))
		gw.Handle("steady", func(c *gatewaytest.Call) (int, []byte) {
			p, _ := strconv.Atoi(c.Header.Get("X-Kafka-Partition"))
			mu.Lock()
			hold := int32(p) == holdOn
			if hold {
				holdOn = -1
			}
			mu.Unlock()
			if hold {
				holdOnce.Do(func() { close(held) })
				select {
				case <-release:
				case <-c.Context().Done():
				}
			}
			return http.StatusOK, nil
		})
		cfg := testkit.Config(t, cluster, url)
		cfg.InstanceID = name
		cfg.UpstreamTimeout = time.Minute // the held call must not time out
		return gw, testkit.Start(t, cfg)
	}
	settled := func(members int) func() bool {
		return func() bool {
			owners, _, state := client.Assignment(group, topic)
			return state == "Stable" && len(owners) == n && len(slices.Compact(slices.Sorted(maps.Values(owners)))) == members
		}
	}
	round := 0
	produceRound := func() {
		var recs []*kgo.Record
		for p := int32(0); p < n; p++ {
			recs = append(recs, testkit.Record(topic, p, nil, []byte(fmt.Sprintf("p%d-r%d", p, round))))
		}
		client.Produce(recs...)
		round++
	}
	gateways := map[string]*gatewaytest.Gateway{}
	replicas := map[string]*testkit.Running{}
	for _, name := range []string{"replica-a", "replica-b", "replica-c"} {
		gw, r := replica(name)
		gateways[name] = gw
		replicas[name] = r
	}
	testkit.Eventually(t, 30*time.Second, settled(3), "three replicas share the partitions")
	before, assignor, _ := client.Assignment(group, topic)
	if assignor != "cooperative-sticky" {
		t.Fatalf("the group uses the %q assignor, want cooperative-sticky", assignor)
	}
	// delivered returns, by partition, the offsets delivered so far in the
	// order they arrived, and which replica delivered each.
	delivered := func() (map[int32][]int64, map[int32][]string) {
		type call struct {
			replica string
			c       *gatewaytest.Call
		}
		var calls []call
		for name, gw := range gateways {
			for _, c := range gw.Calls("steady") {
				calls = append(calls, call{name, c})
			}
		}
		slices.SortFunc(calls, func(a, b call) int { return a.c.Received.Compare(b.c.Received) })
		offsets, by := map[int32][]int64{}, map[int32][]string{}
		for _, c := range calls {
			if c.c.Status != http.StatusOK {
				continue
			}
			e, err := c.c.Event()
			if err != nil {
				t.Fatalf("invocation body is not an event: %v", err)
			}
			for _, r := range e.Records {
				offsets[r.Ckafka.Partition] = append(offsets[r.Ckafka.Partition], r.Ckafka.Offset)
				by[r.Ckafka.Partition] = append(by[r.Ckafka.Partition], c.replica)
			}
		}
		return offsets, by
	}
	// reached reports whether partition p's message of the last round was
	// delivered.
	reached := func(offsets map[int32][]int64, p int32, rounds int) bool {
		return slices.Contains(offsets[p], int64(rounds-1))
	}
	produceRound()
	testkit.Eventually(t, 20*time.Second, func() bool {
		offsets, _ := delivered()
		for p := int32(0); p < n; p++ {
			if !reached(offsets, p, round) {
				return false
			}
		}
		return true
	}, "the first round is delivered")

	// An invocation of one of replica-a's partitions stays in flight.
	var holdPartition int32 = -1
	for p := int32(0); p < n; p++ {
		if before[p] == "replica-a" {
			holdPartition = p
			break
		}
	}
	mu.Lock()
	holdOn = holdPartition
	mu.Unlock()
	produceRound()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatalf("the invocation of partition %d to hold did not arrive", holdPartition)
	}

	// What each replica releases from here on: the three replicas' own
	// start moved partitions too, and those releases say nothing of this
	// rebalance.
	since := map[string]int{}
	for name, r := range replicas {
		since[name] = len(r.Logs())
	}
	released := func(name string) map[int32]bool { return releasedIn(replicas[name].Logs()[since[name]:]) }
	gw, fourth := replica("replica-d")
	gateways["replica-d"] = gw
	testkit.Eventually(t, 30*time.Second, fourth.Ready,
		"the fourth replica joins while an invocation is in flight (an eager rebalance waits for it)")
	// While a moved partition waits for the held invocation, those that
	// stay deliver the next round: every partition but the held one and
	// those released so far, once at least n/4-1 are (the held one may be
	// the n/4-th).
	produceRound()
	heldRound := round
	var during map[int32][]int64
	var duringBy map[int32][]string
	testkit.Eventually(t, 20*time.Second, func() bool {
		gone := map[int32]bool{}
		for name := range replicas {
			maps.Copy(gone, released(name))
		}
		if len(gone) < n/4-1 {
			return false
		}
		during, duringBy = delivered()
		for p := int32(0); p < n; p++ {
			if p != holdPartition && !gone[p] && !reached(during, p, heldRound) {
				return false
			}
		}
		return true
	}, "the partitions that do not move are delivered while a moved one's invocation is in flight")
	close(release)

	testkit.Eventually(t, 30*time.Second, settled(4), "four replicas share the partitions")
	produceRound()
	var offsets map[int32][]int64
	testkit.Eventually(t, 30*time.Second, func() bool {
		offsets, _ = delivered()
		for p := int32(0); p < n; p++ {
			if !reached(offsets, p, round) {
				return false
			}
		}
		return true
	}, "every round is delivered once the partitions have moved")
	after, _, _ := client.Assignment(group, topic)
	moved := 0
	for p := int32(0); p < n; p++ {
		if after[p] != before[p] {
			moved++
			if !released(before[p])[p] {
				t.Errorf("partition %d moved from %s to %s, which did not log releasing it", p, before[p], after[p])
			}
		} else if p != holdPartition {
			// It kept its claim: it went on delivering during the hold, and
			// its worker never stopped.
			if released(before[p])[p] {
				t.Errorf("partition %d stayed with %s, which released it in the rebalance", p, before[p])
			}
			if !reached(during, p, heldRound) {
				t.Errorf("partition %d stayed with %s but was not delivered while partition %d's invocation was held", p, before[p], holdPartition)
			} else if got := duringBy[p][len(duringBy[p])-1]; got != before[p] {
				t.Errorf("partition %d was delivered by %s during the rebalance, want %s, which kept it", p, got, before[p])
			}
		}
		// The first delivery of every offset comes in offset order.
		var first []int64
		for _, o := range offsets[p] {
			if !slices.Contains(first, o) {
				first = append(first, o)
			}
		}
		if !inOrder(first, round) {
			t.Errorf("partition %d: offsets delivered %v, want 0 to %d in order", p, offsets[p], round-1)
		}
		if len(offsets[p]) != round {
			t.Logf("partition %d: %d deliveries of %d messages", p, len(offsets[p]), round)
		}
	}
	if moved != n/4 {
		t.Errorf("%d partitions moved to the fourth replica, want %d: %v became %v", moved, n/4, before, after)
	}
}

// releasedIn returns the partitions a replica's logs say it released in a
// rebalance.
func releasedIn(logs string) map[int32]bool {
	out := map[int32]bool{}
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			Msg       string `json:"msg"`
			Partition *int32 `json:"partition"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "released partition in a rebalance" && l.Partition != nil {
			out[*l.Partition] = true
		}
	}
	return out
}

// Under cooperative rebalancing the session goes on when a partition is
// revoked, so only the claim's end can tell a worker that is retrying a
// failing batch to stop. It stops between attempts, commits nothing of the
// batch, and the partition moves without waiting out the rebalance timeout.
func TestCooperativeRevocationStopsRetriesBetweenAttempts(t *testing.T) {
	const (
		topic = "failing"
		group = "kafka-connector-failing"
	)
	client, gw, cfg := setup(t, topic)
	gw.SetFunctions(fn("failing", topic))
	var healthy atomic.Bool
	gw.Handle("failing", func(*gatewaytest.Call) (int, []byte) {
		if healthy.Load() {
			return http.StatusOK, nil
		}
		return http.StatusInternalServerError, nil
	})
	a, b := cfg, cfg
	a.InstanceID, b.InstanceID = "replica-a", "replica-b"
	testkit.Start(t, a)
	testkit.Eventually(t, 30*time.Second, func() bool {
		owners, _, state := client.Assignment(group, topic)
		return state == "Stable" && len(owners) == partitions
	}, "the first replica owns every partition")
	produceSpread(client, topic, 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return len(gw.Calls("failing")) >= 3*partitions },
		"every partition's batch is being retried")

	// Far sooner than the rebalance timeout (60 s), which is how long the
	// group waits for a worker that does not see its claim end.
	testkit.Start(t, b)
	testkit.Eventually(t, 30*time.Second, func() bool {
		owners, _, state := client.Assignment(group, topic)
		n := 0
		for _, o := range owners {
			if o == "replica-b" {
				n++
			}
		}
		return state == "Stable" && len(owners) == partitions && n > 0
	}, "the second replica takes partitions from the first, which is retrying them")
	if got := client.Committed(group)[topic]; len(got) != 0 {
		for p, o := range got {
			if o != 0 {
				t.Errorf("partition %d committed at %d while its only message failed", p, o)
			}
		}
	}
	healthy.Store(true)
	testkit.Eventually(t, 30*time.Second, func() bool { return successes(t, gw.Calls("failing")).count(topic) >= partitions },
		"every message delivered once the function recovers")
	testkit.Eventually(t, 30*time.Second, func() bool {
		got := client.Committed(group)[topic]
		for p := int32(0); p < partitions; p++ {
			if got[p] != 1 {
				return false
			}
		}
		return true
	}, "every partition committed past its message")
}

// An install whose replicas rebalance eagerly (sticky) is upgraded in two
// rollouts, as the README says: a replica offering only cooperative-sticky
// cannot join their groups, one offering both can, and once the eager
// replicas are gone the group agrees on cooperative-sticky with replicas of
// the default.
func TestUpgradeFromEagerGroupsInTwoRollouts(t *testing.T) {
	const (
		topic = "upgraded"
		group = "kafka-connector-upgraded"
	)
	client, gw, cfg := setup(t, topic)
	gw.SetFunctions(fn("upgraded", topic))
	with := func(instance string, assignor ...string) config.Config {
		c := cfg
		c.InstanceID, c.Assignor = instance, assignor
		return c
	}
	members := func(want int, assignor string) func() bool {
		return func() bool {
			owners, got, state := client.Assignment(group, topic)
			return state == "Stable" && len(owners) == partitions && got == assignor && client.Members(group) == want
		}
	}
	delivers := func(what string) {
		t.Helper()
		before := successes(t, gw.Calls("upgraded")).count(topic)
		produceSpread(client, topic, 2)
		testkit.Eventually(t, 20*time.Second, func() bool {
			return successes(t, gw.Calls("upgraded")).count(topic) >= before+2*partitions
		}, "every message delivered %s", what)
	}

	old := testkit.Start(t, with("old", "sticky"))
	testkit.Eventually(t, 30*time.Second, members(1, "sticky"), "the eager replica owns the group")
	early := testkit.Start(t, with("early"))
	testkit.Eventually(t, 30*time.Second, func() bool { return strings.Contains(early.Logs(), "cannot consume; joining the group again") },
		"a replica offering only cooperative-sticky is refused by the eager group")
	if n := client.Members(group); n != 1 {
		t.Fatalf("%d members, want only the eager one", n)
	}
	early.Stop()

	testkit.Start(t, with("bridge", "cooperative-sticky", "sticky"))
	testkit.Eventually(t, 30*time.Second, members(2, "sticky"), "the first rollout's replica joins the eager group")
	delivers("by the eager and the first rollout's replicas")
	old.Stop()
	testkit.Eventually(t, 30*time.Second, members(1, "cooperative-sticky"), "without the eager replica the group agrees on cooperative-sticky")

	testkit.Start(t, with("final"))
	testkit.Eventually(t, 30*time.Second, members(2, "cooperative-sticky"), "the second rollout's replica joins")
	delivers("by the two rollouts' replicas")
}
