package devmode

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

func TestDevModeShowsDeliveredRecords(t *testing.T) {
	cluster := testkit.Cluster(t, 3) // only to borrow the test configuration
	cfg := testkit.Config(t, cluster, "http://unused")
	var out testkit.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{KafkaAddr: "127.0.0.1:0", GatewayAddr: "127.0.0.1:0", Out: &out}, testkit.Logger(t))
	}()
	testkit.Eventually(t, 30*time.Second, func() bool {
		return strings.Count(out.String(), `"Ckafka"`) >= 3
	}, "the demo function prints the 3 sample records; it printed %q", out.String())
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("dev mode stopped with %v", err)
	}
	for i := 1; i <= 3; i++ {
		if !strings.Contains(out.String(), `{\"sample\":`+string(rune('0'+i))) {
			t.Errorf("sample %d missing from %s", i, out.String())
		}
	}
}

func TestProduceReadsLinesWhenNoMessageIsGiven(t *testing.T) {
	cluster := testkit.Cluster(t, 3, "lines")
	cfg := testkit.Config(t, cluster, "http://unused")
	n, err := Produce(context.Background(), cfg.SaramaProducer(), cluster.ListenAddrs(), "lines", []byte("k"), "", nil, strings.NewReader("one\ntwo\nthree\n"))
	if err != nil || n != 3 {
		t.Fatalf("wrote %d, %v; want 3", n, err)
	}
	client := testkit.NewClient(t, cluster)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := client.Admin.ListEndOffsets(ctx, "lines")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 3 {
		t.Errorf("the topic holds %d messages, want 3", total)
	}
}

// The brokers, not the producer, decide how large a message may be: the
// topic's limit is what the operator set, and sarama's 1 MiB is not it.
func TestProduceWritesWhatTheBrokersAccept(t *testing.T) {
	const limit = 4 << 20
	cluster := testkit.ClusterWith(t, 1, []string{"large"}, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(limit)}))
	cfg := testkit.Config(t, cluster, "http://unused")
	tests := []struct {
		size    int
		wantErr string
	}{
		{2 << 20, ""},
		{limit + 1, "max.message.bytes"},
	}
	for _, tc := range tests {
		n, err := Produce(context.Background(), cfg.SaramaProducer(), cluster.ListenAddrs(), "large", nil, "", []string{strings.Repeat("m", tc.size)}, nil)
		switch {
		case tc.wantErr == "" && (err != nil || n != 1):
			t.Errorf("a message of %d bytes under a limit of %d: wrote %d, %v", tc.size, limit, n, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("a message of %d bytes over a limit of %d: wrote %d, %v; want an error naming %s", tc.size, limit, n, err, tc.wantErr)
		}
	}
}

// With a delimiter, each line carries its key, as kcat -K reads it.
func TestProduceReadsKeysFromLines(t *testing.T) {
	cluster := testkit.ClusterWith(t, 1, []string{"keyed"})
	cfg := testkit.Config(t, cluster, "http://unused")
	in := strings.NewReader("k1:v1\nk2:v:2\nno key here\n:empty key\n")
	n, err := Produce(context.Background(), cfg.SaramaProducer(), cluster.ListenAddrs(), "keyed", nil, ":", nil, in)
	if err != nil || n != 4 {
		t.Fatalf("wrote %d, %v", n, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("keyed"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(got) < 4 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			key := "<none>"
			if r.Key != nil {
				key = string(r.Key)
			}
			got = append(got, key+"="+string(r.Value))
		})
	}
	want := []string{"k1=v1", "k2=v:2", "<none>=no key here", "=empty key"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
