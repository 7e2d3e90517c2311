// Command bench measures the connector against the limit of the Kafka client
// it is built on, on one machine, in one run: see README.md.
//
//	go run ./bench            # the full benchmark: 1,000,000 messages, 3 runs
//	go run ./bench -quick     # a smoke run of a few seconds
//
// An embedded broker (kfake) holds a backlog of -n messages of 100 bytes on
// a topic of 12 partitions. Each phase reads it with a fresh consumer group,
// in a process of its own so that its CPU time and memory are measured
// apart from the broker's and the function's:
//
//   - the limit: a bare sarama consumer group, with the connector's sarama
//     settings, that counts and marks the messages and does nothing else;
//   - the connector, for max_messages 1000, 100 and 1, feeding a trivial
//     function served by this process (it decodes each event and answers
//     200), from the first fetch to the invocation that completes the
//     backlog;
//   - the connector over a backlog three times smaller: its peak memory,
//     against the peak of the full backlog's phase after as many messages,
//     shows whether memory grows with the backlog;
//   - the connector over a backlog of large messages (64 KiB) for a slow
//     function (200 ms a call) with max_messages=10: its peak memory is
//     what the connector reads ahead of what it delivers;
//   - the connector at a steady 2,000 messages a second, for the
//     produce-to-invoke latency.
//
// Every figure is compared with the limit measured in the same run, and the
// table gives the median of the runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/types"
)

type options struct {
	n, n1, runs    int
	partitions     int
	size           int
	maxWait        time.Duration
	rate           float64
	latencyFor     time.Duration
	latencyWarmup  time.Duration
	latencyMaxMsgs int
	phaseTimeout   time.Duration
	profileDir     string
	only           string
	decodeAll      bool
	// The large-message phase: largeN messages of largeSize bytes, a
	// function that takes largeDelay a call, largeMaxMessages a batch.
	largeN, largeSize, largeMaxMessages int
	concN                               int
	concKeys                            []int // keys of each backlog of the concurrency comparison
	largeDelay                          time.Duration
	bufferedBytes                       int    // max_buffered_bytes of every connector phase; 0: the default
	manyBrokers                         int    // brokers of the many phase's cluster
	connectorBinary                     string // a built kafka-connector to measure instead of the connector package
}

