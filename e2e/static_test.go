package e2e

import (
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// Scenario: a replica with an instance id is killed and started again at
// once under the same id. It takes its partitions back without a rebalance
// (the group's generation does not change) and deliveries resume without
// waiting for the dead member's session to time out.
func TestStaticMemberComesBackWithoutRebalance(t *testing.T) {
	const partitions = 3
	e := newEnv(t, map[string]int32{"clicks": partitions})
	subs := map[string][]string{"counter": {"clicks"}}
	e.gw.SetFunctions(fn("counter", "clicks"))
	s := e.settings().with("instance_id", "replica-0")
	records := workload("clicks", partitions, 3000, 5)

	first := startConnector(t, "first", s)
	first.waitReady(60 * time.Second)
	e.client.mustProduce(records[:1500])
	e.waitDelivered(60*time.Second, subs, first)
	testkit.Eventually(t, 30*time.Second, func() bool {
		var sum int64
		for _, off := range e.client.mustCommitted(group("counter")) {
			sum += off
		}
		return sum == 1500
	}, "the first 1500 messages committed")
	joined := first.find("joined consumer group")
	if len(joined) == 0 {
		t.Fatalf("the first replica never joined:\n%s", first.tail(20))
	}
	generation := joined[len(joined)-1].str("generation")
	first.kill9()

	restarted := time.Now()
	second := startConnector(t, "second", s)
	e.client.mustProduce(records[1500:])
	e.waitDelivered(60*time.Second, subs, second)
	var resumed time.Duration
	for _, c := range e.gw.Calls("counter") {
		if c.Received.After(restarted) {
			resumed = c.Received.Sub(restarted)
			break
		}
	}
	again := second.find("joined consumer group")
	if len(again) == 0 {
		t.Fatalf("the restarted replica never joined:\n%s", second.tail(20))
	}
	if got := again[0].str("generation"); got != generation {
		t.Errorf("the restarted replica joined generation %s, the killed one had %s: the group rebalanced", got, generation)
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return e.client.members(group("counter")) == 1 },
		"one member: the restarted replica took the dead one's place")
	if code := second.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	second.assertNoCrash()
	v := check(t, e.produced(), e.gw.Calls(""), e.expect(subs, nil))
	if v.Duplicates > 0 {
		t.Errorf("%d duplicates: everything delivered before the kill was committed", v.Duplicates)
	}
	e.summary(v, "deliveries resumed %v after the restart began, generation %s kept", resumed.Round(10*time.Millisecond), generation)
}
