package e2e

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaCluster is an embedded cluster of three brokers on fixed ports that
// keeps its data in a folder, so that it can be stopped and started again
// where it was, as a real cluster restarting would.
type kafkaCluster struct {
	t     *testing.T
	ports []int
	dir   string
	opts  []kfake.Opt

	mu sync.Mutex
	c  *kfake.Cluster
}

// messageMaxBytes lets the cluster take the 1 MiB values of the hostile
// input scenario.
const messageMaxBytes = 16 << 20

// startKafka starts a cluster with the topics, by name and partition count.
func startKafka(t *testing.T, topics map[string]int32) *kafkaCluster {
	t.Helper()
	k := &kafkaCluster{t: t, ports: freePorts(t, 3), dir: t.TempDir()}
	k.opts = []kfake.Opt{
		kfake.NumBrokers(len(k.ports)),
		kfake.Ports(k.ports...),
		kfake.DataDir(k.dir),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(messageMaxBytes)}),
	}
	seeded := append([]kfake.Opt(nil), k.opts...)
	for name, partitions := range topics {
		seeded = append(seeded, kfake.SeedTopics(partitions, name))
	}
	c, err := kfake.NewCluster(seeded...)
	if err != nil {
		t.Fatalf("starting the embedded kafka cluster: %v", err)
	}
	k.c = c
	t.Cleanup(k.Stop)
	return k
}

func (k *kafkaCluster) addrs() []string {
	var out []string
	for _, p := range k.ports {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return out
}

// Stop shuts every broker down, saving the data.
func (k *kafkaCluster) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

// Start brings the brokers back on the same ports with the saved data.
func (k *kafkaCluster) Start() {
	k.t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c != nil {
		return
	}
	var err error
	// The ports were just released: give the kernel a moment if it still
	// holds one of them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		k.c, err = kfake.NewCluster(k.opts...)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		k.t.Fatalf("restarting the embedded kafka cluster: %v", err)
	}
}

// hold makes the brokers sit on every request of the key from now on,
// answering none, as a broker that hangs would, until release is called or
// the test ends. held counts the requests being sat on.
func (k *kafkaCluster) hold(key kmsg.Key) (held *atomic.Int32, release func()) {
	k.mu.Lock()
	c := k.c
	k.mu.Unlock()
	held = &atomic.Int32{}
	released := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	// Registered after the cluster's own cleanup, so run before it: the
	// cluster does not close with requests asleep.
	k.t.Cleanup(release)
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-released:
			c.DropControl()
			return nil, nil, false
		default:
		}
		held.Add(1)
		c.SleepControl(func() { <-released })
		held.Add(-1)
		return nil, nil, false // answered as usual once released
	})
	return held, release
}

// freePorts finds n ports nobody listens on.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// tp is one partition of one topic.
type tp struct {
	Topic     string
	Partition int32
}

func (p tp) String() string { return fmt.Sprintf("%s/%d", p.Topic, p.Partition) }

// message is what was written at one offset.
type message struct {
	Key, Value []byte
	Headers    []kgo.RecordHeader
}

// producedLog is every message written, by partition and offset. The
// topics are new, so offsets start at 0 and have no holes.
type producedLog struct {
	mu   sync.Mutex
	msgs map[tp][]*message
}

func (l *producedLog) add(r *kgo.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msgs == nil {
		l.msgs = make(map[tp][]*message)
	}
	p := tp{r.Topic, r.Partition}
	list := l.msgs[p]
	for int64(len(list)) <= r.Offset {
		list = append(list, nil)
	}
	if list[r.Offset] != nil {
		return fmt.Errorf("%s offset %d written twice", p, r.Offset)
	}
	list[r.Offset] = &message{Key: r.Key, Value: r.Value, Headers: r.Headers}
	l.msgs[p] = list
	return nil
}

// partitions returns a copy of the log, checked to have no holes.
func (l *producedLog) partitions() (map[tp][]*message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[tp][]*message, len(l.msgs))
	for p, list := range l.msgs {
		for off, m := range list {
			if m == nil {
				return nil, fmt.Errorf("%s: offset %d was never acknowledged to the producer", p, off)
			}
		}
		out[p] = append([]*message(nil), list...)
	}
	return out, nil
}

