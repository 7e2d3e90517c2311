package connector

import (
	"strconv"
	"strings"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

// Where a partition that its group never committed starts is decided here,
// without Kafka, so that the rule can be tested on its own.
//
// "Latest" means from when the function subscribed to the topic, not from
// when a replica happened to look. The subscription time is written in the
// metadata of every offset the trigger commits, so that it outlives the
// process and is shared by every replica: a replica that reads the group's
// offsets after another one committed the start of its own partitions
// resolves its partitions by that same time, instead of taking them for
// partitions added later and replaying their history.

// startMetaPrefix begins the commit metadata that records the subscription
// time, in Unix milliseconds.
const startMetaPrefix = "kafka-connector subscribed="

// startMetadata is the commit metadata recording a subscription at t; empty
// for a zero t.
func startMetadata(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return startMetaPrefix + strconv.FormatInt(t.UnixMilli(), 10)
}

// parseStartMetadata reads what startMetadata wrote. Metadata written by
// anything else gives the zero time.
func parseStartMetadata(s string) time.Time {
	ms, ok := strings.CutPrefix(s, startMetaPrefix)
	if !ok {
		return time.Time{}
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// topicHistory is what the group and the trigger know of a topic when one of
// its partitions has no committed offset.
type topicHistory struct {
	// subscribed is when the function subscribed to the topic, as recorded
	// in the group's commits or remembered by this trigger; zero if neither
	// knows.
	subscribed time.Time
	// committed is true when some partition of the topic has a committed
	// offset without a recorded subscription time (committed by an older
	// version of the connector).
	committed bool
	// late is true when the topic did not exist when the trigger first
	// looked for it: it was created after the function subscribed.
	late bool
}

// startPoint is where a never-committed partition starts: its oldest
// message, the first message at or after a time, or its end.
type startPoint struct {
	oldest bool
	at     time.Time // when not zero: the first message at or after it
}

func (p startPoint) String() string {
	switch {
	case p.oldest:
		return "oldest"
	case !p.at.IsZero():
		return "at " + p.at.UTC().Format(time.RFC3339Nano)
	default:
		return "latest"
	}
}

// startFor decides where a never-committed partition of a topic starts,
// given what the function asked for and what is known of the topic. A
// partition added to the topic after the subscription holds only messages
// newer than it, so resolving by the subscription time starts it at its
// first message; so does a topic created after the subscription.
func startFor(asked types.StartOffset, h topicHistory) startPoint {
	switch {
	case !asked.At.IsZero():
		return startPoint{at: asked.At}
	case asked.Earliest:
		return startPoint{oldest: true}
	case !h.subscribed.IsZero():
		return startPoint{at: h.subscribed}
	case h.late, h.committed:
		return startPoint{oldest: true}
	default:
		return startPoint{}
	}
}

// subscriptionTime is the time to record with the start of a topic: the
// earliest one known, or now for a first subscription. For a start by time,
// that time.
func subscriptionTime(asked types.StartOffset, h topicHistory, now time.Time) time.Time {
	switch {
	case !asked.At.IsZero():
		return asked.At
	case asked.Earliest:
		return time.Time{}
	case !h.subscribed.IsZero():
		return h.subscribed
	default:
		return now
	}
}
