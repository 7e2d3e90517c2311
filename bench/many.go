package main

import (
	"context"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/types"
)

// The "many" phase: what a thousand subscribed functions cost one replica.
// 1,000 functions are spread over 10 topics of 3 partitions, each topic
// holding one message per partition, with the default rebuild_interval.
// It reports how long until every function received its first messages,
// then the process's CPU while nothing flows, and its memory.

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
}

func (b *bench) many() (*manyResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
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
	if _, err := kadm.NewClient(cl).CreateTopics(ctx, manyParts, 1, nil, topics...); err != nil {
		return nil, fmt.Errorf("creating the topics: %w", err)
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
		"broker_hosts=" + b.brokers[0],
		"group=bench-many",
		"initial_offset=earliest",
		"log_level=warn",
	}
	started := time.Now()
	c, err := startChild(childOptions{kind: "connector"}, env)
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
	r := &manyResult{allFirst: last.Sub(started)}

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
	if r.rss, err = procRSS(c.pid(), "VmRSS:"); err != nil {
		return nil, err
	}
	if r.peakRSS, err = procPeakRSS(c.pid()); err != nil {
		return nil, err
	}
	log.Printf("many functions: %d functions on %d topics of %d partitions: all received their first messages %v after start; idle %.1f%% of a core; RSS %.0f MiB (peak %.0f MiB)",
		manyFunctions, manyTopics, manyParts, r.allFirst.Round(100*time.Millisecond), 100*r.idleCPU, mib(r.rss), mib(r.peakRSS))
	return r, nil
}

// table is the phase's part of the report, with its targets.
func (r *manyResult) table() string {
	return fmt.Sprintf(`
| %d functions, %d topics of %d partitions, one replica | measured | target |
|---|---|---|
| every function's first messages | %v after start | within 20 s |
| idle CPU, default rebuild_interval | %.1f%% of a core | under 10%% |
| resident memory | %.0f MiB (peak %.0f MiB) | under 400 MiB |
`, manyFunctions, manyTopics, manyParts, r.allFirst.Round(100*time.Millisecond), 100*r.idleCPU, mib(r.rss), mib(r.peakRSS))
}
