package connector_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// While one replica finishes a long invocation after a rebalance began, the
// coordinator holds the JoinGroup of the replica that joins. That wait is
// part of a rebalance, not a broken connection: it must not time out.
//
// The eager assignor makes the wait certain: every member gives up its
// partitions before any rejoins. Under cooperative rebalancing the
// JoinGroup of a second round is held the same way while a member
// finishes the invocation of a partition it gives up, but the embedded
// broker, unlike Kafka, drops a member that waits in such a rejoin longer
// than its session timeout.
func TestRebalanceWaitsForALongInvocationWithoutTimingOut(t *testing.T) {
	client, gw, cfg := setup(t, "long-calls")
	gw.SetFunctions(fn("patient", "long-calls"))
	cfg.Assignor = []string{"sticky"}
	cfg.UpstreamTimeout = time.Minute
	cfg.MaxMessages = 1
	var long atomic.Bool
	gw.Handle("patient", func(c *gatewaytest.Call) (int, []byte) {
		if long.CompareAndSwap(false, true) {
			// Longer than the 30 s a read could once wait for a JoinGroup.
			select {
			case <-time.After(40 * time.Second):
			case <-c.Context().Done():
			}
		}
		return http.StatusOK, nil
	})
	first := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, first.Ready, "the first replica is ready")
	client.Produce(testkit.Record("long-calls", 0, nil, []byte("takes long")))
	testkit.Eventually(t, 20*time.Second, long.Load, "the long invocation started")
	second := testkit.Start(t, cfg)
	testkit.Eventually(t, 90*time.Second, func() bool {
		return client.Members("kafka-connector-patient") == 2 && first.Ready() && second.Ready()
	}, "both replicas are in the group once the long invocation ended")
	produceSpread(client, "long-calls", 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("patient")).count("long-calls") == 1+partitions },
		"every message delivered")
	for name, logs := range map[string]string{"first": first.Logs(), "second": second.Logs()} {
		if strings.Contains(logs, "i/o timeout") {
			t.Errorf("the %s replica timed out during the rebalance:\n%s", name, grep(logs, "i/o timeout"))
		}
	}
}

// A static member that stops cleanly leaves its group, although sarama
// keeps a static membership on close: a replica that does not come back
// under the same name must not leave its partitions unserved until its
// session times out.
func TestStaticMemberLeavesOnCleanStop(t *testing.T) {
	client, gw, cfg := setup(t, "scaled-down")
	gw.SetFunctions(fn("shrinking", "scaled-down"))
	const group = "kafka-connector-shrinking"
	a, b := cfg, cfg
	a.InstanceID, b.InstanceID = "replica-a", "replica-b"
	first := testkit.Start(t, a)
	second := testkit.Start(t, b)
	testkit.Eventually(t, 30*time.Second, func() bool { return client.Members(group) == 2 && first.Ready() && second.Ready() },
		"both replicas are members")
	first.Stop()
	if n := client.Members(group); n != 1 {
		t.Fatalf("%d members right after a clean stop, want 1: the stopped replica did not leave", n)
	}
	produceSpread(client, "scaled-down", 2)
	testkit.Eventually(t, 30*time.Second, func() bool { return successes(t, gw.Calls("shrinking")).count("scaled-down") == 2*partitions },
		"the remaining replica delivers every partition")
}