// count returns how many messages were written to the topics.
func (l *producedLog) count(topics ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for p, list := range l.msgs {
		for _, t := range topics {
			if p.Topic == t {
				n += len(list)
			}
		}
	}
	return n
}

// kafkaClient writes messages and reads group offsets, independently of
// the connector's own client.
type kafkaClient struct {
	t   *testing.T
	kgo *kgo.Client
	adm *kadm.Client
	log producedLog
}

func newKafkaClient(t *testing.T, k *kafkaCluster) *kafkaClient {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(k.addrs()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(messageMaxBytes),
		// Writes must survive a cluster restart: kgo retries without
		// limit by default, and no record may be left behind.
		kgo.MaxBufferedRecords(100000),
	)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return &kafkaClient{t: t, kgo: cl, adm: kadm.NewClient(cl)}
}

// produce writes the records, waits for their acknowledgement and logs
// them. It is safe to call from a goroutine: it returns the error instead
// of failing the test.
func (c *kafkaClient) produce(ctx context.Context, records []*kgo.Record) error {
	for start := 0; start < len(records); start += 5000 {
		chunk := records[start:min(start+5000, len(records))]
		if err := c.kgo.ProduceSync(ctx, chunk...).FirstErr(); err != nil {
			return fmt.Errorf("producing: %w", err)
		}
		for _, r := range chunk {
			if err := c.log.add(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// mustProduce writes the records from the test goroutine.
func (c *kafkaClient) mustProduce(records []*kgo.Record) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.produce(ctx, records); err != nil {
		c.t.Fatal(err)
	}
}

// producer writes records in the background, chunk by chunk with a pause
// in between, so that messages keep flowing while a scenario breaks things.
type producer struct {
	done chan struct{}
	err  error
}

func (c *kafkaClient) produceInBackground(records []*kgo.Record, chunk int, pause time.Duration) *producer {
	p := &producer{done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c.t.Cleanup(func() { cancel(); <-p.done })
	go func() {
		defer close(p.done)
		defer cancel()
		for start := 0; start < len(records); start += chunk {
			if err := c.produce(ctx, records[start:min(start+chunk, len(records))]); err != nil {
				p.err = err
				return
			}
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				p.err = ctx.Err()
				return
			}
		}
	}()
	return p
}

// wait waits for every record to be acknowledged.
func (p *producer) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the producer did not finish within 5 minutes")
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
}

// committed returns what the group committed, by partition; -1 for none.
func (c *kafkaClient) committed(ctx context.Context, group string) (map[tp]int64, error) {
	resp, err := c.adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	if err := resp.Error(); err != nil {
		return nil, err
	}
	out := make(map[tp]int64)
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil {
			out[tp{o.Topic, o.Partition}] = o.At
		}
	})
	return out, nil
}

func (c *kafkaClient) mustCommitted(group string) map[tp]int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		got, err := c.committed(ctx, group)
		if err == nil {
			return got
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("reading the offsets of %s: %v", group, last)
	return nil
}

// members returns how many members the group has, or -1 when it cannot
// be told.
func (c *kafkaClient) members(group string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := c.adm.DescribeGroups(ctx, group)
	if err != nil {
		return -1
	}
	g, ok := groups[group]
	switch {
	case !ok:
		return 0
	case g.Err != nil:
		return -1
	}
	return len(g.Members)
}

// floor is the offsets a group had committed at a moment: nothing below
// them may be delivered to the group's function after that moment.
type floor struct {
	At      time.Time // after the offsets were read
	Group   string
	Offsets map[tp]int64
}

// sampler reads the committed offsets of some groups over and over while
// a scenario runs, for the checker's floors.
type sampler struct {
	mu     sync.Mutex
	floors []floor
	stop   context.CancelFunc
	done   chan struct{}
}

func (c *kafkaClient) sampleCommits(groups []string, every time.Duration) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for _, g := range groups {
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				offsets, err := c.committed(rctx, g)
				rcancel()
				if err != nil || len(offsets) == 0 {
					continue // the brokers may be down: no floor this time
				}
				s.mu.Lock()
				s.floors = append(s.floors, floor{At: time.Now(), Group: g, Offsets: offsets})
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	c.t.Cleanup(func() { s.Stop() })
	return s
}

// Stop ends the sampling and returns the floors seen, oldest first.
func (s *sampler) Stop() []floor {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]floor(nil), s.floors...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}
