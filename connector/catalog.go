package connector

import (
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// catalog answers, for every trigger of the connector, which topics exist
// and how many partitions each has. One look at the cluster's metadata
// serves them all: a thousand triggers each asking for the whole cluster's
// metadata at every check would cost the brokers and the connector more
// than the triggers' own work.
//
// Its methods may be called from any goroutine. A look older than maxAge
// is taken again, by the first caller that needs it; the others wait for
// that look rather than making their own.
type catalog struct {
	brokers   []string
	newConfig func() *sarama.Config
	maxAge    time.Duration

	mu     sync.Mutex // held during a look, so that there is one at a time
	client sarama.Client
	topics map[string]int // partitions, by topic
	at     time.Time      // of the last successful look
}

// lookup returns the topics of the cluster with their partition counts, as
// of a look no older than maxAge. The map must not be changed.
func (c *catalog) lookup() (map[string]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.topics != nil && time.Since(c.at) < c.maxAge {
		return c.topics, nil
	}
	if c.client == nil {
		client, err := sarama.NewClient(c.brokers, c.newConfig())
		if err != nil {
			return nil, fmt.Errorf("cannot reach kafka brokers to read the cluster's metadata: %w", err)
		}
		c.client = client
	}
	if err := c.client.RefreshMetadata(); err != nil {
		return nil, fmt.Errorf("cannot reach kafka brokers to read the cluster's metadata: %w", err)
	}
	names, err := c.client.Topics()
	if err != nil {
		return nil, fmt.Errorf("listing the cluster's topics: %w", err)
	}
	topics := make(map[string]int, len(names))
	for _, name := range names {
		ps, err := c.client.Partitions(name)
		if err != nil {
			return nil, fmt.Errorf("listing the partitions of %s: %w", name, err)
		}
		topics[name] = len(ps)
	}
	c.topics, c.at = topics, time.Now()
	return topics, nil
}

// close closes the catalog's client, once no trigger uses it.
func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.Close()
		c.client = nil
	}
}
