package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

// Scenario 9: 200 functions on 20 topics, each with its own consumer
// group. Discovery, joining and delivery stay correct, and the memory of
// the connector stays bounded.
func TestManyFunctionsOnManyTopics(t *testing.T) {
	const (
		topics     = 20
		functions  = 200
		partitions = 2
		// The connector keeps a Kafka client, a group and a fetcher per
		// function: a few MiB each is expected, a leak is not.
		peakLimit = 1 << 30
	)
	perTopic := scale(1000, 10000)
	seeded := map[string]int32{}
	for i := range topics {
		seeded[fmt.Sprintf("topic-%02d", i)] = partitions
	}
	e := newEnv(t, seeded)
	e.gw.keepBodies = false
	var fns []types.Function
	subs := map[string][]string{}
	for i := range functions {
		name := fmt.Sprintf("fn-%03d", i)
		ts := []string{fmt.Sprintf("topic-%02d", i%topics)}
		// Every tenth function also takes the next topic.
		if i%10 == 0 {
			ts = append(ts, fmt.Sprintf("topic-%02d", (i+1)%topics))
		}
		subs[name] = ts
		annotation := ts[0]
		for _, t := range ts[1:] {
			annotation += "," + t
		}
		fns = append(fns, fn(name, annotation))
	}
	e.gw.SetFunctions(fns...)

	// Refreshing 200 triggers' metadata twice a second would be most of
	// the load: once every 2 s is what a busy deployment would use.
	s := e.settings().with("rebuild_interval", "2s")
	p := startConnector(t, "connector", s)
	p.waitReady(180 * time.Second)
	joined := time.Since(p.started)
	if n := len(p.find("joined consumer group")); n < functions {
		t.Errorf("%d triggers joined their groups, want %d", n, functions)
	}
	rssReady, _ := p.memory()

	produce := func(wave int) {
		for i := range topics {
			topic := fmt.Sprintf("topic-%02d", i)
			e.client.mustProduce(workload(topic, partitions, perTopic, uint64(100*wave+i)))
		}
	}
	began := time.Now()
	produce(1)
	e.waitDelivered(300*time.Second, subs, p)
	firstWave := time.Since(began)
	rss1, peak1 := p.memory()
	began = time.Now()
	produce(2)
	e.waitDelivered(300*time.Second, subs, p)
	secondWave := time.Since(began)
	rss2, peak := p.memory()

	if peak > peakLimit {
		t.Errorf("peak resident memory %d MiB, over %d MiB", peak>>20, peakLimit>>20)
	}
	// A second wave as large as the first must not need much more memory:
	// what the first one used was given back or reused. Peaks are compared:
	// the resident memory at one moment after a wave depends on when Go's
	// scavenger last gave memory back, and varied from 125 to 254 MiB
	// after the same second wave.
	if peak > peak1*3/2+64<<20 {
		t.Errorf("peak resident memory grew from %d MiB over the first wave to %d MiB over the second", peak1>>20, peak>>20)
	}
	if code := p.terminate(60 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	p.assertNoCrash()
	v := check(t, e.produced(), e.gw.Calls(""), e.expect(subs, nil))
	if v.Duplicates != 0 {
		t.Errorf("%d duplicates, want none", v.Duplicates)
	}
	e.summary(v, "%d functions ready in %v; waves delivered in %v and %v; RSS %d MiB ready, %d MiB after wave 1, %d MiB after wave 2, peak %d MiB",
		functions, joined.Round(100*time.Millisecond), firstWave.Round(100*time.Millisecond), secondWave.Round(100*time.Millisecond),
		rssReady>>20, rss1>>20, rss2>>20, peak>>20)
}
