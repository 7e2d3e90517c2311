// Package connector feeds functions from Kafka topics: it reads the function
// list from the gateway, keeps one trigger per subscribed function, and each
// trigger consumes its topics through its own consumer group, batches the
// messages of each partition in order, invokes the function with retries and
// commits only what was delivered.
package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/filter"
	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/schema"
	"github.com/kafka-connector/kafka-connector/tracing"
	"github.com/kafka-connector/kafka-connector/types"
)

// Gateway is what the connector needs of the gateway; *gateway.Client is one.
type Gateway interface {
	Functions(ctx context.Context) ([]types.Function, error)
	Invoker
}

// Connector keeps one trigger running for every function that subscribes to
// a topic. Create it with New; Run does the work.
type Connector struct {
	cfg     config.Config
	gateway Gateway
	log     *slog.Logger

	// mu guards what Ready reads while Run changes it.
	mu       sync.Mutex
	listed   bool                       // the gateway has answered once
	triggers map[string]*runningTrigger // by function name as invoked
	problems map[string]string          // why a function has no trigger, as last logged
	illegal  map[string]string          // topic names a function asks for that Kafka cannot have, as last logged
	// live are the triggers whose goroutine has not returned, those no
	// longer in triggers included: what a forced exit abandons.
	live    map[*runningTrigger]bool
	metrics *metrics
	catalog *catalog
	tracing *tracing.Tracing // nil when off

	// seen is when each function listed with a topic was first seen so,
	// valid or not (a paused one is not counted), and its topics'
	// partition counts then: the subscription of a trigger started later,
	// once its annotations are fixed. Only Run's goroutine uses it.
	seen map[string]sighting

	// registry decodes the triggers' keys and values that are written
	// through the schema registry; nil when none is configured, or when
	// registryErr says why it could not be set up.
	registry    *schema.Registry
	registryErr error

	// filters holds the kafka-filter expressions of the last listing,
	// compiled (or refused) once rather than at every refresh. Only Run's
	// goroutine uses it.
	filters map[string]compiledFilter
}

type compiledFilter struct {
	f   *filter.Filter
	err error
}

type runningTrigger struct {
	t     *trigger
	spec  spec
	abort context.CancelFunc
	done  chan struct{} // closed when the trigger has stopped
	// restarting is set, under Connector.mu, while the trigger waits to
	// start again after a run that failed.
	restarting bool
}

// Restarts of a trigger whose run failed back off from restartBackoffMin,
// doubling up to restartBackoffMax; a run that lasted restartBackoffReset
// went well, and a failure after it starts from the minimum again.
const (
	restartBackoffMin   = time.Second
	restartBackoffMax   = 30 * time.Second
	restartBackoffReset = time.Minute
)

// abandonAfter is how long the triggers get, once the shutdown timeout has
// cancelled what they had in flight, to leave their groups and close their
// clients. Sarama's calls take no context and each may wait a broker's read
// timeout, over a minute: a trigger still stopping by then is abandoned, so
// that a stop never takes much longer than shutdown_timeout.
const abandonAfter = 3 * time.Second

// spec is what a trigger is made of: when it changes, the trigger restarts.
type spec struct {
	topics   []string
	settings types.TriggerSettings
}

// New returns a connector between the gateway and the Kafka cluster that
// cfg describes.
func New(cfg config.Config, gw Gateway, log *slog.Logger) *Connector {
	c := &Connector{
		cfg:      cfg,
		gateway:  gw,
		log:      log,
		triggers: make(map[string]*runningTrigger),
		problems: make(map[string]string),
		illegal:  make(map[string]string),
		live:     make(map[*runningTrigger]bool),
		metrics:  newMetrics(),
		// Triggers check for new topics and partitions every rebuild
		// interval; a look half as old serves them all.
		catalog: &catalog{brokers: cfg.Brokers, newConfig: cfg.SaramaMetadata, maxAge: cfg.RebuildInterval / 2},
		filters: make(map[string]compiledFilter),
		seen:    make(map[string]sighting),
	}
	c.metrics.registry.MustRegister(triggerCollector{c})
	if o, ok := cfg.SchemaRegistry(); ok {
		c.registry, c.registryErr = schema.New(o)
	}
	return c
}

