package connector_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// onlyNewMessages checks that the function received offset `from` of every
// partition of topic and nothing older: what a "latest" function may see
// when `from` messages per partition were written before it subscribed.
func onlyNewMessages(t *testing.T, d delivered, topic string, from int64) {
	t.Helper()
	for p := int32(0); p < partitions; p++ {
		offs := d.offsets[topic][p]
		if len(offs) == 0 || offs[0] != from {
			t.Errorf("partition %d delivered offsets %v, want only %d on: the history before the subscription was replayed", p, offs, from)
		}
	}
}

// Two replicas that join the group's first generation together each commit
// the start of their own partitions. The one that reads the group's offsets
// after the other committed must not take its partitions for partitions
// added since the subscription, and replay their history.
func TestReplicasJoiningTogetherStartAtLatest(t *testing.T) {
	client, gw, cfg := setup(t, "install")
	gw.SetFunctions(fn("installed", "install"))
	cfg.InitialOffset = types.StartOffset{}
	produceSpread(client, "install", 5) // before the function subscribed
	const group = "kafka-connector-installed"
	c := client.Cluster

	// Kafka delays a new group's first rebalance so that replicas starting
	// together join one generation; kfake does not. Holding the first
	// member's SyncGroup until the second one asks to join, and then
	// answering that a rebalance is under way, puts both in one generation.
	syncHeld := make(chan struct{})
	secondJoined := make(chan struct{})
	var joins atomic.Int32
	var joinsAtHold atomic.Int32
	joinsAtHold.Store(-1)
	var closeJoined sync.Once
	c.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if req.(*kmsg.JoinGroupRequest).Group != group {
			return nil, nil, false
		}
		if n := joins.Add(1); joinsAtHold.Load() >= 0 && n > joinsAtHold.Load() {
			closeJoined.Do(func() { close(secondJoined) })
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.SyncGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if req.(*kmsg.SyncGroupRequest).Group != group {
			c.KeepControl()
			return nil, nil, false
		}
		r := req.(*kmsg.SyncGroupRequest)
		joinsAtHold.Store(joins.Load())
		close(syncHeld)
		c.SleepControl(func() { <-secondJoined })
		resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		return resp, nil, true
	})
	// Then, of the two look-ups of the group's offsets that decide the
	// starts (those that ask for every partition of the topic), the second
	// waits until the first member has committed its starts.
	committed := make(chan struct{})
	var closeCommitted sync.Once
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if req.(*kmsg.OffsetCommitRequest).Group == group {
			closeCommitted.Do(func() { close(committed) })
		}
		return nil, nil, false
	})
	var startLookups atomic.Int32
	c.ControlKey(int16(kmsg.OffsetFetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !asksForWholeTopic(req.(*kmsg.OffsetFetchRequest), group) {
			return nil, nil, false
		}
		if startLookups.Add(1) == 2 {
			c.DropControl()
			c.SleepControl(func() { <-committed })
		}
		return nil, nil, false
	})

	first := testkit.Start(t, cfg)
	select {
	case <-syncHeld:
	case <-time.After(20 * time.Second):
		t.Fatal("the first replica never synced with its group")
	}
	second := testkit.Start(t, cfg)
	testkit.Eventually(t, 30*time.Second, func() bool { return first.Ready() && second.Ready() && client.Members(group) == 2 },
		"both replicas are members of the group")
	if startLookups.Load() < 2 {
		t.Fatalf("the replicas looked up the group's offsets %d times in one generation, want 2: the test did not interleave them", startLookups.Load())
	}
	produceSpread(client, "install", 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("installed")).count("install") >= partitions },
		"the message written after the subscription is delivered in every partition")
	onlyNewMessages(t, successes(t, gw.Calls("installed")), "install", 5)
}

