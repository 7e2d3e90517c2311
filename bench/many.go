package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/types"
)

// The "many" phase: what a thousand subscribed functions cost one replica.
// 1,000 functions are spread over 10 topics of 3 partitions, each topic
// holding one message per partition, with the default rebuild_interval,
// on an embedded cluster of its own of -many-brokers brokers (3 by
// default, as real clusters have at least), each partition led by one of
// them at random. It reports how long until every function received its
// first messages, then the process's CPU while nothing flows, its memory,
// and its connections to the brokers.

const (
	manyFunctions = 1000
	manyTopics    = 10
	manyParts     = 3
	manyIdle      = 30 * time.Second
)

type manyResult struct {
	allFirst time.Duration // from the start of the process to the last function's first delivery
	idleCPU  float64       // share of one core while idle
	rss      int64         // resident memory at the end of the idle window
	peakRSS  int64
	brokers  int
	conns    int // established connections to the brokers, idle
	// leaders is how many partitions each broker leads.
	leaders map[int32]int
	// fetchers is the connections the functions need to fetch: for each,
	// one to each broker leading a partition of its topic.
	fetchers int
}

func (b *bench) many() (*manyResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(b.manyBrokers))
	if err != nil {
		return nil, fmt.Errorf("starting %d brokers: %w", b.manyBrokers, err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var topics []string
	var recs []*kgo.Record
	for i := range manyTopics {
		t := fmt.Sprintf("many-%d", i)
		topics = append(topics, t)
		for p := range int32(manyParts) {
			recs = append(recs, &kgo.Record{Topic: t, Partition: p, Value: []byte("hello")})
		}
	}
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopics(ctx, manyParts, 1, nil, topics...); err != nil {
		return nil, fmt.Errorf("creating the topics: %w", err)
	}
	leaders := map[int32]int{}
	topicLeaders := map[string]int{} // brokers leading a partition of each topic
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("reading the topics' leaders: %w", err)
	}
	for _, t := range md.Topics {
		distinct := map[int32]bool{}
		for _, p := range t.Partitions {
			leaders[p.Leader]++
			distinct[p.Leader] = true
		}
		topicLeaders[t.Topic] = len(distinct)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, fmt.Errorf("writing a message to each partition: %w", err)
	}

	var (
		mu      sync.Mutex
		first   = make(map[string]time.Time, manyFunctions)
		reached = make(chan struct{})
		seen    atomic.Int64
	)
	fns := make([]types.Function, 0, manyFunctions)
	for i := range manyFunctions {
		name := fmt.Sprintf("many-fn-%d", i)
		fns = append(fns, types.Function{Name: name, Annotations: map[string]string{types.TopicAnnotation: topics[i%manyTopics]}})
		b.gw.Handle(name, func(c *gatewaytest.Call) (int, []byte) {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := first[name]; !ok {
				first[name] = time.Now()
				if seen.Add(1) == manyFunctions {
					close(reached)
				}
			}
			return 200, nil
		})
	}
	b.gw.SetFunctions(fns...)
	defer b.gw.SetFunctions()

	env := []string{
		"gateway_url=" + b.gwURL,
		"broker_hosts=" + strings.Join(brokers, ","),
		"group=bench-many",
		"initial_offset=earliest",
		"log_level=warn",
	}
	started := time.Now()
	co := childOptions{kind: "connector", binary: b.connectorBinary}
	if b.profileDir != "" {
		// The CPU profile of the idle window, between the two marks, and
		// the heap at its start and end.
		co.cpuProfile = fmt.Sprintf("%s/many-%d-brokers-idle.cpu.pprof", b.profileDir, b.manyBrokers)
		co.memProfile = fmt.Sprintf("%s/many-%d-brokers-idle.allocs.pprof", b.profileDir, b.manyBrokers)
	}
	c, err := startChild(co, env)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	select {
	case <-reached:
	case <-c.exited:
		return nil, fmt.Errorf("the measured process exited: %v", c.exitErr)
	case <-time.After(3 * time.Minute):
		return nil, fmt.Errorf("%d of %d functions received a message within 3 minutes", seen.Load(), manyFunctions)
	}
	var last time.Time
	mu.Lock()
	for _, at := range first {
		if at.After(last) {
			last = at
		}
	}
	mu.Unlock()
	r := &manyResult{allFirst: last.Sub(started), brokers: b.manyBrokers, leaders: leaders}
	for i := range manyFunctions {
		r.fetchers += topicLeaders[topics[i%manyTopics]]
	}

	// Idle: every message is delivered; wait for the commits and the
	// groups to settle, then measure a window with nothing flowing.
	time.Sleep(5 * time.Second)
	m0, err := c.mark()
	if err != nil {
		return nil, err
	}
	time.Sleep(manyIdle)
	m1, err := c.mark()
	if err != nil {
		return nil, err
	}
	r.idleCPU = (m1.CPU - m0.CPU).Seconds() / manyIdle.Seconds()
	if r.conns, err = procConnections(c.pid(), brokers); err != nil {
		return nil, err
	}
	if r.rss, err = procRSS(c.pid(), "VmRSS:"); err != nil {
		return nil, err
	}
	if r.peakRSS, err = procPeakRSS(c.pid()); err != nil {
		return nil, err
	}
	log.Printf("many functions: %d functions on %d topics of %d partitions, %d brokers leading %v partitions: all received their first messages %v after start; idle %.1f%% of a core; RSS %.0f MiB (peak %.0f MiB); %d connections to the brokers, of which the fetches need %d",
		manyFunctions, manyTopics, manyParts, r.brokers, r.leaders, r.allFirst.Round(100*time.Millisecond), 100*r.idleCPU, mib(r.rss), mib(r.peakRSS), r.conns, r.fetchers)
	return r, nil
}

// table is the phase's part of the report, with its targets.
func (r *manyResult) table() string {
	return fmt.Sprintf(`
| %d functions, %d topics of %d partitions, one replica, %d broker(s) | measured | target |
|---|---|---|
| every function's first messages | %v after start | within 20 s |
| idle CPU, default rebuild_interval | %.1f%% of a core | under 10%% |
| resident memory | %.0f MiB (peak %.0f MiB) | under 400 MiB |
| connections to the brokers, idle | %d, of which %d to fetch (one a function and broker leading a partition of its topic) | – |
`, manyFunctions, manyTopics, manyParts, r.brokers, r.allFirst.Round(100*time.Millisecond), 100*r.idleCPU, mib(r.rss), mib(r.peakRSS), r.conns, r.fetchers)
}
