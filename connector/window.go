package connector

import (
	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/types"
)

// keyLookAhead is how many times the batches that may be in flight a
// partition's window holds under ordering=key. A key in flight holds back
// its next messages, and with a window of exactly the batches in flight
// those messages fill it: with 83 keys a partition, 16 batches of 10 left
// half the allowed invocations idle. A window as large again lets the keys
// not in flight fill the batches, and lets a key's queued messages travel
// together (see schedule.Policy). Its cost is messages, not bytes: the
// window's bytes stay those of the batches in flight (windowBytes), and
// docs/operating.md's memory formula counts the messages.
const keyLookAhead = 3

// windowOf is a partition's window in messages: the batches that may be in
// flight, and under ordering=key the look-ahead beyond them. The worker
// reads no further: sarama's queue of the partition (max_messages, see
// config.readAhead) already holds the next batch, so that what a partition
// keeps beyond its window is the read-ahead budget.
func windowOf(s types.TriggerSettings, concurrency int) int {
	w := concurrency * s.MaxMessages
	if s.Ordering == schedule.OrderKey {
		w *= keyLookAhead
	}
	return w
}

// windowBytes bounds the bytes of a partition's unfinished messages: those
// of the batches that may be in flight, whatever the ordering.
func windowBytes(s types.TriggerSettings, concurrency int) int {
	return concurrency * bodyBudget(s.MaxBytes)
}