func main() {
	log.SetFlags(0)
	var (
		o     options
		quick bool
		co    childOptions
	)
	flag.IntVar(&o.n, "n", 1_000_000, "messages in the backlog each throughput phase consumes")
	flag.IntVar(&o.n1, "n1", 0, "messages the max_messages=1 phase delivers (0: all of -n)")
	flag.IntVar(&o.runs, "runs", 3, "runs; the table gives the median of each figure")
	flag.BoolVar(&quick, "quick", false, "a smoke run: 20,000 messages, 1 run, 3 s of latency")
	flag.IntVar(&o.partitions, "partitions", 12, "partitions of each topic")
	flag.IntVar(&o.size, "size", 100, "bytes of each message value")
	flag.DurationVar(&o.maxWait, "max-wait", 10*time.Millisecond, "the connector's max_wait")
	flag.Float64Var(&o.rate, "rate", 2000, "messages a second of the latency phase")
	flag.DurationVar(&o.latencyFor, "latency-for", 10*time.Second, "how long latency is measured, after the warm-up")
	flag.DurationVar(&o.latencyWarmup, "latency-warmup", 2*time.Second, "time after the first invocation before latency is measured")
	flag.IntVar(&o.latencyMaxMsgs, "latency-max-messages", 100, "the connector's max_messages in the latency phase")
	flag.DurationVar(&o.phaseTimeout, "timeout", 20*time.Minute, "the longest a phase may take")
	flag.BoolVar(&o.decodeAll, "decode", false, "the function decodes every event with encoding/json, not one in 64 (the others are validated and counted)")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU and allocation profiles of the connector phases, and CPU profiles of the broker and function, to this folder")
	flag.StringVar(&o.only, "phases", "bare,1000,100,filter,avro,tracing,respond,1,small,large,latency,concurrency,many", "the phases to run, comma-separated; concurrency-key is the concurrency comparison's ordering=key phases alone")
	flag.IntVar(&o.largeN, "large-n", 4800, "messages of the large-message phase")
	flag.IntVar(&o.concN, "concurrency-n", 120_000, "messages of each phase of the concurrency comparison")
	concKeys := flag.String("concurrency-keys", "1000,120,12000", "keys of the concurrency comparison's backlogs, comma-separated: every phase runs over the first, ordering=key over the others too")
	flag.IntVar(&o.largeSize, "large-size", 64<<10, "bytes of each message value in the large-message phase")
	flag.DurationVar(&o.largeDelay, "large-delay", 200*time.Millisecond, "how long the function of the large-message phase takes a call")
	flag.IntVar(&o.largeMaxMessages, "large-max-messages", 10, "the connector's max_messages in the large-message phase")
	flag.IntVar(&o.manyBrokers, "many-brokers", 3, "brokers of the embedded cluster of the many phase")
	flag.StringVar(&o.connectorBinary, "connector-binary", "", "measure this built kafka-connector command instead of the benchmark's own run of the connector package: the program users run, with its HTTP server and signal handling; its CPU is read from /proc, its allocations are not known (shown as 0)")
	flag.IntVar(&o.bufferedBytes, "max-buffered-bytes", 0, "the connector's max_buffered_bytes in every phase (0: its default)")
	// The measured process: this program started again (see child.go).
	flag.StringVar(&co.kind, "child", "", "run as the measured process: connector or consumer")
	flag.StringVar(&co.topic, "topic", "", "with -child=consumer: the topic")
	flag.StringVar(&co.cpuProfile, "cpuprofile", "", "with -child: the CPU profile between the first and second mark")
	flag.StringVar(&co.memProfile, "memprofile", "", "with -child: the allocation profile at the second mark (and .base at the first), and the goroutine profile beside it")
	flag.Parse()

	if co.kind != "" {
		co.target = o.n
		if err := runChild(co); err != nil {
			log.Fatalf("bench -child=%s: %v", co.kind, err)
		}
		return
	}
	if quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["n"] {
			o.n = 20_000
		}
		if !set["runs"] {
			o.runs = 1
		}
		if !set["latency-for"] {
			o.latencyFor = 3 * time.Second
		}
		if !set["latency-warmup"] {
			o.latencyWarmup = time.Second
		}
		if !set["large-n"] {
			o.largeN = 1200
		}
	}
	for _, f := range strings.Split(*concKeys, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			log.Fatalf("bench: -concurrency-keys %q: want positive whole numbers, comma-separated", *concKeys)
		}
		o.concKeys = append(o.concKeys, k)
	}
	if o.n1 <= 0 || o.n1 > o.n {
		o.n1 = o.n
	}
	if o.runs < 1 || o.n < 1000 || o.partitions < 1 || o.size < 32 || o.largeSize < 32 || o.largeN < o.partitions || o.largeMaxMessages < 1 {
		log.Fatal("bench: want -runs >= 1, -n >= 1000, -partitions >= 1, -size >= 32, -large-size >= 32, -large-n >= -partitions, -large-max-messages >= 1")
	}
	if err := run(o); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

// Topics: the backlog, the backlog smallerBy times smaller, the backlog of
// large messages, and one empty topic for each run's latency phase.
const (
	topicBacklog = "backlog"
	topicSmall   = "backlog-small"
	topicLarge   = "backlog-large"
	topicKeyed   = "backlog-keyed"
	topicAnswers = "answers"
	smallerBy    = 3
)

func latencyTopic(run int) string { return "steady-" + strconv.Itoa(run) }

type bench struct {
	options
	cluster *kfake.Cluster
	brokers []string
	gw      *gatewaytest.Gateway
	gwURL   string
	avro    *avroBacklog // the registry of the Avro phase
}

