package connector_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// fetchWatch observes the fetch requests the brokers receive for one
// partition: how far the consumer has read it, and how much it asks for.
type fetchWatch struct {
	topic     string
	partition int32
	leader    int32 // the partition's broker

	mu sync.Mutex
	// highest is the largest offset a fetch of the partition started at:
	// everything before it has been read from the broker.
	highest int64
	// maxBytes is the most a fetch of the partition asked for.
	maxBytes int32
	// left is set by a fetch to the partition's broker that names other
	// partitions of the topic but not this one, after this one was fetched:
	// sarama has stopped fetching it.
	left bool
}

func watchFetches(c *kfake.Cluster, topic string, partition int32) *fetchWatch {
	w := &fetchWatch{topic: topic, partition: partition, leader: c.LeaderFor(topic, partition), highest: -1}
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		w.observe(c.CurrentNode(), req.(*kmsg.FetchRequest))
		return nil, nil, false // observed; the broker answers it
	})
	return w
}

func (w *fetchWatch) observe(node int32, req *kmsg.FetchRequest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	named, others := false, false
	for _, t := range req.Topics {
		if t.Topic != w.topic {
			continue
		}
		for _, p := range t.Partitions {
			if p.Partition != w.partition {
				others = true
				continue
			}
			named = true
			w.highest = max(w.highest, p.FetchOffset)
			w.maxBytes = max(w.maxBytes, p.PartitionMaxBytes)
		}
	}
	if node == w.leader && others && !named && w.highest > 0 {
		w.left = true
	}
}

func (w *fetchWatch) state() (highest int64, maxBytes int32, left bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.highest, w.maxBytes, w.left
}

// onOneBroker makes the partition's broker the leader of every partition
// of the topic, so that one fetch request carries them all, as it does for
// the partitions a consumer has on one broker.
func onOneBroker(t *testing.T, c *kfake.Cluster, topic string, partition int32) {
	t.Helper()
	leader := c.LeaderFor(topic, partition)
	for p := int32(0); p < partitions; p++ {
		if err := c.MoveTopicPartition(topic, p, leader); err != nil {
			t.Fatalf("moving %s/%d to broker %d: %v", topic, p, leader, err)
		}
	}
}

