package types

import (
	"fmt"
	"strings"

	"github.com/kafka-connector/kafka-connector/schedule"
)

// The annotations that send a function's answers to a Kafka topic.
const (
	AnnotationResponseTopic    = "kafka-response-topic"
	AnnotationResponseDelivery = "kafka-response-delivery"
)

// ResponseDelivery is how a function's answers are written to its response
// topic.
type ResponseDelivery string

const (
	// AtLeastOnce writes a batch's answer and waits for the brokers to
	// acknowledge it before the batch's offsets may be committed: a crash
	// or a rebalance in between writes it again.
	AtLeastOnce ResponseDelivery = "at-least-once"
	// ExactlyOnce writes a partition's answers and commits its offsets in
	// one Kafka transaction: a reader with isolation.level=read_committed
	// sees each batch's answer once, whatever crashes and rebalances
	// happened. It needs ordering=partition.
	ExactlyOnce ResponseDelivery = "exactly-once"
)

// ParseResponseDelivery reads at-least-once or exactly-once.
func ParseResponseDelivery(s string) (ResponseDelivery, error) {
	switch d := ResponseDelivery(strings.TrimSpace(s)); d {
	case AtLeastOnce, ExactlyOnce:
		return d, nil
	}
	return "", fmt.Errorf("response delivery %q: want at-least-once or exactly-once", s)
}

// CheckResponse reports why settings that write answers to a response topic
// cannot work, or nil. Exactly-once needs one batch of a partition in
// flight at a time: under key or none ordering a batch finishes while an
// older one is still in flight, the partition's committed offset stays
// below the older batch, and a transaction holding the newer batch's answer
// would commit an offset that does not cover it, so a crash would write that
// answer twice. An asynchronous invocation's answer is the gateway's
// receipt, not the function's, which goes to callback_url.
func (s TriggerSettings) CheckResponse() error {
	if s.ResponseTopic == "" {
		return nil
	}
	if s.Async {
		return fmt.Errorf("a response topic needs synchronous invocations: an asynchronous invocation's answer is the gateway's receipt, and the function's own goes to callback_url")
	}
	if s.ResponseDelivery == ExactlyOnce && s.Ordering != schedule.OrderPartition {
		return fmt.Errorf("exactly-once responses need ordering=partition, not %s: under key or none ordering a batch finishes while an older one is in flight, and its answer would be committed with an offset that does not cover it", s.Ordering)
	}
	return nil
}
