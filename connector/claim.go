package connector

import (
	"context"
	"log/slog"

	"github.com/IBM/sarama"
)

// endWithClaim calls end once sarama lets the claim go: its partition was
// revoked, the session ended, or the partition's consumer gave up.
//
// Sarama tells a handler so only by closing the claim's Messages channel,
// behind the messages queued in it, which a worker does not read while it
// delivers, waits to retry or holds a full window. Under cooperative
// rebalancing the session's context lives on through rebalances, so that is
// all a revoked partition's worker would learn, and it would go on retrying
// a batch while the group waits for the partition. The claim's Errors
// channel is closed right after its Messages channel, queued messages or
// not: ranging over it tells at once. Sarama's own reader of that channel
// forwards what it takes to the group's Errors, which the trigger logs; what
// this one takes is logged here, so none is lost.
//
// The goroutine ends when sarama closes the claim, which it does once
// ConsumeClaim has returned at the latest. A claim that does not offer its
// errors (not sarama's) calls end only when the session ends.
func endWithClaim(claim sarama.ConsumerGroupClaim, log *slog.Logger, end context.CancelFunc) {
	c, ok := claim.(interface {
		Errors() <-chan *sarama.ConsumerError
	})
	if !ok {
		return
	}
	go func() {
		defer end()
		for err := range c.Errors() {
			log.Warn("kafka consumer error", "error", err)
		}
	}()
}
