package connector

import (
	"sync/atomic"
	"time"
)

// A trigger is ready when it consumes: it has joined its consumer group and
// every partition it claimed in that session has started (sarama opens a
// partition's consumer, looking up where it starts, before handing it
// over), or it waits for its topics to exist; and the brokers answered its
// last look at its partitions' ends within staleLooks lag intervals. A
// trigger whose partitions cannot start, or whose brokers stopped
// answering (a frozen or partitioned broker makes requests wait their read
// timeout, with nothing else to show for it), is not ready, whatever its
// group says.

// staleLooks is how many lag intervals may pass without an answer to the
// lag watcher's look before the brokers count as not answering, and
// minSilence the least time it takes, so that a short rebuild_interval on a
// busy machine does not make a slow answer look like no answer.
const (
	staleLooks = 2
	minSilence = 10 * time.Second
)

// health is what a trigger knows of whether it consumes. Its fields are
// written by the group's goroutines and read by /readyz and /metrics.
type health struct {
	// joined: in a group session whose every claimed partition started,
	// or idle for want of topics.
	joined atomic.Bool
	// pending counts the partitions of the session's first generation
	// that have not started yet.
	pending atomic.Int32
	// looked is when the brokers last answered a look at the claimed
	// partitions (Unix nanoseconds), or when the session began.
	looked atomic.Int64
	// claims is how many partitions are being delivered.
	claims atomic.Int32
	// stale is whether the brokers were last reported as not answering,
	// so that the change is logged once each way.
	stale atomic.Bool
}

// begin is a session whose first generation claims n partitions.
func (h *health) begin(n int, now time.Time) {
	h.looked.Store(now.UnixNano())
	h.pending.Store(int32(n))
	h.joined.Store(n == 0)
}

// started is a partition of the session's first generation that started;
// the last one makes the trigger ready.
func (h *health) started() {
	if h.pending.Add(-1) == 0 {
		h.joined.Store(true)
	}
}

// ended is a session that ended, or a trigger that waits to start again.
func (h *health) ended() {
	h.joined.Store(false)
	h.pending.Store(0)
}

// idle is a trigger with no topic to consume yet: ready, with nothing to
// look at.
func (h *health) idle() { h.joined.Store(true) }

// answered is a look at the partitions that the brokers answered.
func (h *health) answered(now time.Time) { h.looked.Store(now.UnixNano()) }

// silent reports whether the brokers have left the trigger's looks
// unanswered for longer than staleLooks intervals, while it has partitions
// to deliver.
func (h *health) silent(now time.Time, interval time.Duration) bool {
	if h.claims.Load() == 0 || !h.joined.Load() {
		return false
	}
	return now.Sub(time.Unix(0, h.looked.Load())) > max(staleLooks*interval, minSilence)
}

// ready reports whether the trigger consumes, and logs once when the
// brokers stop answering, and once when they answer again.
func (t *trigger) isReady(now time.Time) bool {
	h := &t.health
	silent := h.silent(now, t.lagInterval())
	if h.stale.CompareAndSwap(!silent, silent) {
		if silent {
			t.log.Error("the brokers have not answered for a while: the trigger cannot consume, and is not ready",
				"group", t.settings.Group, "last_answer", time.Unix(0, h.looked.Load()).UTC().Format(time.RFC3339),
				"brokers", t.brokerList())
		} else {
			t.log.Info("the brokers answer again: the trigger consumes", "group", t.settings.Group)
		}
	}
	return h.joined.Load() && !silent
}
