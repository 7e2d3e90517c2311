package config

import (
	"fmt"
	"os"
	"strings"
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

	// The connector's catalog reads the whole cluster's metadata for every
	// trigger; a trigger's own client needs only its topics'.
	sc.Metadata.Full = false

	sc.Consumer.Return.Errors = true
	// An idle partition's fetch waits at the broker this long for data. It
	// returns as soon as a message arrives, so latency does not depend on
	// it, but idle cost does: with sarama's 500 ms, a thousand idle
	// functions take a fifth of a core polling. Longer is not free either:
	// a claim that ends (a rebalance, a stop) waits for its fetch in
	// flight, and requests queued behind it on the same connection wait
	// with it (the group's coordination has connections of its own, see
	// connector.coordinated), and so does a partition whose queue was full
	// (see readAhead). 2 s keeps a thousand idle functions under a tenth
	// of a core.
	sc.Consumer.MaxWaitTime = 2 * time.Second
	// Consumer.Fetch.Max stays 0, no limit: at a limit, sarama skips a
	// message larger than it, which would lose that message.
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
	sc.Consumer.Group.Rebalance.GroupStrategies = c.balanceStrategies()
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
	sc.Consumer.Group.InstanceId = c.InstanceID
	if s.Isolation == types.ReadUncommitted {
		sc.Consumer.IsolationLevel = sarama.ReadUncommitted
	} else {
		sc.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	return sc
}

// SaramaMetadata returns the configuration of the client that reads which
// topics exist, for all triggers at once.
func (c *Config) SaramaMetadata() *sarama.Config {
	sc := c.saramaBase()
	sc.Metadata.AllowAutoTopicCreation = false
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
// Consumer.MaxWaitTime (see Sarama) matters here too: a partition whose
// queue stays full (the function is slow) is left out of its broker's
// fetches until the queue has room, and joins them again only once the
// broker answers the fetch in flight, which for idle partitions beside it
// takes MaxWaitTime. At 5 s, 400 messages of 64 KiB to a function of 200 ms
// a call, on a partition beside idle ones, took 9.5 s instead of 8.1 s.
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
//
// The size of a message is left to the brokers. The consumer reads a
// message of any size the brokers hold (its Fetch.Max stays 0: at a limit,
// sarama would skip the larger message, losing it), up to sarama's largest
// answer, MaxResponseSize (100 MiB). A dead letter is such a message and a
// few headers, so sarama's own 1 MiB limit would refuse some of them for
// ever. Instead the limit is sarama's largest request, and each request
// carries one message: the brokers apply max.message.bytes to a whole
// record batch, so with one message a batch they judge each message alone,
// as they did when it was first written, and the answer is theirs.
func (c *Config) SaramaProducer() *sarama.Config {
	sc := c.saramaBase()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.MaxMessageBytes = MaxProducedMessageBytes()
	sc.Producer.Flush.MaxMessages = 1
	return sc
}

// MaxProducedMessageBytes is the largest message the connector's producer
// sends: sarama's largest request, less room for the request's own fields.
func MaxProducedMessageBytes() int {
	return int(sarama.MaxRequestSize) - 64<<10
}

func (c *Config) saramaBase() *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = "kafka-connector"
	sc.Net.DialTimeout = 10 * time.Second
	c.applyKafkaSecurity(sc)
	return sc
}

// Static membership needs JoinGroup v5, from Kafka 2.3.
var staticMembershipVersion = sarama.V2_3_0_0

// defaultInstanceID is the pod name Kubernetes puts in HOSTNAME, when the
// brokers can take it as an instance id: an older protocol version, or a
// host name Kafka would refuse, means dynamic membership rather than a
// connector that does not start.
func defaultInstanceID(kafkaVersion string) string {
	host := os.Getenv("HOSTNAME")
	v, err := sarama.ParseKafkaVersion(kafkaVersion)
	if err != nil || !v.IsAtLeast(staticMembershipVersion) || types.CheckTopicName(host) != nil {
		return ""
	}
	return host
}

func (c *Config) checkInstanceID() error {
	if c.InstanceID == "" {
		return nil
	}
	if err := types.CheckTopicName(c.InstanceID); err != nil {
		return fieldError("InstanceID", c.InstanceID, err)
	}
	if v, _ := sarama.ParseKafkaVersion(c.KafkaVersion); !v.IsAtLeast(staticMembershipVersion) {
		return fieldError("InstanceID", c.InstanceID, fmt.Errorf("kafka_version %s is older than 2.3.0", c.KafkaVersion))
	}
	return nil
}

// The assignors a group may use. Under cooperative-sticky, the only
// cooperative one, sarama keeps a session across rebalances and ends only
// the claims that move; a worker sees its claim end (see endWithClaim in
// package connector).
const (
	cooperativeSticky = "cooperative-sticky"
	sticky            = "sticky"
)

// Cooperative rebalancing (KIP-429) needs the owned partitions of
// JoinGroup's subscription, from Kafka 2.4.
var cooperativeVersion = sarama.V2_4_0_0

// assignors is the Assignor setting, or its default for the protocol
// version when unset.
func (c *Config) assignors() []string {
	if len(c.Assignor) > 0 {
		return c.Assignor
	}
	if v, err := sarama.ParseKafkaVersion(c.KafkaVersion); err == nil && v.IsAtLeast(cooperativeVersion) {
		return []string{cooperativeSticky}
	}
	return []string{sticky}
}

// balanceStrategies are the assignors as sarama names them, in order. A
// list of both makes sarama rebalance eagerly while it offers
// cooperative-sticky first, which is the first step of an upgrade.
func (c *Config) balanceStrategies() []sarama.BalanceStrategy {
	var out []sarama.BalanceStrategy
	for _, name := range c.assignors() {
		if name == cooperativeSticky {
			out = append(out, sarama.NewBalanceStrategyCooperativeSticky())
		} else {
			out = append(out, sarama.NewBalanceStrategySticky())
		}
	}
	return out
}

// cooperative reports whether the groups rebalance cooperatively: only when
// cooperative-sticky is their one assignor.
func (c *Config) cooperative() bool {
	a := c.assignors()
	return len(a) == 1 && a[0] == cooperativeSticky
}

func (c *Config) checkAssignor() error {
	value := strings.Join(c.Assignor, ",")
	seen := make(map[string]bool)
	for _, name := range c.Assignor {
		if name != cooperativeSticky && name != sticky || seen[name] {
			return fieldError("Assignor", value, nil)
		}
		seen[name] = true
	}
	if v, _ := sarama.ParseKafkaVersion(c.KafkaVersion); c.cooperative() && !v.IsAtLeast(cooperativeVersion) {
		return fieldError("Assignor", value, fmt.Errorf("kafka_version %s is older than 2.4.0", c.KafkaVersion))
	}
	return nil
}
