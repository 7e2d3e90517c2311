package connector

import (
	"sync"

	"github.com/IBM/sarama"
)

// coordinated is the trigger's client, with the group's coordination
// (joins, heartbeats, commits) and its look-ups of topic metadata on a
// client of their own.
//
// Sarama holds a broker connection for the whole of a request, and a fetch
// from an idle partition waits at the broker up to Consumer.MaxWaitTime: a
// request for the same broker queues behind it, sometimes behind several.
// Under cooperative rebalancing the partitions a member keeps go on
// fetching through the rebalance, so on one client the group leader's
// metadata look-up before its SyncGroup, and heartbeats and commits, would
// wait seconds behind fetches; and a JoinGroup that the coordinator holds
// until every member has rejoined would hold up the fetches of the
// coordinator's own partitions.
//
// Metadata is looked up on the coordination client, so that the leader
// assigns at once, and then refreshed on the fetching client in the
// background; a look-up of a partition's leader for fetching waits for that
// refresh, which is what sarama's consumer asked for when it refreshed.
type coordinated struct {
	sarama.Client // fetches, and the leaders to fetch from
	coordination  sarama.Client
	// refreshed is closed when the last background refresh of the fetching
	// client has ended; nil before the first.
	mu        sync.Mutex
	refreshed chan struct{}
}

func (c *coordinated) Coordinator(group string) (*sarama.Broker, error) {
	return c.coordination.Coordinator(group)
}

func (c *coordinated) RefreshCoordinator(group string) error {
	return c.coordination.RefreshCoordinator(group)
}

func (c *coordinated) Partitions(topic string) ([]int32, error) {
	return c.coordination.Partitions(topic)
}

func (c *coordinated) RefreshMetadata(topics ...string) error {
	if err := c.coordination.RefreshMetadata(topics...); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, done := c.refreshed, make(chan struct{})
	c.refreshed = done
	// Ends when the refresh does, at the latest once the client is closed;
	// wait waits for it before the client is.
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		// A failure leaves the leaders as they were: fetching from a stale
		// one fails, and sarama's consumer refreshes again.
		_ = c.Client.RefreshMetadata(topics...)
	}()
	return nil
}

func (c *coordinated) Leader(topic string, partition int32) (*sarama.Broker, error) {
	c.wait()
	return c.Client.Leader(topic, partition)
}

func (c *coordinated) LeaderAndEpoch(topic string, partition int32) (*sarama.Broker, int32, error) {
	c.wait()
	return c.Client.LeaderAndEpoch(topic, partition)
}

// wait waits for the background refresh of the fetching client, if any.
func (c *coordinated) wait() {
	c.mu.Lock()
	done := c.refreshed
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}