// A start that cannot be resolved for every partition marks none of them:
// the partitions resolved before the failure would otherwise be committed
// when the session ends, and the others taken for partitions added since.
func TestStartResolvedHalfWayIsNotRecorded(t *testing.T) {
	client, gw, cfg := setup(t, "halfway")
	gw.SetFunctions(fn("careful", "halfway"))
	cfg.InitialOffset = types.StartOffset{}
	produceSpread(client, "halfway", 5)
	c := client.Cluster
	// The look-up of the last partition fails twice: a client that tries
	// again once still fails.
	var failures atomic.Int32
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		if failures.Load() >= 2 || !asksFor(r, "halfway", partitions-1) {
			return nil, nil, false
		}
		failures.Add(1)
		return listOffsetsError(r, kerr.UnknownServerError), nil, true
	})
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 30*time.Second, func() bool { return failures.Load() == 2 && r.Ready() }, "failed look-ups, then ready")
	produceSpread(client, "halfway", 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("careful")).count("halfway") >= partitions },
		"the message written after the subscription is delivered in every partition")
	onlyNewMessages(t, successes(t, gw.Calls("careful")), "halfway", 5)
}

// The start commit is synchronous: while the coordinator refuses it,
// nothing is consumed from a start that is not recorded, and once it is
// accepted, the start is the one of the first attempt, so what was written
// in between is delivered.
func TestStartCommitThatFailsIsRetriedBeforeConsuming(t *testing.T) {
	client, gw, cfg := setup(t, "recorded")
	gw.SetFunctions(fn("recorder", "recorded"))
	cfg.InitialOffset = types.StartOffset{}
	produceSpread(client, "recorded", 5)
	const group = "kafka-connector-recorder"
	c := client.Cluster
	var refusing atomic.Bool
	refusing.Store(true)
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.OffsetCommitRequest)
		if r.Group != group || !refusing.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		return offsetCommitError(r, kerr.UnknownServerError), nil, true
	})
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return refused.Load() >= 1 }, "the start commit is refused")
	produceSpread(client, "recorded", 1) // after the subscription
	testkit.Eventually(t, 30*time.Second, func() bool {
		return refused.Load() >= 3 && strings.Count(r.Logs(), "committing the start offsets") >= 2
	}, "the session ends and the start commit is tried again")
	if n := len(gw.Calls("recorder")); n != 0 {
		t.Fatalf("%d invocations while the start was not recorded", n)
	}
	refusing.Store(false)
	testkit.Eventually(t, 30*time.Second, func() bool { return successes(t, gw.Calls("recorder")).count("recorded") >= partitions },
		"the message written after the subscription is delivered once the start is recorded")
	onlyNewMessages(t, successes(t, gw.Calls("recorder")), "recorded", 5)
	testkit.Eventually(t, 10*time.Second, func() bool {
		got := client.Committed(group)["recorded"]
		return len(got) == partitions && got[0] == 6 && got[1] == 6 && got[2] == 6
	}, "the delivered messages are committed")
}

// asksForWholeTopic reports an offset look-up of the group for every
// partition of one topic, in either shape of the request.
func asksForWholeTopic(r *kmsg.OffsetFetchRequest, group string) bool {
	if r.Group == group {
		return len(r.Topics) == 1 && len(r.Topics[0].Partitions) == partitions
	}
	for _, g := range r.Groups {
		if g.Group == group {
			return len(g.Topics) == 1 && len(g.Topics[0].Partitions) == partitions
		}
	}
	return false
}

func asksFor(r *kmsg.ListOffsetsRequest, topic string, partition int32) bool {
	for _, t := range r.Topics {
		if t.Topic != topic {
			continue
		}
		for _, p := range t.Partitions {
			if p.Partition == partition {
				return true
			}
		}
	}
	return false
}

func listOffsetsError(r *kmsg.ListOffsetsRequest, e *kerr.Error) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = e.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func offsetCommitError(r *kmsg.OffsetCommitRequest, e *kerr.Error) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = e.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
