// Package testkit gives the tests real parts to run against: an embedded
// Kafka-protocol cluster of several brokers, an independent Kafka client
// (franz-go) to write messages and read group offsets, a recording gateway
// behind a real HTTP server, and a running connector.
package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/types"
)

// Brokers is how many brokers a test cluster has.
const Brokers = 3

// Cluster starts an embedded cluster of Brokers brokers with the topics,
// each of partitions partitions. It is closed when the test ends.
func Cluster(t testing.TB, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	return ClusterWith(t, partitions, topics)
}

// ClusterWith is Cluster with more options, such as TLS or SASL.
func ClusterWith(t testing.TB, partitions int32, topics []string, more ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	return newCluster(t, partitions, topics, append([]kfake.Opt{kfake.AllowAutoTopicCreation()}, more...))
}

// ClusterWithoutAutoCreate is ClusterWith on a cluster that creates no
// topic on demand, as most production clusters are set up: writing to a
// topic that does not exist fails.
func ClusterWithoutAutoCreate(t testing.TB, partitions int32, topics []string, more ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	return newCluster(t, partitions, topics, more)
}

func newCluster(t testing.TB, partitions int32, topics []string, more []kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(Brokers), kfake.DefaultNumPartitions(int(partitions))}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(append(opts, more...)...)
	if err != nil {
		t.Fatalf("starting the embedded kafka cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Client is an independent Kafka client for writing messages and reading
// what the connector committed.
type Client struct {
	t       testing.TB
	Cluster *kfake.Cluster
	Kgo     *kgo.Client
	Admin   *kadm.Client
}

// NewClient connects a client to the cluster. Records with a partition set
// go to that partition.
func NewClient(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	}, opts...)...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return &Client{t: t, Cluster: c, Kgo: cl, Admin: kadm.NewClient(cl)}
}

// Produce writes the records and waits for them to be acknowledged.
func (c *Client) Produce(records ...*kgo.Record) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for start := 0; start < len(records); start += 10000 {
		end := min(start+10000, len(records))
		if err := c.Kgo.ProduceSync(ctx, records[start:end]...).FirstErr(); err != nil {
			c.t.Fatalf("producing: %v", err)
		}
	}
}

// CreateTopic creates a topic.
func (c *Client) CreateTopic(topic string, partitions int32) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Admin.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		c.t.Fatalf("creating topic %s: %v", topic, err)
	}
}

// Committed returns the offsets the group committed, by topic and
// partition; none for a group that never committed.
func (c *Client) Committed(group string) map[string]map[int32]int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Admin.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[string]map[int32]int64{}
	}
	if err != nil {
		c.t.Fatalf("fetching the offsets of %s: %v", group, err)
	}
	out := make(map[string]map[int32]int64)
	resp.Each(func(o kadm.OffsetResponse) {
		if out[o.Topic] == nil {
			out[o.Topic] = make(map[int32]int64)
		}
		out[o.Topic][o.Partition] = o.At
	})
	return out
}

// Members returns how many members the group has.
func (c *Client) Members(group string) int {
	c.t.Helper()
	return len(c.describe(group).Members)
}

func (c *Client) describe(group string) kadm.DescribedGroup {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := c.Admin.DescribeGroups(ctx, group)
	if err != nil {
		c.t.Fatalf("describing %s: %v", group, err)
	}
	return groups[group]
}

// Assignment is how a group shares out the partitions of topic: the
// owner of each assigned partition, named by its instance id (or its member
// id when it has none), the assignor the group chose, and the group's state
// ("Stable" once a rebalance is over).
func (c *Client) Assignment(group, topic string) (owners map[int32]string, assignor, state string) {
	c.t.Helper()
	g := c.describe(group)
	owners = make(map[int32]string)
	for _, m := range g.Members {
		name := m.MemberID
		if m.InstanceID != nil {
			name = *m.InstanceID
		}
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, t := range a.Topics {
			if t.Topic != topic {
				continue
			}
			for _, p := range t.Partitions {
				owners[p] = name
			}
		}
	}
	return owners, g.Protocol, g.State
}

// Record makes a record for a partition of a topic.
func Record(topic string, partition int32, key, value []byte) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Key: key, Value: value}
}