func run(o options) error {
	m := describeMachine()
	log.Printf("machine: %s", m)

	topics := []string{topicBacklog, topicSmall, topicLarge, topicAvro, topicAnswers}
	for _, k := range o.concKeys {
		topics = append(topics, keyedTopic(k))
	}
	for r := 1; r <= o.runs; r++ {
		topics = append(topics, latencyTopic(r))
	}
	cluster, err := startCluster(int32(o.partitions), topics...)
	if err != nil {
		return fmt.Errorf("starting the embedded broker: %w", err)
	}
	defer cluster.Close()
	b := &bench{options: o, cluster: cluster, brokers: cluster.ListenAddrs(), gw: &gatewaytest.Gateway{NoRecord: true}}
	srv := httptest.NewServer(b.gw)
	defer srv.Close()
	b.gwURL = srv.URL

	ctx := context.Background()
	start := time.Now()
	if b.phase("bare") || b.phase("1000") || b.phase("100") || b.phase("filter") || b.phase("tracing") || b.phase("1") || b.phase("respond") {
		if err := produceBacklog(ctx, b.brokers, topicBacklog, int32(o.partitions), o.n, o.size); err != nil {
			return err
		}
	}
	if b.phase("avro") {
		if b.avro, err = startAvro(); err != nil {
			return fmt.Errorf("starting the schema registry: %w", err)
		}
		defer b.avro.close()
		if err := produceAvro(ctx, b.brokers, topicAvro, int32(o.partitions), o.n, b.avro); err != nil {
			return err
		}
	}
	if b.phase("small") {
		if err := produceBacklog(ctx, b.brokers, topicSmall, int32(o.partitions), o.n/smallerBy, o.size); err != nil {
			return err
		}
	}
	if b.phase("large") {
		if err := produceBacklog(ctx, b.brokers, topicLarge, int32(o.partitions), o.largeN, o.largeSize); err != nil {
			return err
		}
	}
	keyCounts := map[int][]int{}
	if b.phase("concurrency") || b.phase("concurrency-key") {
		for _, k := range o.concKeys {
			counts, err := produceKeyed(ctx, b.brokers, keyedTopic(k), int32(o.partitions), o.concN, o.size, k)
			if err != nil {
				return err
			}
			keyCounts[k] = counts
			log.Printf("%d keys placed by murmur2: %s a partition", k, keysPerPartition(counts))
		}
	}
	log.Printf("backlogs written in %v", time.Since(start).Round(time.Millisecond))
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}

	var runs []runResult
	for r := 1; r <= o.runs; r++ {
		rr, err := b.oneRun(r)
		if err != nil {
			return fmt.Errorf("run %d: %w", r, err)
		}
		runs = append(runs, rr)
	}
	var many *manyResult
	if b.phase("many") {
		if many, err = b.many(); err != nil {
			return fmt.Errorf("many functions: %w", err)
		}
	}
	m.loadEnd = loadAverage()
	if mainPhases(runs) {
		fmt.Print(table(o, m, runs))
	} else {
		fmt.Printf("\nMachine: %s at the start, %s at the end.\n", m, m.loadEnd)
	}
	fmt.Print(concTable(o, runs, keyCounts))
	fmt.Print(respondTable(o, runs))
	if many != nil {
		fmt.Print(many.table())
	}
	return nil
}

// mainPhases reports whether the runs measured any phase of the main
// table, beside the concurrency comparison.
func mainPhases(runs []runResult) bool {
	for _, r := range runs {
		if len(r.bare) > 0 || len(r.batches) > 0 || r.filtered != nil || r.small != nil || r.large != nil || r.latency != nil {
			return true
		}
	}
	return false
}

func (b *bench) phase(name string) bool {
	return slices.Contains(strings.Split(b.only, ","), name)
}

// limit is the best rate of the run's bare consumer phases, 0 if there
// were none: other work on the machine only ever slows a phase down.
func (r runResult) limit() float64 {
	limit := 0.0
	for _, p := range r.bare {
		limit = max(limit, p.rate())
	}
	return limit
}