// triggerCollector publishes, when scraped, what /readyz says, and for each
// function whether its trigger consumes and its limit of invocations in
// flight.
type triggerCollector struct{ c *Connector }

var (
	readyDesc = prometheus.NewDesc("kafka_connector_ready",
		"1 when /readyz answers 200: the function list has been read and every trigger consumes; 0 otherwise.", nil, nil)
	triggerReadyDesc = prometheus.NewDesc("kafka_connector_trigger_ready",
		"1 when the function's trigger consumes: in its consumer group, every claimed partition started, and the brokers answering; 0 while it joins, restarts, or cannot consume.",
		[]string{"function"}, nil)
	inflightLimitDesc = prometheus.NewDesc("kafka_connector_inflight_limit",
		"The function's limit of invocations in flight from this replica across its partitions: max_inflight lowered by back-pressure, or without max_inflight what back-pressure taught; 0 for no limit.",
		[]string{"function"}, nil)
)

func (r triggerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- readyDesc
	ch <- triggerReadyDesc
	ch <- inflightLimitDesc
}

func (r triggerCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	all := r.c.ready(func(rt *runningTrigger, ok bool) {
		ch <- prometheus.MustNewConstMetric(triggerReadyDesc, prometheus.GaugeValue, gauge(ok), rt.t.function)
		ch <- prometheus.MustNewConstMetric(inflightLimitDesc, prometheus.GaugeValue, float64(rt.t.inflight.Limit()), rt.t.function)
	})
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, gauge(all))
}

// Metrics returns the registry of the connector's Prometheus metrics, to be
// served on /metrics.
func (c *Connector) Metrics() *prometheus.Registry { return c.metrics.registry }

// Run reads the function list every rebuild interval and keeps the triggers
// in step with it, until ctx ends. It then drains the triggers: no new
// batches, the invocations in flight finish and are committed, the groups
// are left. What is still in flight after the shutdown timeout is abandoned
// uncommitted, to be delivered again later. Run returns an error, after
// shutdown_timeout and a few seconds, if some trigger has still not stopped
// by then: it is left behind, for the process to exit without it.
func (c *Connector) Run(ctx context.Context) error {
	// Triggers outlive ctx by the grace period, so they get a context of
	// their own that only abort ends.
	triggerCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	defer c.catalog.close() // after the triggers have stopped
	var running sync.WaitGroup

	tick := time.NewTicker(c.cfg.RebuildInterval)
	defer tick.Stop()
	for {
		c.refresh(ctx, triggerCtx, &running)
		select {
		case <-ctx.Done():
			return c.shutdown(abort, &running)
		case <-tick.C:
		}
	}
}

// Ready reports whether the function list has been read and every trigger
// consumes (see trigger.isReady), or waits for its topics to exist.
func (c *Connector) Ready() bool { return c.ready(func(*runningTrigger, bool) {}) }

// ready asks every trigger whether it consumes, so that each logs its own
// change, tells each to each, and reports whether all do.
func (c *Connector) ready(each func(rt *runningTrigger, ready bool)) bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	all := c.listed
	for _, rt := range c.triggers {
		ok := rt.t.isReady(now)
		each(rt, ok)
		all = all && ok
	}
	return all
}