// Gateway starts a recording gateway behind a real HTTP server.
func Gateway(t testing.TB) (*gatewaytest.Gateway, string) {
	g := &gatewaytest.Gateway{}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv.URL
}

// Config is the connector configuration the tests start from: the defaults,
// with the waits shortened so that tests run quickly.
func Config(t testing.TB, c *kfake.Cluster, gatewayURL string) config.Config {
	t.Helper()
	cfg := config.Config{
		GatewayURL:          gatewayURL,
		Brokers:             c.ListenAddrs(),
		TopicDelimiter:      ",",
		Group:               "kafka-connector",
		MaxMessages:         100,
		MaxWait:             50 * time.Millisecond,
		MaxBytes:            6291456,
		MaxBufferedBytes:    1 << 20,
		CommitInterval:      time.Second,
		UpstreamTimeout:     10 * time.Second,
		RebuildInterval:     200 * time.Millisecond,
		RetryBackoffInitial: 20 * time.Millisecond,
		RetryBackoffMax:     time.Second,
		MaxRetries:          -1,
		ContentType:         "application/json",
		ShutdownTimeout:     10 * time.Second,
		LogFormat:           "text",
		LogLevel:            "info",
		KafkaVersion:        "3.6.0",
		IsolationLevel:      types.ReadCommitted,
		ResponseDelivery:    types.AtLeastOnce,
		HTTPAddr:            "127.0.0.1:0",
		Ordering:            "partition",
	}
	cfg.InitialOffset.Earliest = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	return cfg
}

// Running is a connector running in the background.
type Running struct {
	*connector.Connector
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	logs   *SyncBuffer
}

// Logs returns what the connector logged so far, one JSON object a line.
func (r *Running) Logs() string { return r.logs.String() }

// Start runs a connector with cfg, after the options have set it up. It
// is stopped when the test ends, if the test did not stop it before.
func Start(t testing.TB, cfg config.Config, options ...func(*connector.Connector)) *Running {
	t.Helper()
	gw := cfg.Gateway()
	logs := &SyncBuffer{}
	var out io.Writer = logs
	if testing.Verbose() {
		out = io.MultiWriter(logs, os.Stderr)
	}
	level, err := config.ParseLevel(cfg.LogLevel)
	if err != nil {
		t.Fatal(err)
	}
	c := connector.New(cfg, gw, slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level})))
	for _, o := range options {
		o(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Connector: c, cancel: cancel, done: make(chan struct{}), logs: logs}
	go func() {
		defer close(r.done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("connector stopped with %v", err)
		}
	}()
	t.Cleanup(r.Stop)
	return r
}

// Stop asks the connector to shut down and waits until it has.
func (r *Running) Stop() {
	r.once.Do(r.cancel)
	<-r.done
}

// SyncBuffer is a bytes.Buffer that goroutines may share.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Logger logs to the test output when the test runs with -v, and nowhere
// otherwise.
func Logger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
}

// Eventually waits until cond holds, failing the test with what when it
// does not hold within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, fmt.Sprintf(what, args...))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ReadAll reads topic from the start until it has n records, failing the
// test if they do not come within timeout.
func ReadAll(t testing.TB, c *kfake.Cluster, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s within %v", len(out), n, topic, timeout)
		}
		fetches.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// FailProduces makes the cluster refuse the next n produce requests that
// write to topic, with a retriable error, as a broker short of replicas does.
func FailProduces(c *kfake.Cluster, topic string, n int) *atomic.Int32 {
	return RefuseProduces(c, topic, n, kerr.NotEnoughReplicas)
}

// RefuseProduces makes the cluster refuse the next n produce requests that
// write to topic with the error code of refusal, such as
// kerr.TopicAuthorizationFailed for a client without the WRITE ACL.
func RefuseProduces(c *kfake.Cluster, topic string, n int, refusal *kerr.Error) *atomic.Int32 {
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		touches := false
		for _, t := range pr.Topics {
			touches = touches || t.Topic == topic
		}
		if !touches {
			return nil, nil, false
		}
		if int(refused.Load()) >= n {
			c.DropControl()
			return nil, nil, false
		}
		refused.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = refusal.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return &refused
}
