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

// A partition that did not exist when the function subscribed holds only
// messages written since, whatever their timestamps say (MirrorMaker keeps
// its source's, Kafka Streams forwards event times): it starts at its first
// message. So the record also says how many partitions the topic had then;
// partitions are only ever added, numbered on from that count.

// startMetaPrefix begins the commit metadata that records the subscription
// time, in Unix milliseconds; startMetaPartitions follows it with the
// topic's partition count at that time.
const (
	startMetaPrefix     = "kafka-connector subscribed="
	startMetaPartitions = " partitions="
)

// sighting is when the connector first listed a function with a topic,
// and how many partitions each of its topics had then (0 for a topic that
// did not exist; nil when the brokers could not say).
type sighting struct {
	at         time.Time
	partitions map[string]int32
}

// subscription is when a function subscribed to a topic, and how many
// partitions the topic had then.
type subscription struct {
	at time.Time // zero when unknown
	// partitions is the topic's partition count at the subscription: 0
	// for a topic created after it, -1 when unknown (recorded by a release
	// that did not count them).
	partitions int32
}

func (s subscription) known() bool { return !s.at.IsZero() }

// added reports whether partition p was added to the topic after the
// subscription.
func (s subscription) added(p int32) bool { return s.partitions >= 0 && p >= s.partitions }

// earlier returns whichever of s and o was recorded first, keeping the
// smaller known partition count: partitions only grow, so the smaller count
// is the older one.
func (s subscription) earlier(o subscription) subscription {
	if !o.known() {
		return s
	}
	if !s.known() {
		return o
	}
	out := s
	if o.at.Before(s.at) {
		out.at = o.at
	}
	if o.partitions >= 0 && (out.partitions < 0 || o.partitions < out.partitions) {
		out.partitions = o.partitions
	}
	return out
}

// startMetadata is the commit metadata recording s; empty when s is not
// known.
func startMetadata(s subscription) string {
	if !s.known() {
		return ""
	}
	meta := startMetaPrefix + strconv.FormatInt(s.at.UnixMilli(), 10)
	if s.partitions >= 0 {
		meta += startMetaPartitions + strconv.FormatInt(int64(s.partitions), 10)
	}
	return meta
}

// parseStartMetadata reads what startMetadata wrote, and what releases that
// recorded only the time wrote. Metadata written by anything else gives an
// unknown subscription.
func parseStartMetadata(s string) subscription {
	rest, ok := strings.CutPrefix(s, startMetaPrefix)
	if !ok {
		return subscription{}
	}
	ms, count, counted := strings.Cut(rest, startMetaPartitions)
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return subscription{}
	}
	out := subscription{at: time.UnixMilli(n), partitions: -1}
	if counted {
		c, err := strconv.ParseInt(count, 10, 32)
		if err != nil || c < 0 {
			return subscription{}
		}
		out.partitions = int32(c)
	}
	return out
}

// topicHistory is what the group and the trigger know of a topic when one of
// its partitions has no committed offset.
type topicHistory struct {
	// subscribed is when the function subscribed to the topic, as recorded
	// in the group's commits or remembered by this trigger; not known if
	// neither knows.
	subscribed subscription
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

// startFor decides where partition p of a topic, never committed, starts,
// given what the function asked for and what is known of the topic. A
// partition that existed at the subscription starts by its time, as every
// replica and restart resolves it, so that replicas joining a new group
// together all start at the end. A partition added since, and every
// partition of a topic created since, starts at its first message: all it
// holds is new to the function.
func startFor(asked types.StartOffset, h topicHistory, p int32) startPoint {
	if asked.Earliest && asked.At.IsZero() {
		return startPoint{oldest: true}
	}
	if h.subscribed.known() {
		if h.subscribed.added(p) {
			return startPoint{oldest: true}
		}
	} else if h.late {
		return startPoint{oldest: true}
	}
	switch {
	case !asked.At.IsZero():
		return startPoint{at: asked.At}
	case h.subscribed.known():
		return startPoint{at: h.subscribed.at}
	case h.committed:
		return startPoint{oldest: true}
	default:
		return startPoint{}
	}
}

// subscriptionFor is the subscription to record with the start of a topic
// that has count partitions now: the one recorded before, or now for a
// first subscription (with no partitions for a topic created since the
// trigger first looked). A record without a count is counted from now on.
// For a start by time, the time is that time.
func subscriptionFor(asked types.StartOffset, h topicHistory, now time.Time, count int32) subscription {
	if asked.Earliest && asked.At.IsZero() {
		return subscription{}
	}
	if h.late {
		count = 0
	}
	s := h.subscribed
	switch {
	case !s.known():
		s = subscription{at: now, partitions: count}
	case s.partitions < 0:
		s.partitions = count
	}
	if !asked.At.IsZero() {
		s.at = asked.At
	}
	return s
}
