package connector

import (
	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/types"
)

// lookAhead is how many times the batches that may be in flight a
// partition's window holds when more than one batch may be in flight
// (ordering=key or none). The window starts at the oldest unfinished
// message, so with a window of exactly the batches in flight a batch that
// finished before the oldest one left its slot idle until the oldest
// finished: every slot waited for the slowest call in flight, and of 16
// calls of 20 ms allowed, 12.9 were in flight on average. Under
// ordering=key, the queued messages of the keys in flight also filled that
// window (with 83 keys a partition, half the allowed invocations stayed
// idle). Three times the batches in flight lets the other messages fill
// the free slots, and under ordering=key lets a key's queued messages
// travel together (see schedule.Policy). Its cost is messages, not bytes:
// the window's bytes stay those of the batches in flight (windowBytes),
// and docs/operating.md's memory formula counts the messages.
const lookAhead = 3

// windowOf is a partition's window in messages: the batches that may be in
// flight and, when more than one may be, the look-ahead beyond them. The
// worker reads no further: sarama's queue of the partition (max_messages,
// see config.readAhead) already holds the next batch, so that what a
// partition keeps beyond its window is the read-ahead budget.
// ordering=partition has one batch in flight, which nothing can overtake,
// so its window stays that batch.
func windowOf(s types.TriggerSettings, concurrency int) int {
	w := concurrency * s.MaxMessages
	if s.Ordering != schedule.OrderPartition {
		w *= lookAhead
	}
	return w
}

// windowBytes bounds the bytes of a partition's unfinished messages: those
// of the batches that may be in flight, whatever the ordering.
func windowBytes(s types.TriggerSettings, concurrency int) int {
	return concurrency * bodyBudget(s.MaxBytes)
}
