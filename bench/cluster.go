package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startCluster starts the embedded broker with the topics, each of
// partitions partitions.
func startCluster(partitions int32, topics ...string) (*kfake.Cluster, error) {
	return kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
}

// firstFetch returns a channel that receives the time at which the broker
// receives its next fetch request. A phase starts its consumer after calling
// it: no other client fetches, so that is the consumer's first fetch.
func firstFetch(c *kfake.Cluster) <-chan time.Time {
	at := make(chan time.Time, 1)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		at <- time.Now()
		c.DropControl()
		return nil, nil, false // observed, not handled: the broker answers it
	})
	return at
}

// messageValue fills v with printable text that starts with stamp: JSON
// needs no escape for it, so the event is the common case.
func messageValue(v []byte, stamp int64) []byte {
	v = strconv.AppendInt(v[:0], stamp, 10)
	v = append(v, ' ')
	for i := len(v); i < cap(v); i++ {
		v = append(v, 'a'+byte(i%26))
	}
	return v
}

// produceBacklog writes n messages of size bytes to topic, spread evenly
// over its partitions, in large batches, and waits for them all to be
// acknowledged. Values are not compressed, so that the consumers measure
// reading and delivering, not decompressing.
func produceBacklog(ctx context.Context, brokers []string, topic string, partitions int32, n, size int) error {
	_, err := produceKeyed(ctx, brokers, topic, partitions, n, size, 0)
	return err
}

// produceKeyed is produceBacklog with keys: message i has the key "k<i mod
// keys>" (no key when keys is 0), and a keyed message goes to the partition
// Kafka's default partitioner gives its key (murmur2 of the key, as the
// Java client, franz-go's default and sarama's murmur2 hash partitioner
// place it), so that each key is in one partition, as users' keys are.
// Messages without a key go round robin, one partition after another. It
// returns how many distinct keys each partition holds.
func produceKeyed(ctx context.Context, brokers []string, topic string, partitions int32, n, size, keys int) ([]int, error) {
	return produce(ctx, brokers, topic, partitions, n, keys, func(i int) ([]byte, error) { return messageValue(make([]byte, 0, size), int64(i)), nil })
}

// produceWith is produceBacklog with the values value makes.
func produceWith(ctx context.Context, brokers []string, topic string, partitions int32, n int, value func(i int) ([]byte, error)) error {
	_, err := produce(ctx, brokers, topic, partitions, n, 0, value)
	return err
}

func produce(ctx context.Context, brokers []string, topic string, partitions int32, n, keys int, value func(i int) ([]byte, error)) ([]int, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerLinger(10*time.Millisecond),
		kgo.MaxBufferedRecords(200_000),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var (
		mu       sync.Mutex
		firstErr error
	)
	// The partitioner is asked here, once a key, rather than given to the
	// client, to count the keys of each partition; it is the same choice.
	placer := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	keyPartition := make([]int32, keys)
	perPartition := make([]int, partitions)
	for k := range keys {
		keyPartition[k] = int32(placer.Partition(&kgo.Record{Key: keyOf(k)}, int(partitions)))
		perPartition[keyPartition[k]]++
	}
	for i := range n {
		v, err := value(i)
		if err != nil {
			return nil, err
		}
		r := &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Value: v}
		if keys > 0 {
			r.Key = keyOf(i % keys)
			r.Partition = keyPartition[i%keys]
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, fmt.Errorf("producing to %s: %w", topic, firstErr)
	}
	return perPartition, nil
}

// keyOf is the key of the messages of key number k, and keyNumber reads it
// back from a record's msgKey.
func keyOf(k int) []byte { return []byte("k" + strconv.Itoa(k)) }

func keyNumber(msgKey string) (int, bool) {
	k, err := strconv.Atoi(strings.TrimPrefix(msgKey, "k"))
	return k, err == nil && strings.HasPrefix(msgKey, "k")
}

// produceSteadily writes rate messages a second to topic, round robin over
// its partitions, each value starting with the time it was handed to the
// producer in Unix nanoseconds, until ctx ends. It sends each message as
// soon as it is due, without waiting for others to batch with.
func produceSteadily(ctx context.Context, brokers []string, topic string, partitions int32, rate float64, size int) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			due := int(now.Sub(start).Seconds()*rate) - sent
			for range due {
				r := &kgo.Record{Topic: topic, Partition: int32(sent) % partitions}
				r.Value = messageValue(make([]byte, 0, size), time.Now().UnixNano())
				cl.Produce(context.Background(), r, nil)
				sent++
			}
		}
	}
}
