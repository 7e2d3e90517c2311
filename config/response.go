package config

import (
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/types"
)

// MaxResponseRecordBytes caps a record batch of the response producer, and
// so a record: Kafka's default max.message.bytes (1 MiB and 12 bytes)
// applies to a whole batch, and a batch of several answers' records larger
// than it would be refused although each record fits. A function answers
// at most 1 MiB, which the gateway client reads.
const MaxResponseRecordBytes = 1 << 20

// SaramaResponse returns the configuration of a producer writing the
// answers of a trigger with settings s to its response topic, with the
// consumer's TLS and SASL settings. A transactionalID, for exactly-once,
// makes it transactional.
//
// Every record is acknowledged by every in-sync replica. At least once,
// the writer sends each answer in requests of its own and waits for them
// (respond.Writer): the partitions of a trigger write at once, several
// requests in flight to a broker, and order comes from each partition
// writing its next answer after the last one was acknowledged. The
// transactional producer is idempotent: a record it retries is written
// once and in order, which needs one request in flight per broker.
func (c *Config) SaramaResponse(s types.TriggerSettings, transactionalID string) *sarama.Config {
	sc := c.saramaBase()
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Metadata.Full = false
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.MaxMessageBytes = MaxResponseRecordBytes
	if transactionalID == "" {
		return sc
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Transaction.ID = transactionalID
	// A transaction stays open while the partition's next batches are
	// delivered, up to commit_interval, and at most one invocation beyond
	// it: the coordinator must not abort it meanwhile. Brokers cap it at
	// transaction.max.timeout.ms (15 minutes by default).
	sc.Producer.Transaction.Timeout = max(time.Minute, s.UpstreamTimeout+c.CommitInterval+30*time.Second)
	return sc
}
