package respond

import (
	"encoding/binary"

	"github.com/IBM/sarama"
)

// inputPartition rides in a message's Metadata, which sarama passes through
// untouched, for Partitioner.
type inputPartition int32

// Partitioner places a record with a key as Kafka's default partitioner
// does (murmur2 of the key, as the Java client, franz-go and Kafka Streams
// place it), so that a key's records meet those other producers wrote; and a
// record without a key in the partition numbered as its input partition,
// modulo the response topic's partitions, so that the unkeyed answers of
// one input partition stay in its order for a reader of one partition.
func Partitioner(string) sarama.Partitioner { return partitioner{} }

type partitioner struct{}

func (partitioner) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	if m.Key == nil {
		in, _ := m.Metadata.(inputPartition)
		return place(nil, int32(in), n), nil
	}
	key, err := m.Key.Encode()
	if err != nil {
		return -1, err
	}
	if key == nil {
		key = []byte{} // a key, if empty: it is hashed
	}
	return place(key, 0, n), nil
}

// RequiresConsistency is true: a record's partition depends on its key or
// its input only, never on which partitions are up.
func (partitioner) RequiresConsistency() bool { return true }

// place is the partition of n that a record with key (nil: none) answering
// input partition in goes to.
func place(key []byte, in, n int32) int32 {
	if key == nil {
		return max(in, 0) % n
	}
	return int32(murmur2(key)&0x7fffffff) % n
}

// murmur2 is the hash of Kafka's default partitioner
// (org.apache.kafka.common.utils.Utils.murmur2), which sarama keeps to its
// partitioner, whose every construction seeds a random source.
func murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for len(b) >= 4 {
		k := binary.LittleEndian.Uint32(b)
		b = b[4:]
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
