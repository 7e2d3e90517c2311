package respond

import "github.com/IBM/sarama"

// inputPartition rides in a message's Metadata, which sarama passes through
// untouched, for Partitioner.
type inputPartition int32

// Partitioner places a record with a key as Kafka's default partitioner
// does (murmur2 of the key, as the Java client, franz-go and Kafka Streams
// place it), so that a key's records meet those other producers wrote; and a
// record without a key in the partition numbered as its input partition,
// modulo the response topic's partitions, so that the unkeyed answers of
// one input partition stay in its order for a reader of one partition.
func Partitioner(topic string) sarama.Partitioner {
	return &partitioner{hash: sarama.NewMurmur2Partitioner(topic)}
}

type partitioner struct{ hash sarama.Partitioner }

func (p *partitioner) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	if m.Key == nil {
		if in, ok := m.Metadata.(inputPartition); ok && in >= 0 {
			return int32(in) % n, nil
		}
		return 0, nil
	}
	return p.hash.Partition(m, n)
}

// RequiresConsistency is true: a record's partition depends on its key or
// its input only, never on which partitions are up.
func (p *partitioner) RequiresConsistency() bool { return true }