// TestReadAheadOfLargeMessagesStaysWithinTheBudget holds the function's
// first call on a partition with a backlog of 64 KiB messages and watches
// how far the connector reads that partition meanwhile. What a partition
// holds beyond the batch being delivered is the next max_messages messages
// and one fetch of at most max_buffered_bytes: sarama's own read-ahead, 256
// messages whatever max_messages and fetches of 1 MiB, would read the whole
// backlog.
func TestReadAheadOfLargeMessagesStaysWithinTheBudget(t *testing.T) {
	const (
		size    = 64 << 10
		backlog = 60 // 3.8 MiB
	)
	cluster := testkit.Cluster(t, partitions, "images")
	onOneBroker(t, cluster, "images", 0)
	gw, url := testkit.Gateway(t)
	cfg := testkit.Config(t, cluster, url)
	cfg.MaxMessages = 4
	cfg.MaxBufferedBytes = 256 << 10  // three of these messages a fetch
	cfg.UpstreamTimeout = time.Minute // the held call is not retried meanwhile

	// One message a record batch, uncompressed, as the Java client writes a
	// message larger than its batch.size: a fetch holds as many messages as
	// its size allows.
	client := testkit.NewClient(t, cluster, kgo.ProducerBatchMaxBytes(size+1024), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var recs []*kgo.Record
	for i := range backlog {
		recs = append(recs, testkit.Record("images", 0, nil, bytes.Repeat([]byte{'a' + byte(i%26)}, size)))
	}
	client.Produce(recs...)

	release := make(chan struct{})
	var held atomic.Int32 // calls in flight; the gateway records a call once answered
	gw.Handle("thumbnailer", func(c *gatewaytest.Call) (int, []byte) {
		held.Add(1)
		select { // until the test ends
		case <-release:
		case <-c.Context().Done():
		}
		return http.StatusOK, nil
	})
	watch := watchFetches(cluster, "images", 0)
	gw.SetFunctions(fn("thumbnailer", "images"))
	testkit.Start(t, cfg)
	t.Cleanup(func() { close(release) }) // before the connector stops

	// The connector reads ahead until the next batch is queued and one
	// fetch waits to join it; then sarama leaves the partition out of its
	// fetches until the function takes more. With more read ahead than
	// that, the partition is read past the bound.
	delivered := int64(cfg.MaxMessages) // the batch held in flight, at most
	bound := delivered + int64(cfg.MaxMessages)
	testkit.Eventually(t, 30*time.Second, func() bool {
		highest, _, left := watch.state()
		return held.Load() > 0 && (left || highest > bound)
	}, "a batch in flight, and the connector stops fetching partition 0 or reads past offset %d", bound)

	highest, maxBytes, _ := watch.state()
	if highest > bound {
		t.Errorf("partition 0 read up to offset %d (%d KiB) while its first batch was in flight: want at most %d, the batch and the next max_messages=%d",
			highest, highest*size>>10, bound, cfg.MaxMessages)
	}
	if int(maxBytes) > cfg.MaxBufferedBytes {
		t.Errorf("a fetch of partition 0 asked for %d bytes, more than max_buffered_bytes=%d", maxBytes, cfg.MaxBufferedBytes)
	}
	if n := held.Load(); n != 1 {
		t.Errorf("%d calls in flight, want the first batch of partition 0 alone", n)
	}
	t.Logf("read ahead of the batch in flight: offsets up to %d and one fetch of at most %d KiB", highest, maxBytes>>10)
}

// TestMessageLargerThanTheBudgetIsDelivered writes a 3 MiB message between
// small ones, with max_buffered_bytes at 1 MiB and other partitions of the
// same broker fetched beside it: the message is delivered whole, in order,
// and the partition goes on. A fetch smaller than a message must never
// skip it (sarama skips a message larger than Consumer.Fetch.Max).
func TestMessageLargerThanTheBudgetIsDelivered(t *testing.T) {
	const bigSize = 3 << 20
	cluster := testkit.ClusterWith(t, partitions, []string{"scans"},
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(8 << 20)}))
	onOneBroker(t, cluster, "scans", 0)
	gw, url := testkit.Gateway(t)
	cfg := testkit.Config(t, cluster, url)
	cfg.MaxBufferedBytes = 1 << 20
	client := testkit.NewClient(t, cluster, kgo.ProducerBatchMaxBytes(8<<20))

	big := bytes.Repeat([]byte("0123456789abcdef"), bigSize/16)
	client.Produce(testkit.Record("scans", 0, nil, []byte("before")))
	client.Produce(testkit.Record("scans", 0, nil, big))
	client.Produce(testkit.Record("scans", 0, nil, []byte("after")))
	var others []*kgo.Record
	for i := range 200 {
		for p := int32(1); p < partitions; p++ {
			others = append(others, testkit.Record("scans", p, nil, []byte(fmt.Sprintf("p%d-%d", p, i))))
		}
	}
	client.Produce(others...)

	gw.SetFunctions(fn("ocr", "scans"))
	testkit.Start(t, cfg)
	testkit.Eventually(t, 60*time.Second, func() bool {
		return successes(t, gw.Calls("ocr")).count("scans") >= 3+200*(partitions-1)
	}, "every message delivered")

	d := successes(t, gw.Calls("ocr"))
	if got := d.offsets["scans"][0]; !inOrder(got, 3) {
		t.Fatalf("partition 0 delivered offsets %v, want 0, 1, 2", got)
	}
	recs := d.records["scans"][0]
	if recs[0].MsgBody != "before" || recs[1].MsgBody != string(big) || recs[2].MsgBody != "after" {
		t.Errorf("partition 0 delivered bodies of %d, %d and %d bytes, want 6, %d and 5", len(recs[0].MsgBody), len(recs[1].MsgBody), len(recs[2].MsgBody), bigSize)
	}
	testkit.Eventually(t, 20*time.Second, func() bool { return client.Committed("kafka-connector-ocr")["scans"][0] == 3 },
		"partition 0 committed past the large message")
}
