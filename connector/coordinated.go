package connector

import (
	"sync"

	"github.com/IBM/sarama"
)

// coordinated is the trigger's client, with the group's coordination
// (joins, heartbeats, commits, the static leave) on a connection of its own
// to the coordinator, and the partitions of the group's topics answered by
// the connector's catalog.
//
// Sarama holds a broker connection for the whole of a request, and a fetch
// from an idle partition waits at the broker up to Consumer.MaxWaitTime: a
// request for the same broker queues behind it, sometimes behind several.
// Under cooperative rebalancing the partitions a member keeps go on
// fetching through the rebalance, so on the fetching client's connections
// the group leader's look at the topics before its SyncGroup, heartbeats
// and commits would wait seconds behind fetches (3 to 8 s a round, as
// measured); and a JoinGroup that the coordinator holds until every member
// has rejoined would hold up the fetches of the coordinator's partitions.
//
// The catalog's look is shared by every trigger and no older than half of
// rebuild_interval, and a trigger rejoins its group when a partition count
// changes, so the leader assigns from it at once. When sarama asks for
// fresh metadata (the leader before assigning, a consumer whose leader
// moved), the fetching client refreshes in the background, and a look-up of
// a partition's leader waits for that refresh.
type coordinated struct {
	sarama.Client // fetches, the leaders to fetch from, and finding the coordinator
	catalog       *catalog

	// coordinator is this group's connection to its coordinator, opened
	// at the first need and dropped when sarama looks for it again. Its
	// own lock: finding the coordinator is a request to the brokers, which
	// a leader look-up must not wait for.
	coordinatorMu sync.Mutex
	coordinator   *sarama.Broker
	// refreshed is closed when the last background refresh of the fetching
	// client has ended; nil before the first.
	refreshMu sync.Mutex
	refreshed chan struct{}
}

func (c *coordinated) Coordinator(group string) (*sarama.Broker, error) {
	c.coordinatorMu.Lock()
	defer c.coordinatorMu.Unlock()
	if c.coordinator == nil {
		found, err := c.Client.Coordinator(group)
		if err != nil {
			return nil, err
		}
		c.coordinator = sarama.NewBroker(found.Addr())
	}
	// Connects again after sarama closed it on an error; a connection that
	// fails shows in the request made on it.
	_ = c.coordinator.Open(c.Client.Config())
	return c.coordinator, nil
}

func (c *coordinated) RefreshCoordinator(group string) error {
	c.closeCoordinator()
	return c.Client.RefreshCoordinator(group)
}

func (c *coordinated) closeCoordinator() {
	c.coordinatorMu.Lock()
	defer c.coordinatorMu.Unlock()
	if c.coordinator != nil {
		_ = c.coordinator.Close()
		c.coordinator = nil
	}
}

// Partitions are those the catalog counted: a topic's partitions are
// numbered from 0.
func (c *coordinated) Partitions(topic string) ([]int32, error) {
	all, err := c.catalog.lookup()
	if err != nil {
		return nil, err
	}
	n, ok := all[topic]
	if !ok {
		return nil, sarama.ErrUnknownTopicOrPartition
	}
	ps := make([]int32, n)
	for i := range ps {
		ps[i] = int32(i)
	}
	return ps, nil
}

func (c *coordinated) RefreshMetadata(topics ...string) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	prev, done := c.refreshed, make(chan struct{})
	c.refreshed = done
	// Ends when the refresh does, at the latest once the client is closed;
	// close waits for it before the client is.
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
	c.refreshMu.Lock()
	done := c.refreshed
	c.refreshMu.Unlock()
	if done != nil {
		<-done
	}
}

// close waits for the background refresh and closes the connection to the
// coordinator; the fetching client is the trigger's to close.
func (c *coordinated) close() {
	c.wait()
	c.closeCoordinator()
}
