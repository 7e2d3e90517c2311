package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// Scenario: exactly-once answers. A function answers every message with a
// record naming it; the connector writes the answers to a response topic
// in transactions. It is killed with SIGKILL several times in mid-stream,
// then a second replica starts while the first is frozen (SIGSTOP) with a
// transaction open and an invocation in flight, takes its partitions and
// fences it; the first is resumed. A read_committed reader of the response
// topic then finds every input message's answer exactly once, and the
// frozen replica's late transaction failed.
func TestExactlyOnceAnswersThroughKillsAndAFrozenReplica(t *testing.T) {
	const partitions = 4
	sc := newAnswering(t, partitions, "exactly-once")
	e, wire, subs := sc.e, sc.wire, sc.subs
	n, kills := scale(4000, 40000), scale(3, 10)
	// Transactions stay open for a while, so that kills and the freeze
	// find answers written but not committed; and a frozen invocation does
	// not time out when its process resumes.
	s := e.settings().with("commit_interval", "2s", "upstream_timeout", "60s", "max_messages", "20")
	committed := sc.committed
	records := workload("orders", partitions, n, 3)
	chunk := n / (kills + 2)

	// SIGKILL with an invocation in flight and answers in an open
	// transaction, again and again.
	sc.killMidStream(t, s, records, chunk, kills)

	// A replica frozen with an invocation in flight while another takes
	// its partitions.
	a := startConnector(t, "a", s)
	a.waitReady(60 * time.Second)
	producer := e.client.produceInBackground(records[kills*chunk:], chunk/20, 200*time.Millisecond)
	before := committed()
	testkit.Eventually(t, 90*time.Second, func() bool { return committed() > before }, "the replica to freeze committing")
	wire.arm(e.gw.Delivered("enrich") + 1)
	wire.waitHeld(t, 60*time.Second)
	a.signal(syscall.SIGSTOP)
	frozen := time.Now()
	b := startConnector(t, "b", s)
	wire.disarm() // a's held call answers, but a cannot read it yet
	testkit.Eventually(t, 60*time.Second, func() bool { return e.client.members(group("enrich")) == 1 },
		"the frozen replica's session expires and the other takes its partitions")
	b.waitReady(60 * time.Second)
	testkit.Eventually(t, 60*time.Second, func() bool {
		claimed, _ := claimedBy(b, "orders")
		return len(claimed) == partitions
	}, "the second replica claims every partition")
	a.signal(syscall.SIGCONT)
	t.Logf("replica a frozen for %v", time.Since(frozen).Round(time.Millisecond))
	testkit.Eventually(t, 60*time.Second, func() bool {
		return len(a.find("cannot write the answer in the partition's transaction")) > 0 ||
			len(a.find("cannot commit the transaction of the partition's answers and offsets")) > 0
	}, "the resumed replica's late transaction fails:\n%s", a.tail(20))
	producer.wait(t)
	e.waitDelivered(120*time.Second, subs, a, b)

	// Every transaction commits; then both stop cleanly.
	ends := sc.committedToTheEnd(t)
	for _, p := range []*process{a, b} {
		if code := p.terminate(30 * time.Second); code != 0 {
			t.Errorf("%s: exit status %d after SIGTERM, want 0", p.name, code)
		}
		p.assertNoCrash()
	}

	missing, dups, unasked := tally(e.readCommitted("orders.out", partitions), ends)
	if missing > 0 || dups > 0 || unasked > 0 {
		t.Errorf("read_committed: %d answers missing, %d written twice, %d unasked for", missing, dups, unasked)
	}
	calls := e.gw.Calls("")
	redelivered := 0
	seen := map[string]bool{}
	for _, c := range calls {
		if !c.OK {
			continue
		}
		for _, r := range c.event.Records {
			k := fmt.Sprintf("%s/%d/%d", r.Ckafka.Topic, r.Ckafka.Partition, r.Ckafka.Offset)
			if seen[k] {
				redelivered++
			}
			seen[k] = true
		}
	}
	t.Logf("SUMMARY exactly-once answers: %d messages, %d kills and a freeze, %d deliveries repeated, each answer read once", n, kills, redelivered)
}

// Scenario: at-least-once answers. The same function, its answers written
// at least once, the connector killed with SIGKILL several times with an
// invocation in flight and the answer of the batch before it possibly
// still being written: every input message's answer is read at least once,
// and each committed offset's answer was written before the commit.
func TestAtLeastOnceAnswersThroughKills(t *testing.T) {
	sc := newAnswering(t, 4, "at-least-once")
	n, kills := scale(2000, 20000), scale(2, 6)
	s := sc.e.settings().with("max_messages", "20")
	records := workload("orders", 4, n, 3)
	chunk := n / (kills + 1)
	sc.killMidStream(t, s, records, chunk, kills)
	a := startConnector(t, "a", s)
	a.waitReady(60 * time.Second)
	sc.e.client.produceInBackground(records[kills*chunk:], chunk/20, 200*time.Millisecond).wait(t)
	sc.e.waitDelivered(120*time.Second, sc.subs, a)
	ends := sc.committedToTheEnd(t)
	if code := a.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	a.assertNoCrash()

	missing, copies, unasked := tally(sc.e.readCommitted("orders.out", 4), ends)
	if missing > 0 || unasked > 0 {
		t.Errorf("%d answers missing, %d unasked for", missing, unasked)
	}
	t.Logf("SUMMARY at-least-once answers: %d messages, %d kills, %d answers written again", n, kills, copies)
}