// runResult is what one run measured.
type runResult struct {
	bare    []*phaseResult       // the limit, measured twice
	batches map[int]*phaseResult // the connector, by max_messages
	// filtered is the connector with filterMaxMessages and a filter passing
	// one message in ten; its messages are those read, not delivered.
	filtered *phaseResult
	// avro is the connector with avroMaxMessages over Avro values decoded
	// through the schema registry.
	avro  *phaseResult
	small *phaseResult // the connector, max_messages=1, backlog n/smallerBy
	large *phaseResult // the connector, large messages, a slow function
	// conc are the phases of the concurrency comparison, in the order
	// they ran.
	conc    []concResult
	latency *latencyResult

	// traced and untraced are the connector with tracingMaxMessages,
	// tracing on and off (see tracing.go).
	traced, untraced *phaseResult
	// answers are the response-topic phases, in respondPhases' order.
	answers []*phaseResult
}

// phaseResult is one consumer over one backlog, between the first fetch and
// the delivery of the last message it was asked for.
type phaseResult struct {
	messages    int64
	invocations int64
	elapsed     time.Duration
	cpu         time.Duration // user and system CPU time of the consumer process
	hostCPU     time.Duration // of this process: the broker and the function
	mallocs     uint64        // heap objects it allocated
	allocBytes  uint64
	peakRSS     int64 // since it started, bytes
	// peakRSSAtCheckpoint is the peak when the first n/smallerBy messages
	// were delivered, to compare with the smaller backlog's.
	peakRSSAtCheckpoint int64
}

func (p *phaseResult) rate() float64 { return float64(p.messages) / p.elapsed.Seconds() }
func (p *phaseResult) invocationRate() float64 {
	return float64(p.invocations) / p.elapsed.Seconds()
}

type latencyResult struct {
	p50, p99, p999, max time.Duration
	samples             int
	cpu                 time.Duration // over the measured window
	hostCPU             time.Duration
	window              time.Duration
	mallocs             uint64
	peakRSS             int64
}

func (b *bench) oneRun(r int) (runResult, error) {
	rr := runResult{batches: map[int]*phaseResult{}}
	// The limit is measured before and after the fast phases, whose
	// ratios to it are the targets, and the better of the two is taken.
	bare := func(which string) error {
		if !b.phase("bare") {
			return nil
		}
		p, err := b.throughput(r, phaseSpec{name: "bare, " + which, topic: topicBacklog, target: b.n})
		if err != nil {
			return fmt.Errorf("bare consumer: %w", err)
		}
		rr.bare = append(rr.bare, p)
		return nil
	}
	if err := bare("before"); err != nil {
		return rr, err
	}
	for _, mm := range []int{1000, 100, 1} {
		if mm == 1 {
			if err := bare("after"); err != nil {
				return rr, err
			}
		}
		if b.phase(strconv.Itoa(mm)) {
			n := b.n
			if mm == 1 {
				n = b.n1
			}
			p, err := b.throughput(r, phaseSpec{name: "max_messages=" + strconv.Itoa(mm), topic: topicBacklog, maxMessages: mm, target: n, size: b.size})
			if err != nil {
				return rr, fmt.Errorf("connector, max_messages=%d: %w", mm, err)
			}
			rr.batches[mm] = p
		}
		// Right after the unfiltered phase it is compared with.
		if mm == filterMaxMessages && b.phase("filter") {
			p, err := b.throughput(r, phaseSpec{name: "filter one in ten", topic: topicBacklog, maxMessages: filterMaxMessages, target: b.n, size: b.size, expr: oneInTen})
			if err != nil {
				return rr, fmt.Errorf("connector, filter passing one in ten: %w", err)
			}
			rr.filtered = p
		}
		if mm == avroMaxMessages && b.phase("avro") {
			p, err := b.avroPhase(r)
			if err != nil {
				return rr, fmt.Errorf("connector, Avro values: %w", err)
			}
			rr.avro = p
		}
		if mm == tracingMaxMessages && b.phase("tracing") {
			if err := b.tracingPhases(r, &rr); err != nil {
				return rr, err
			}
		}
		if mm == respondMaxMessages && b.phase("respond") {
			if err := b.respond(r, &rr); err != nil {
				return rr, err
			}
		}
	}
	if b.phase("small") {
		// max_messages=1 delivers slowest, so its consumer is always as
		// far ahead as it may read: its memory is the one that would grow.
		p, err := b.throughput(r, phaseSpec{name: "smaller backlog", topic: topicSmall, maxMessages: 1, target: min(b.n/smallerBy, b.n1), size: b.size})
		if err != nil {
			return rr, fmt.Errorf("connector, smaller backlog: %w", err)
		}
		rr.small = p
	}
	if b.phase("large") {
		p, err := b.throughput(r, phaseSpec{name: "large messages", topic: topicLarge, maxMessages: b.largeMaxMessages, target: b.largeN, size: b.largeSize, slow: b.largeDelay})
		if err != nil {
			return rr, fmt.Errorf("connector, large messages: %w", err)
		}
		rr.large = p
	}
	if b.phase("concurrency") || b.phase("concurrency-key") {
		for i, keys := range b.concKeys {
			phases := concPhases
			if i > 0 || !b.phase("concurrency") {
				phases = []concPhase{concKeyPhase}
			}
			for _, cp := range phases {
				name := fmt.Sprintf("%s, %d keys", cp.name, keys)
				p, err := b.throughput(r, phaseSpec{name: name, topic: keyedTopic(keys), maxMessages: cp.maxMessages, target: b.concN, size: b.size, slow: cp.slow, env: cp.env, keyOrder: cp.keyed, keys: keys})
				if err != nil {
					return rr, fmt.Errorf("connector, %s: %w", name, err)
				}
				rr.conc = append(rr.conc, concResult{phase: cp, keys: keys, phaseResult: p})
			}
		}
	}
	if b.phase("latency") {
		l, err := b.latency(r)
		if err != nil {
			return rr, fmt.Errorf("latency: %w", err)
		}
		rr.latency = l
	}
	return rr, nil
}