// Unfinished returns the functions whose triggers have not stopped yet,
// sorted: what exiting now would abandon.
func (c *Connector) Unfinished() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for rt := range c.live {
		names = append(names, rt.t.function)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// refresh reads the function list and starts, restarts and stops triggers
// to match it. When the gateway cannot be read, the triggers stay as they
// are until the next refresh.
func (c *Connector) refresh(ctx, triggerCtx context.Context, running *sync.WaitGroup) {
	listCtx, cancel := context.WithTimeout(ctx, c.cfg.UpstreamTimeout)
	fns, err := c.gateway.Functions(listCtx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.metrics.gatewayErrors.Inc()
			attrs := []any{"gateway", c.cfg.GatewayURL, "error", err}
			if errors.Is(err, gateway.ErrUnauthorized) {
				attrs = append(attrs, "hint", c.authHint())
			}
			c.log.Warn("cannot list functions; keeping the triggers as they are", attrs...)
		}
		return
	}
	want := c.specs(fns)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.listed = true
	// A trigger whose function changed drains, and its successor starts
	// once it has stopped: the two never deliver the same partition at
	// once. A function that is gone is abandoned at once.
	predecessors := make(map[string]<-chan struct{})
	for name, rt := range c.triggers {
		s, listed := want[name]
		switch {
		case !listed:
			reason := "the function is gone, has no topic annotation any more, or was paused (kafka-enabled=false)"
			if p, ok := c.problems[name]; ok {
				reason = "its annotations cannot be used: " + p
			}
			c.log.Info("stopping trigger", "function", name, "reason", reason)
			rt.abort()
		case !reflect.DeepEqual(s, rt.spec):
			c.log.Info("restarting trigger", "function", name, "reason", "its topics or settings changed; the new one starts once this one has drained")
			rt.t.drain()
			predecessors[name] = rt.done
		default:
			continue
		}
		delete(c.triggers, name)
	}
	for name, s := range want {
		if _, ok := c.triggers[name]; ok {
			continue
		}
		t := c.newTrigger(name, s)
		t.seen = c.seen[name]
		tctx, abort := context.WithCancel(triggerCtx)
		rt := &runningTrigger{t: t, spec: s, abort: abort, done: make(chan struct{})}
		c.triggers[name] = rt
		c.live[rt] = true
		c.log.Info("starting trigger", "function", name, "topics", s.topics, "group", s.settings.Group)
		predecessor := predecessors[name]
		running.Go(func() {
			defer close(rt.done)
			defer c.stopped(rt)
			if predecessor != nil {
				select {
				case <-predecessor:
				case <-tctx.Done():
					return
				}
			}
			c.supervise(tctx, rt)
		})
	}
	c.countTriggers()
}

// supervise runs the trigger until it is asked to stop. A run that ends
// otherwise (the brokers could not be reached, the consumer group could
// not be created) is logged, counted and started again with backoff, the
// trigger not ready meanwhile: a trigger is never left dead in the map.
func (c *Connector) supervise(ctx context.Context, rt *runningTrigger) {
	t := rt.t
	retry := newRetrier(restartBackoffMin, restartBackoffMax)
	for {
		began := time.Now()
		err := t.run(ctx)
		if t.stopping(ctx) {
			return
		}
		t.health.failed()
		if err == nil {
			err = errors.New("the trigger ended without being asked to stop")
		}
		if time.Since(began) >= restartBackoffReset {
			retry.reset()
		}
		delay := retry.next()
		c.metrics.restarts.WithLabelValues(t.function).Inc()
		t.log.Error("trigger failed; starting it again", "group", t.settings.Group, "error", err, "retry_in", delay)
		c.setRestarting(rt, true)
		again := t.wait(ctx, delay)
		c.setRestarting(rt, false)
		if !again {
			return
		}
	}
}

func (c *Connector) setRestarting(rt *runningTrigger, restarting bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt.restarting = restarting
	c.countTriggers()
}

// countTriggers sets the gauge of the functions that have a trigger, by
// whether it runs or waits to start again. c.mu must be held.
func (c *Connector) countTriggers() {
	restarting := 0
	for _, rt := range c.triggers {
		if rt.restarting {
			restarting++
		}
	}
	c.metrics.triggers.WithLabelValues("running").Set(float64(len(c.triggers) - restarting))
	c.metrics.triggers.WithLabelValues("restarting").Set(float64(restarting))
}

// stopped forgets a trigger whose goroutine returns. The series of a
// function that is gone go with its last trigger, so that removed
// functions do not pile up in /metrics; a successor keeps those of the
// topics it still reads. Deleting them only now, once nothing of the
// trigger runs, keeps a late update from bringing one back.
func (c *Connector) stopped(rt *runningTrigger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.live, rt)
	name := rt.t.function
	switch now := c.triggers[name]; {
	case now == rt:
		// Still wanted: the connector itself is stopping.
	case now == nil:
		c.metrics.forget(name)
	default:
		for _, topic := range rt.spec.topics {
			if !slices.Contains(now.spec.topics, topic) {
				c.metrics.forgetTopic(name, topic)
			}
		}
	}
}

