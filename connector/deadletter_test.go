package connector_test

import (
	"bytes"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// A dead letter may be as large as the message it carries, which may be as
// large as the brokers accept: sarama's own 1 MiB limit must not refuse it.
func TestDeadLettersAsLargeAsTheBrokersAccept(t *testing.T) {
	const limit = 8 << 20
	cluster := testkit.ClusterWith(t, partitions, []string{"big", "big.dlq"},
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(limit)}))
	gw, url := testkit.Gateway(t)
	client := testkit.NewClient(t, cluster, kgo.ProducerBatchMaxBytes(limit))
	cfg := testkit.Config(t, cluster, url)
	gw.SetFunctions(fn("strict", "big"))
	gw.Handle("strict", failValues)
	cfg.MaxRetries = 0
	cfg.DeadLetterTopic = "big.dlq"
	value := append([]byte("bad-"), bytes.Repeat([]byte("x"), 3<<20)...)
	client.Produce(testkit.Record("big", 0, nil, value))
	testkit.Start(t, cfg)

	letters := testkit.ReadAll(t, cluster, "big.dlq", 1, 30*time.Second)
	if !bytes.Equal(letters[0].Value, value) {
		t.Errorf("dead letter of %d bytes, want the %d bytes of the message", len(letters[0].Value), len(value))
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-strict")["big"][0] == 1 },
		"committed once the dead letter is written")
}

// The brokers judge a record batch as a whole: dead letters that each fit
// the topic's limit must not be refused for being sent together.
func TestDeadLettersThatFitOneByOneAreWrittenTogether(t *testing.T) {
	client, gw, cfg := setup(t, "wide")
	client.CreateTopic("wide.dlq", 1) // every dead letter to one partition
	gw.SetFunctions(fn("strict", "wide"))
	gw.Handle("strict", failValues)
	cfg.MaxRetries = 0
	cfg.DeadLetterTopic = "wide.dlq"
	var recs []*kgo.Record
	for i := 0; i < 10; i++ { // 3 MB in all, each a third of the 1 MiB limit
		recs = append(recs, testkit.Record("wide", 0, nil, append([]byte("bad-"), bytes.Repeat([]byte("y"), 300<<10)...)))
	}
	client.Produce(recs...)
	testkit.Start(t, cfg)
	testkit.ReadAll(t, client.Cluster, "wide.dlq", len(recs), 30*time.Second)
	testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-strict")["wide"][0] == 10 },
		"committed once the dead letters are written")
}

// A dead-letter write that cannot succeed until someone acts says so, with
// what to do, and is counted by reason; the partition waits, uncommitted,
// and goes on once the cause is fixed.
func TestDeadLetterWritesThatCannotSucceedSaySo(t *testing.T) {
	tests := []struct {
		name    string
		refuse  func(client *testkit.Client) (fix func())
		reason  string
		logLine string
	}{
		{
			name: "missing topic",
			refuse: func(client *testkit.Client) func() {
				return func() { client.CreateTopic("bills.dlq", 1) }
			},
			reason:  "unknown_topic",
			logLine: "the dead-letter topic does not exist",
		},
		{
			name: "write denied",
			refuse: func(client *testkit.Client) func() {
				client.CreateTopic("bills.dlq", 1)
				refused := testkit.RefuseProduces(client.Cluster, "bills.dlq", 1000, kerr.TopicAuthorizationFailed)
				return func() { refused.Store(1000) }
			},
			reason:  "not_authorized",
			logLine: "the brokers do not let the connector write to the dead-letter topic",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cluster := testkit.ClusterWithoutAutoCreate(t, partitions, []string{"bills"})
			gw, url := testkit.Gateway(t)
			client := testkit.NewClient(t, cluster)
			cfg := testkit.Config(t, cluster, url)
			gw.SetFunctions(fn("strict", "bills"))
			gw.Handle("strict", failValues)
			cfg.MaxRetries = 0
			cfg.DeadLetterTopic = "bills.dlq"
			fix := tc.refuse(client)
			client.Produce(testkit.Record("bills", 1, nil, []byte("bad")))
			r := testkit.Start(t, cfg)
			metrics := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
			defer metrics.Close()

			counted := regexp.MustCompile(`kafka_connector_dead_letter_errors_total\{function="strict",reason="` + tc.reason + `",topic="bills"\} ([0-9]+)`)
			testkit.Eventually(t, 30*time.Second, func() bool {
				m := counted.FindStringSubmatch(scrapeMetrics(t, metrics.URL))
				return m != nil && m[1] != "0" && m[1] != "1" && strings.Contains(r.Logs(), tc.logLine)
			}, "two failed dead-letter writes counted as %s, and the log saying what to do:\n%s\n%s",
				tc.reason, grep(scrapeMetrics(t, metrics.URL), "dead_letter"), r.Logs())
			if got, ok := client.Committed("kafka-connector-strict")["bills"][1]; ok && got > 0 {
				t.Fatalf("committed %d while the dead letter could not be written", got)
			}

			fix()
			letters := testkit.ReadAll(t, cluster, "bills.dlq", 1, 30*time.Second)
			if string(letters[0].Value) != "bad" {
				t.Errorf("dead letter %q", letters[0].Value)
			}
			testkit.Eventually(t, 10*time.Second, func() bool { return client.Committed("kafka-connector-strict")["bills"][1] == 1 },
				"committed once the dead letter is written")
		})
	}
}