// env is the configuration of a measured process, as the kafka-connector
// command reads it.
func (b *bench) env(group string, maxMessages int) []string {
	env := []string{
		"gateway_url=" + b.gwURL,
		"broker_hosts=" + strings.Join(b.brokers, ","),
		"group=" + group,
		"initial_offset=earliest",
		"max_wait=" + b.maxWait.String(),
		"log_level=warn",
	}
	if maxMessages > 0 {
		env = append(env, "max_messages="+strconv.Itoa(maxMessages))
	}
	if b.bufferedBytes > 0 {
		env = append(env, "max_buffered_bytes="+strconv.Itoa(b.bufferedBytes))
	}
	return env
}

// subscribe makes the gateway list one function, subscribed to topic, that
// the sink serves; with a kafka-filter when expr is not empty.
func (b *bench) subscribe(function, topic, expr string, s *sink) {
	b.gw.Handle(function, s.handle)
	annotations := map[string]string{types.TopicAnnotation: topic}
	if expr != "" {
		annotations[types.AnnotationFilter] = expr
	}
	b.gw.SetFunctions(types.Function{Name: function, Annotations: annotations})
}

// The filter phase: the connector with max_messages=100, as the row it is
// compared with, and a filter that reads every message's value and passes
// the messages whose stamp (see messageValue) ends in 0, one in ten.
const (
	filterMaxMessages = 100
	oneInTen          = `value.matches("^[0-9]*0 ")`
)

// passOneInTen is how many of the first n messages of a backlog oneInTen passes.
func passOneInTen(n int) int { return (n + 9) / 10 }

// phaseSpec is what a throughput phase reads and how.
type phaseSpec struct {
	name, topic string
	maxMessages int // 0 for the bare consumer group
	target      int // messages to read
	size        int // bytes of every message value
	// slow is how long the function takes a call; 0 answers at once.
	slow time.Duration
	// env is more configuration of the connector, such as ordering.
	env []string
	// keyOrder makes the function check that the messages of each of keys
	// keys arrive in their order (see sink.keyOrder).
	keyOrder bool
	keys     int
	// expr, when set, is the function's kafka-filter: target messages are
	// read and the phase ends when the function has received those that
	// pass.
	expr string
	// answer makes the function answer a record for each message.
	answer bool
}