// specs turns the function list into the triggers it asks for. A function
// whose annotations cannot be used gets no trigger, and one log line each
// time its problem changes.
func (c *Connector) specs(fns []types.Function) map[string]spec {
	want := make(map[string]spec)
	problems := make(map[string]string)
	illegal := make(map[string]string)
	filters := make(map[string]compiledFilter)
	seen := make(map[string]sighting)
	now := time.Now()
	// subscribed is a function that asks for topics, from its first
	// listing so on: its subscription begins then, even if its
	// annotations must be fixed before it gets a trigger.
	subscribed := func(name string, topics []string) {
		if s, ok := c.seen[name]; ok {
			seen[name] = s
			return
		}
		s := sighting{at: now}
		if counts, err := c.catalog.lookup(); err == nil {
			s.partitions = make(map[string]int32, len(topics))
			for _, topic := range topics {
				s.partitions[topic] = int32(counts[topic]) // 0: created since
			}
		}
		seen[name] = s
	}
	defer func() { c.seen = seen }()
	for _, fn := range fns {
		name := fn.InvokeName()
		if err := fn.Check(); err != nil {
			problems[name] = err.Error()
			continue
		}
		topics := fn.Topics(c.cfg.TopicDelimiter)
		var bad []string
		topics = slices.DeleteFunc(topics, func(t string) bool {
			if types.CheckTopicName(t) != nil {
				bad = append(bad, t)
				return true
			}
			return false
		})
		if len(bad) > 0 {
			illegal[name] = strings.Join(bad, ",")
		}
		if len(c.cfg.Topics) > 0 {
			topics = slices.DeleteFunc(topics, func(t string) bool { return !slices.Contains(c.cfg.Topics, t) })
		}
		if len(topics) == 0 {
			continue
		}
		slices.Sort(topics)
		defaults := c.cfg.Trigger()
		defaults.Group = c.cfg.Group + "-" + name
		settings, err := defaults.WithAnnotations(fn.Annotations)
		if err != nil {
			problems[name] = err.Error()
			subscribed(name, topics)
			continue
		}
		if expr := settings.Filter; expr != "" {
			cf, ok := c.filters[expr]
			if !ok {
				cf.f, cf.err = filter.Compile(expr)
			}
			filters[expr] = cf
			if cf.err != nil {
				problems[name] = fmt.Sprintf("annotation %s=%q does not compile: %v", types.AnnotationFilter, expr, cf.err)
				subscribed(name, topics)
				continue
			}
		}
		if _, err := c.decodingFor(settings); err != nil {
			problems[name] = err.Error()
			continue
		}
		if !settings.Enabled {
			continue
		}
		subscribed(name, topics)
		want[name] = spec{topics: topics, settings: settings}
	}
	// Two functions in one consumer group would split its partitions and
	// each miss the other's share: neither gets a trigger.
	byGroup := make(map[string][]string)
	for name, s := range want {
		byGroup[s.settings.Group] = append(byGroup[s.settings.Group], name)
	}
	for group, names := range byGroup {
		if len(names) < 2 {
			continue
		}
		slices.Sort(names)
		for _, name := range names {
			problems[name] = fmt.Sprintf("functions %s share the consumer group %s: give each its own kafka-group", strings.Join(names, ", "), group)
			delete(want, name) // but still subscribed
		}
	}
	for name, p := range problems {
		if c.problems[name] != p {
			c.log.Error("function has no trigger until its annotations are fixed", "function", name, "problem", p)
		}
		c.metrics.functionErrors.WithLabelValues(name).Set(1)
	}
	for name := range c.problems {
		if _, still := problems[name]; !still {
			c.metrics.functionErrors.DeleteLabelValues(name)
		}
	}
	c.problems = problems
	for name, topics := range illegal {
		if c.illegal[name] != topics {
			c.log.Warn("function asks for topics whose names Kafka does not allow; ignoring them", "function", name, "topics", topics)
		}
	}
	c.illegal = illegal
	c.filters = filters
	c.metrics.triggers.WithLabelValues("invalid").Set(float64(len(problems)))
	return want
}

