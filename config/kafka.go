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
	// Offsets are marked only after delivery and flushed every
	// commit_interval and when a session ends; a commit per batch would put
	// a round trip to the coordinator on the hot path.
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = c.CommitInterval
	readAhead(sc, s)
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

// readAhead bounds what sarama holds of a claimed partition beyond the
// batch being delivered: the messages queued for the next batch
// (ChannelBufferSize: max_messages of them, up to queueLimit) and one fetch
// being handed to that queue (Consumer.Fetch.Default, max_buffered_bytes).
// A partition is fetched again only once its last fetch is all queued, so
// this is all it holds; sarama's defaults (256 messages and 1 MiB) follow
// neither the batch size nor the message size.
//
// A record batch larger than the fetch size is still fetched whole: from
// fetch version 3 (Kafka 0.10.1, below the oldest kafka_version allowed) a
// broker returns the first batch of a response even when it exceeds the
// sizes asked for (KIP-74), and one it leaves out of a response is asked
// for again, sarama's partitions taking turns at being first. And
// Consumer.Fetch.Max stays 0, no limit: with a limit, sarama gives up on a
// message larger than it with ErrMessageTooLarge and skips it.
//
// Consumer.MaxWaitTime, how long a broker holds a fetch that finds nothing,
// stays sarama's 500 ms: a partition whose queue stays full (the function
// is slow) is left out of its broker's fetches until the queue has room, and
// joins them again only once the broker answers the fetch in flight, which
// for idle partitions beside it takes MaxWaitTime. At 5 s, 400 messages of
// 64 KiB to a function of 200 ms a call, on a partition beside idle ones,
// took 9.5 s instead of 8.1 s.
func readAhead(sc *sarama.Config, s types.TriggerSettings) {
	sc.ChannelBufferSize = min(s.MaxMessages, queueLimit)
	sc.Consumer.Fetch.Default = int32(s.MaxBufferedBytes)
	sc.Consumer.Fetch.Max = 0
	// A response of one broker holds every partition fetched from it, and
	// every message decoded from it keeps the whole response in memory: the
	// response limit is the largest max_buffered_bytes, as Kafka's own
	// fetch.max.bytes.
	sc.Consumer.Fetch.MaxBytes = types.MaxBufferedBytesLimit
}

// queueLimit caps the queue of a partition at sarama's own 256 messages: the
// queue only has to last while the next fetch comes, and a larger one
// measured no faster at max_messages=1000, the messages of a batch being
// taken from the fetch as the queue empties.
const queueLimit = 256

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