// throughput runs one consumer over the backlog of a topic until the target
// number of messages is delivered: the bare consumer group when maxMessages
// is 0, the connector otherwise.
func (b *bench) throughput(r int, ps phaseSpec) (*phaseResult, error) {
	name, topic, maxMessages, target, expr := ps.name, ps.topic, ps.maxMessages, ps.target, ps.expr
	slug := strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			return c
		case c == ' ':
			return '-'
		}
		return -1
	}, name)
	group := fmt.Sprintf("bench-%d-%s", r, slug)
	o := childOptions{kind: "consumer", topic: topic, target: target}
	var (
		s           *sink
		hostProfile string // this process's CPU profile over the phase
	)
	if maxMessages > 0 {
		o.kind, o.binary = "connector", b.connectorBinary
		s = newSink(target, ps.size)
		s.decodeAll = b.decodeAll
		if expr != "" { // oneInTen, the only filter measured
			s.target = int64(passOneInTen(target))
			s.check = func(body string) bool {
				stamp, _, _ := strings.Cut(body, " ")
				return strings.HasSuffix(stamp, "0")
			}
		}
		s.slow = ps.slow
		if ps.keyOrder {
			s.keyOrder = make([]int64, ps.keys)
		}
		s.answer = ps.answer
		if topic == topicBacklog && maxMessages == 1 && b.n/smallerBy <= target {
			s.checkpoint = int64(b.n / smallerBy)
		}
		b.subscribe("fn-"+slug, topic, expr, s)
		defer b.gw.SetFunctions()
		if b.profileDir != "" {
			base := fmt.Sprintf("%s/%s-run%d", b.profileDir, slug, r)
			o.cpuProfile, o.memProfile = base+".cpu.pprof", base+".allocs.pprof"
			hostProfile = base + ".broker+function.cpu.pprof"
		}
	}
	fetched := firstFetch(b.cluster)
	c, err := startChild(o, append(b.env(group, maxMessages), ps.env...))
	if err != nil {
		return nil, err
	}
	defer c.stop()

	var start time.Time
	select {
	case start = <-fetched:
	case <-c.exited:
		return nil, fmt.Errorf("the measured process exited: %v", c.exitErr)
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("no fetch within a minute")
	}
	host0 := cpuTime()
	m0, err := c.mark()
	if err != nil {
		return nil, err
	}
	if hostProfile != "" {
		stop, err := startCPUProfile(hostProfile)
		if err != nil {
			return nil, err
		}
		defer stop()
	}

	done := c.done
	checkpointRSS := make(chan int64, 1)
	if s != nil {
		done = s.done
		if s.checkpoint > 0 {
			go func() {
				<-s.passed // closed before done is
				rss, _ := procPeakRSS(c.pid())
				checkpointRSS <- rss
			}()
		}
	}
	select {
	case <-done:
	case <-c.exited:
		return nil, fmt.Errorf("the measured process exited: %v", c.exitErr)
	case <-time.After(b.phaseTimeout):
		return nil, fmt.Errorf("not done after %v", b.phaseTimeout)
	}
	end := time.Now()
	if s != nil {
		end = s.end
	}
	host1 := cpuTime()
	m1, err := c.mark()
	if err != nil {
		return nil, err
	}
	rss, err := procPeakRSS(c.pid())
	if err != nil {
		return nil, err
	}
	p := &phaseResult{
		messages:    int64(target),
		invocations: int64(target),
		elapsed:     end.Sub(start),
		cpu:         m1.CPU - m0.CPU,
		hostCPU:     host1 - host0,
		mallocs:     m1.Mallocs - m0.Mallocs,
		allocBytes:  m1.TotalAlloc - m0.TotalAlloc,
		peakRSS:     rss,
	}
	if s != nil && s.checkpoint > 0 {
		p.peakRSSAtCheckpoint = <-checkpointRSS
	}
	if s != nil {
		if bad := s.bad.Load(); bad > 0 {
			return nil, fmt.Errorf("the function received %d malformed events or records", bad)
		}
		if n := s.outOfOrder.Load(); n > 0 {
			return nil, fmt.Errorf("the function received %d messages before an earlier message of their key", n)
		}
		p.invocations = s.invocations.Load()
	}
	log.Printf("run %d, %-22s %9.0f msg/s %7.0f inv/s %6.2f µs CPU/msg (broker+function %5.2f) %6.1f allocs/msg %4.0f MiB peak RSS (%v)",
		r, name+":", p.rate(), p.invocationRate(), perMessage(p.cpu, p.messages), perMessage(p.hostCPU, p.messages),
		float64(p.mallocs)/float64(p.messages), mib(p.peakRSS), p.elapsed.Round(time.Millisecond))
	return p, nil
}

