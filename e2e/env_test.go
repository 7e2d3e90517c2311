package e2e

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// env is one scenario's world: a cluster, a client of it, a gateway.
type env struct {
	t      *testing.T
	kafka  *kafkaCluster
	client *kafkaClient
	gw     *recordingGateway
	began  time.Time
}

func newEnv(t *testing.T, topics map[string]int32) *env {
	t.Helper()
	skipShort(t)
	k := startKafka(t, topics)
	return &env{t: t, kafka: k, client: newKafkaClient(t, k), gw: startGateway(t), began: time.Now()}
}

func (e *env) settings() settings { return baseSettings(e.kafka, e.gw) }

func group(function string) string { return "e2e-" + function }

// expect is the checker's expectation with the base settings.
func (e *env) expect(subscriptions map[string][]string, floors []floor) expectation {
	return expectation{
		subscriptions: subscriptions,
		defaultMax:    100,
		maxBytes:      6291456,
		floors:        floors,
		group:         group,
	}
}

// waitDelivered waits until each function received every message written
// to its topics.
func (e *env) waitDelivered(timeout time.Duration, subscriptions map[string][]string, procs ...*process) {
	e.t.Helper()
	testkit.Eventually(e.t, timeout, func() bool {
		for _, p := range procs {
			if p.hasExited() {
				e.t.Fatalf("%s exited with status %d:\n%s", p.name, p.exitCode, p.tail(30))
			}
		}
		for f, topics := range subscriptions {
			if e.gw.Delivered(f, topics...) < e.client.log.count(topics...) {
				return false
			}
		}
		return true
	}, "every message delivered to %v", keysOfSubs(subscriptions))
}

func keysOfSubs(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// produced returns the produced log, failing if it has holes.
func (e *env) produced() map[tp][]*message {
	e.t.Helper()
	p, err := e.client.log.partitions()
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// summary logs the figures a scenario reports.
func (e *env) summary(v *verdict, format string, args ...any) {
	e.t.Helper()
	n := 0
	for _, msgs := range e.produced() {
		n += len(msgs)
	}
	e.t.Logf("SUMMARY %s: %d messages produced, %v, %d duplicates, %d replays; "+format,
		append([]any{e.t.Name(), n, time.Since(e.began).Round(100 * time.Millisecond), v.Duplicates, v.Replays}, args...)...)
}

// tripwire holds a function's calls once it has received a number of
// messages, so that a scenario can act while batches are in flight.
type tripwire struct {
	gw       *recordingGateway
	function string
	topics   []string
	at       atomic.Int64
	h        hold
}

func newTripwire(gw *recordingGateway, function string, topics ...string) *tripwire {
	w := &tripwire{gw: gw, function: function, topics: topics}
	w.at.Store(-1)
	return w
}

// arm holds the calls that start once the function has received n
// messages.
func (w *tripwire) arm(n int) { w.at.Store(int64(n)) }

// disarm lets every held call answer and holds no more.
func (w *tripwire) disarm() {
	w.at.Store(-1)
	w.h.Release()
}

func (w *tripwire) behaviour() behaviour {
	return func(c *gatewaytest.Call, n int64) (int, []byte) {
		if at := w.at.Load(); at >= 0 && int64(w.gw.Delivered(w.function, w.topics...)) >= at {
			w.h.Set()
		}
		return heldBy(&w.h)(c, n)
	}
}

// waitHeld waits until at least one call is held.
func (w *tripwire) waitHeld(t *testing.T, timeout time.Duration) {
	t.Helper()
	testkit.Eventually(t, timeout, func() bool { return w.h.waiting.Load() > 0 }, "a call of %s held in flight", w.function)
}
