package respond_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/respond"
)

const outPartitions = 6

func newWriter(t *testing.T, cluster *kfake.Cluster, maxBytes int) *respond.Writer {
	t.Helper()
	w := respond.NewWriter(cluster.ListenAddrs(), func() *sarama.Config {
		conf := sarama.NewConfig()
		conf.Version = sarama.V3_6_0_0
		conf.Metadata.AllowAutoTopicCreation = false
		conf.Producer.RequiredAcks = sarama.WaitForAll
		conf.Producer.MaxMessageBytes = maxBytes
		return conf
	})
	t.Cleanup(w.Close)
	return w
}

// producedTo counts the produce requests to topic and the most records a
// request carried for one of its partitions.
func producedTo(cluster *kfake.Cluster, topic string) (requests, most *atomic.Int32) {
	requests, most = new(atomic.Int32), new(atomic.Int32)
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if tp.Topic != topic {
				continue
			}
			requests.Add(1)
			for _, p := range tp.Partitions {
				var b kmsg.RecordBatch
				if b.ReadFrom(p.Records) == nil && b.NumRecords > most.Load() {
					most.Store(b.NumRecords)
				}
			}
		}
		return nil, nil, false
	})
	return requests, most
}

// An answer larger than a request may carry for a partition goes in
// several requests, in order; keyed records go where Kafka's default
// partitioner puts their keys, unkeyed ones to their input partition.
func TestWriterSplitsWhatARequestCannotCarry(t *testing.T) {
	cluster := testkit.Cluster(t, outPartitions, "out")
	requests, most := producedTo(cluster, "out")
	w := newWriter(t, cluster, 4096)
	src := respond.Source{Topic: "in", Partition: 7, First: 10, Last: 39, Function: "enrich", IdempotencyKey: "enrich/in/7/10-39"}
	var records []respond.Record
	for i := range 30 {
		r := respond.Record{Value: []byte(fmt.Sprintf("%02d %s", i, strings.Repeat("x", 900)))}
		if i%3 == 0 {
			r.Key = []byte(fmt.Sprintf("customer-%d", i))
		}
		records = append(records, r)
	}
	if err := w.Write("out", src, records); err != nil {
		t.Fatal(err)
	}
	got := testkit.ReadAll(t, cluster, "out", len(records), 30*time.Second)
	murmur := sarama.NewMurmur2Partitioner("out")
	last := make(map[int32]string)
	for _, r := range got {
		want := int32(7 % outPartitions)
		if r.Key != nil {
			want, _ = murmur.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(r.Key)}, outPartitions)
		}
		if r.Partition != want {
			t.Errorf("record %.2s (key %q) in partition %d, want %d", r.Value, r.Key, r.Partition, want)
		}
		if seq := string(r.Value[:2]); seq < last[r.Partition] {
			t.Errorf("partition %d: record %s after %s", r.Partition, seq, last[r.Partition])
		} else {
			last[r.Partition] = seq
		}
		if h := header(r, respond.HeaderIdempotencyKey); h != src.IdempotencyKey {
			t.Errorf("record %.2s: idempotency key %q", r.Value, h)
		}
	}
	// 20 unkeyed records of about 1 KiB with their headers, 3 a request.
	if n := most.Load(); n > 4 {
		t.Errorf("a request carried %d records of 1 KiB for one partition, over max_message_bytes of 4 KiB", n)
	}
	if n := requests.Load(); n < 7 {
		t.Errorf("%d produce requests for 20 records of 1 KiB for one partition, 3 a request", n)
	}
}

// A partition whose leader moved is written at its new leader: the write
// that finds the old one fails, the next one succeeds.
func TestWriterFollowsAMovedLeader(t *testing.T) {
	cluster := testkit.Cluster(t, outPartitions, "out")
	w := newWriter(t, cluster, 1<<20)
	src := func(first int64) respond.Source {
		return respond.Source{Topic: "in", Partition: 2, First: first, Last: first, Function: "f", IdempotencyKey: fmt.Sprint(first)}
	}
	if err := w.Write("out", src(0), []respond.Record{{Value: []byte("before")}}); err != nil {
		t.Fatal(err)
	}
	from := cluster.LeaderFor("out", 2)
	to := (from + 1) % testkit.Brokers
	if err := cluster.MoveTopicPartition("out", 2, to); err != nil {
		t.Fatal(err)
	}
	tries := 0
	for {
		tries++
		err := w.Write("out", src(1), []respond.Record{{Value: []byte("after")}})
		if err == nil {
			break
		}
		if tries == 3 {
			t.Fatalf("still failing after the leader moved from broker %d to %d: %v", from, to, err)
		}
	}
	got := testkit.ReadAll(t, cluster, "out", 2, 30*time.Second)
	if string(got[0].Value) != "before" || string(got[1].Value) != "after" || got[1].Partition != 2 {
		t.Errorf("read %q in partition %d, %q in %d", got[0].Value, got[0].Partition, got[1].Value, got[1].Partition)
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Writes that cannot succeed say why, so that the connector can say what
// to fix.
func TestWriterSaysWhyAWriteIsRefused(t *testing.T) {
	cluster := testkit.ClusterWithoutAutoCreate(t, outPartitions, []string{"out"})
	if err := cluster.CreateTopic("small", 1, map[string]string{"max.message.bytes": "2000"}); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, cluster, 1<<20)
	src := respond.Source{Topic: "in", Function: "f"}
	for _, tc := range []struct {
		name, topic string
		value       int
		want        error
	}{
		{"a topic that does not exist", "missing", 10, sarama.ErrUnknownTopicOrPartition},
		{"a record larger than the topic takes", "small", 5000, sarama.ErrMessageSizeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Write(tc.topic, src, []respond.Record{{Value: make([]byte, tc.value)}})
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}