// answering is the scenario of both tests: the function enrich answers
// every message of orders with a record naming it, written to orders.out,
// and a tripwire holds a call when armed.
type answering struct {
	e    *env
	wire *tripwire
	subs map[string][]string
}

func newAnswering(t *testing.T, partitions int32, delivery string) *answering {
	e := newEnv(t, map[string]int32{"orders": partitions, "orders.out": partitions})
	f := fn("enrich", "orders")
	f.Annotations[types.AnnotationResponseTopic] = "orders.out"
	f.Annotations[types.AnnotationResponseDelivery] = delivery
	e.gw.SetFunctions(f)
	wire := newTripwire(e.gw, "enrich", "orders")
	e.gw.Behave("enrich", func(c *gatewaytest.Call, k int64) (int, []byte) {
		if status, _ := wire.behaviour()(c, k); status != http.StatusOK {
			return status, nil
		}
		return echoAnswer(c)
	})
	return &answering{e: e, wire: wire, subs: map[string][]string{"enrich": {"orders"}}}
}

// committed is the sum of the group's committed offsets.
func (a *answering) committed() int64 {
	var sum int64
	for _, off := range a.e.client.mustCommitted(group("enrich")) {
		sum += off
	}
	return sum
}

// killMidStream runs a connector with settings s kills times, each on the
// next chunk of records: it writes the chunk, waits for a commit and for a
// call to be held in flight, and kills the connector with SIGKILL.
func (a *answering) killMidStream(t *testing.T, s settings, records []*kgo.Record, size, kills int) {
	for round := range kills {
		chunk := records[round*size : (round+1)*size]
		p := startConnector(t, "a", s)
		before := a.committed()
		p.waitReady(60 * time.Second)
		producer := a.e.client.produceInBackground(chunk, len(chunk)/20, 200*time.Millisecond)
		testkit.Eventually(t, 90*time.Second, func() bool { return a.committed() > before }, "connector %d committing", round+1)
		a.wire.arm(a.e.gw.Delivered("enrich") + 1)
		a.wire.waitHeld(t, 60*time.Second)
		p.kill9()
		a.wire.disarm()
		producer.wait(t)
	}
}

// committedToTheEnd waits for the group to commit every partition of
// orders to its end, and returns the ends.
func (a *answering) committedToTheEnd(t *testing.T) map[tp]int64 {
	ends := a.e.endOffsets("orders")
	testkit.Eventually(t, 60*time.Second, func() bool {
		got := a.e.client.mustCommitted(group("enrich"))
		for p, end := range ends {
			if got[p] != end {
				return false
			}
		}
		return true
	}, "the group commits every partition to its end")
	return ends
}

// tally counts, among the answers read, the input offsets below ends that
// have none, the copies beyond one, and the answers to nothing asked.
func tally(answers map[string]int, ends map[tp]int64) (missing, copies, unasked int) {
	for p, end := range ends {
		for o := int64(0); o < end; o++ {
			v := fmt.Sprintf("%s/%d", p, o)
			switch c := answers[v]; {
			case c == 0:
				missing++
			case c > 1:
				copies += c - 1
			}
			delete(answers, v)
		}
	}
	return missing, copies, len(answers)
}

// echoAnswer answers a batch with one record per message whose value names
// it: topic/partition/offset.
func echoAnswer(c *gatewaytest.Call) (int, []byte) {
	var ev types.Event
	if err := json.Unmarshal(c.Body, &ev); err != nil {
		return http.StatusBadRequest, nil
	}
	type rec struct {
		Value string `json:"value"`
	}
	out := struct {
		Records []rec `json:"records"`
	}{Records: []rec{}}
	for _, r := range ev.Records {
		out.Records = append(out.Records, rec{Value: fmt.Sprintf("%s/%d/%d", r.Ckafka.Topic, r.Ckafka.Partition, r.Ckafka.Offset)})
	}
	b, _ := json.Marshal(out)
	return http.StatusOK, b
}

// endOffsets returns the end offset of every partition of topic.
func (e *env) endOffsets(topic string) map[tp]int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := e.client.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		e.t.Fatalf("listing the end offsets of %s: %v", topic, err)
	}
	out := map[tp]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[tp{o.Topic, o.Partition}] = o.Offset })
	return out
}

// readCommitted counts the records of topic by value as a read_committed
// reader sees them once nothing more is written: it writes an end marker
// to each partition and reads until every marker came.
func (e *env) readCommitted(topic string, partitions int32) map[string]int {
	e.t.Helper()
	var markers []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		markers = append(markers, &kgo.Record{Topic: topic, Partition: p, Value: []byte("end-marker")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.client.kgo.ProduceSync(ctx, markers...).FirstErr(); err != nil {
		e.t.Fatalf("writing end markers: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafka.addrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	out := map[string]int{}
	for ends := 0; ends < int(partitions); {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("read %d end markers of %d from %s", ends, partitions, topic)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == "end-marker" {
				ends++
				return
			}
			out[string(r.Value)]++
		})
	}
	return out
}