func (c *Connector) newTrigger(function string, s spec) *trigger {
	draining, drain := context.WithCancel(context.Background())
	decoding, _ := c.decodingFor(s.settings) // checked by specs
	return &trigger{
		decoding:          decoding,
		function:          function,
		topics:            s.topics,
		settings:          s.settings,
		filter:            c.filters[s.settings.Filter].f,
		brokers:           c.cfg.Brokers,
		newSaramaConfig:   func() *sarama.Config { return c.cfg.Sarama(s.settings) },
		gateway:           c.gateway,
		printResponse:     c.cfg.PrintResponse,
		printResponseBody: c.cfg.PrintResponseBody,
		checkInterval:     c.cfg.RebuildInterval,
		catalog:           c.catalog,
		log:               c.log.With("function", function),
		metrics:           c.metrics,
		deadLetters:       &deadLetterProducer{brokers: c.cfg.Brokers, newConfig: c.cfg.SaramaProducer},
		answers: newAnswers(s.settings, c.cfg.Brokers, c.cfg.CommitInterval, func(id string) *sarama.Config {
			return c.cfg.SaramaResponse(s.settings, id)
		}, c.metrics.responses),
		inflight: functionGate(s.settings.MaxInflight),
		inFlight: c.metrics.inFlight.WithLabelValues(function),
		tracer:   c.tracerFor(function, s.settings),
		draining: draining,
		drain:    drain,
		measure:  make(chan struct{}, 1),
	}
}

// authHint says what to do about a gateway that refuses to list the
// functions: its /system/* API wants the admin credentials.
func (c *Connector) authHint() string {
	if !c.cfg.BasicAuth {
		return "the gateway's API asks for its admin credentials: set basic_auth=true, and secret_mount_path to the folder holding the files basic-auth-user and basic-auth-password (the basic-auth secret of the OpenFaaS install)"
	}
	return "the credentials read from secret_mount_path (" + c.cfg.SecretMountPath + "/basic-auth-user and basic-auth-password) are not the gateway's: mount the basic-auth secret of the OpenFaaS install there"
}

// functionGate bounds a function's invocations in flight across its
// partitions: by max_inflight when set, and otherwise by what back-pressure
// teaches, from no limit at all.
func functionGate(maxInflight int) *schedule.Gate {
	if maxInflight > 0 {
		return schedule.NewGate(maxInflight)
	}
	return schedule.NewLearningGate()
}

// shutdown drains every trigger and waits for them, aborting what is still
// in flight when the grace period is over, and abandoning the triggers that
// have still not stopped abandonAfter later.
func (c *Connector) shutdown(abort context.CancelFunc, running *sync.WaitGroup) error {
	c.mu.Lock()
	for _, rt := range c.triggers {
		rt.t.drain()
	}
	c.mu.Unlock()
	done := make(chan struct{})
	// When triggers are abandoned, this goroutine is too: the process
	// exits without waiting for either.
	go func() {
		running.Wait()
		close(done)
	}()
	grace := time.NewTimer(c.cfg.ShutdownTimeout)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.C:
	}
	c.log.Warn("shutdown timeout reached; abandoning the invocations in flight, uncommitted", "shutdown_timeout", c.cfg.ShutdownTimeout)
	abort()
	last := time.NewTimer(abandonAfter)
	defer last.Stop()
	select {
	case <-done:
		return nil
	case <-last.C:
	}
	stuck := strings.Join(c.Unfinished(), ",")
	c.log.Error("triggers did not stop in time; abandoning them: what they had in flight is not committed, and their groups are left to expire",
		"functions", stuck, "waited", c.cfg.ShutdownTimeout+abandonAfter)
	return fmt.Errorf("the triggers of %s did not stop within %v", stuck, c.cfg.ShutdownTimeout+abandonAfter)
}
