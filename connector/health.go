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
//
// Two things make "every partition started" a weaker rule than it reads.
// A claim revoked before sarama started it is never started at all, and a
// session that ends as soon as it began because a partition could not
// start begins again after a backoff, as if new. So a session that has run
// steadyAfter counts as consuming whatever it started, and after a session
// that failed, the next ones count only once one has run that long.

// steadyAfter is how long a session must have run to count as consuming
// on its own: the partitions that were going to fail to start have failed
// by then.
const steadyAfter = 10 * time.Second

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
	// joined: in a group session, or idle for want of topics.
	joined atomic.Bool
	// pending counts the partitions the session's Setup listed that have
	// not started yet (less those of later generations that started).
	pending atomic.Int32
	// looked is when the brokers last answered a look at the claimed
	// partitions (Unix nanoseconds), or when the session began.
	looked atomic.Int64
	// claims is how many partitions are being delivered.
	claims atomic.Int32
	// stale is whether the brokers were last reported as not answering,
	// so that the change is logged once each way.
	stale atomic.Bool
	// began is when the session began (Unix nanoseconds); troubled, that
	// a session failed since a session last ran steadyAfter.
	began    atomic.Int64
	troubled atomic.Bool
	// partitionFailed: sarama reported a partition of the session that
	// could not be consumed, which ends the session.
	partitionFailed atomic.Bool
}

// begin is a session whose first generation claims n partitions.
func (h *health) begin(n int, now time.Time) {
	h.began.Store(now.UnixNano())
	h.looked.Store(now.UnixNano())
	h.pending.Store(int32(n))
	h.joined.Store(true)
}

// started is a claimed partition that started.
func (h *health) started() { h.pending.Add(-1) }

// ended is a session that ended, or a trigger that waits to start again.
func (h *health) ended() {
	h.joined.Store(false)
	h.pending.Store(0)
}

// failed is a session that ended for want of consuming: the next ones
// count as consuming only once one has run steadyAfter.
func (h *health) failed() {
	h.ended()
	h.troubled.Store(true)
}

// consuming reports whether the session consumes: joined, and every
// claimed partition started, after no failure; or on for steadyAfter.
func (h *health) consuming(now time.Time) bool {
	if !h.joined.Load() {
		return false
	}
	if now.Sub(time.Unix(0, h.began.Load())) >= steadyAfter {
		h.troubled.Store(false)
		return true
	}
	return h.pending.Load() <= 0 && !h.troubled.Load()
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
	return h.consuming(now) && !silent
}
