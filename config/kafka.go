package config

import (
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/types"
)

// Sarama returns the configuration of the Kafka client of a trigger with
// settings s. Each client needs its own: sarama keeps state in it.
func (c *Config) Sarama(s types.TriggerSettings) *sarama.Config {
	sc := c.saramaBase()
	// A consumer must not create topics: a misspelt annotation would.
	sc.Metadata.AllowAutoTopicCreation = false

	sc.Consumer.Return.Errors = true
	// The connector itself gives a partition that its group never committed
	// its start (latest, or a time), before consuming it. What is left to
	// sarama is a committed offset that retention has removed: resuming at
	// the oldest message still there loses the least.
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Offsets are marked only after delivery and flushed every second and
	// when a session ends; a commit per batch would put a round trip to the
	// coordinator on the hot path.
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	// On a rebalance the invocation in flight is allowed to finish (nothing
	// new starts), so the group must wait at least one upstream timeout for
	// this member.
	sc.Consumer.Group.Rebalance.Timeout = max(60*time.Second, s.UpstreamTimeout+10*time.Second)
	// The coordinator holds a JoinGroup until every member has rejoined,
	// up to the rebalance timeout, and sarama applies one read timeout to
	// every response: below the rebalance timeout, the members that rejoin
	// first fail with an i/o timeout while another finishes a long
	// invocation. The Java client and franz-go give JoinGroup the rebalance
	// timeout plus a margin in the same way.
	sc.Net.ReadTimeout = sc.Consumer.Group.Rebalance.Timeout + 10*time.Second
	if s.Isolation == types.ReadUncommitted {
		sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	} else {
		sc.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	return sc
}

// SaramaProducer returns the configuration of a producer that waits for
// every in-sync replica: what it writes (dead letters, sample messages) must
// not be lost once acknowledged.
func (c *Config) SaramaProducer() *sarama.Config {
	sc := c.saramaBase()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	return sc
}

func (c *Config) saramaBase() *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = "kafka-connector"
	sc.Net.DialTimeout = 10 * time.Second
	c.applyKafkaSecurity(sc)
	return sc
}