// startCPUProfile profiles this process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latency runs the connector on an empty topic written to at a steady rate
// and measures the delay from handing each message to the producer to the
// function receiving it.
func (b *bench) latency(r int) (*latencyResult, error) {
	topic := latencyTopic(r)
	s := newSink(0, b.size)
	var (
		mu       sync.Mutex
		delays   []time.Duration
		from, to atomic.Int64 // the produce times measured, Unix nanoseconds
	)
	s.delay = func(producedAt, now time.Time) {
		f, p := from.Load(), producedAt.UnixNano()
		if f == 0 || p < f || p >= to.Load() {
			return
		}
		mu.Lock()
		delays = append(delays, now.Sub(producedAt))
		mu.Unlock()
	}
	fn := fmt.Sprintf("steady-%d", r)
	b.subscribe(fn, topic, "", s)
	defer b.gw.SetFunctions()
	c, err := startChild(childOptions{kind: "connector", binary: b.connectorBinary}, b.env("bench-"+fn, b.latencyMaxMsgs))
	if err != nil {
		return nil, err
	}
	defer c.stop()

	ctx, stopProducing := context.WithCancel(context.Background())
	defer stopProducing()
	produced := make(chan error, 1)
	go func() { produced <- produceSteadily(ctx, b.brokers, topic, int32(b.partitions), b.rate, b.size) }()

	// Measure once the connector has joined and caught up with what was
	// written while it was starting.
	deadline := time.Now().Add(time.Minute)
	for s.invocations.Load() == 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no invocation within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now().Add(b.latencyWarmup)
	end := start.Add(b.latencyFor)
	to.Store(end.UnixNano())
	from.Store(start.UnixNano())
	time.Sleep(time.Until(start))
	host0 := cpuTime()
	m0, err := c.mark()
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Until(end))
	host1 := cpuTime()
	m1, err := c.mark()
	if err != nil {
		return nil, err
	}
	stopProducing()
	if err := <-produced; err != nil {
		return nil, err
	}
	// Let the last messages measured arrive.
	time.Sleep(b.maxWait + time.Second)
	rss, err := procPeakRSS(c.pid())
	if err != nil {
		return nil, err
	}
	if bad := s.bad.Load(); bad > 0 {
		return nil, fmt.Errorf("the function received %d malformed events or records", bad)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delays) == 0 {
		return nil, fmt.Errorf("no message measured")
	}
	slices.Sort(delays)
	l := &latencyResult{
		p50:     percentile(delays, 0.50),
		p99:     percentile(delays, 0.99),
		p999:    percentile(delays, 0.999),
		max:     delays[len(delays)-1],
		samples: len(delays),
		cpu:     m1.CPU - m0.CPU,
		hostCPU: host1 - host0,
		window:  b.latencyFor,
		mallocs: m1.Mallocs - m0.Mallocs,
		peakRSS: rss,
	}
	log.Printf("run %d, latency at %.0f msg/s: p50 %v p99 %v p999 %v max %v over %d messages; %.0f%% of a core",
		r, b.rate, ms(l.p50), ms(l.p99), ms(l.p999), ms(l.max), l.samples, 100*l.cpu.Seconds()/l.window.Seconds())
	return l, nil
}
