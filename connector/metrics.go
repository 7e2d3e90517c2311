package connector

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the connector's Prometheus metrics. They are updated once per
// batch, never per message, so that they stay off the hot path.
type metrics struct {
	registry *prometheus.Registry

	consumed     *prometheus.CounterVec   // function, topic
	filtered     *prometheus.CounterVec   // function, topic
	delivered    *prometheus.CounterVec   // function, topic
	batchSize    *prometheus.HistogramVec // function
	invocation   *prometheus.HistogramVec // function, status_class
	failures     *prometheus.CounterVec   // function, topic
	retries      *prometheus.CounterVec   // function, topic
	giveUps      *prometheus.CounterVec   // function, topic
	deadLetters  *prometheus.CounterVec   // function, topic
	retrying     *prometheus.GaugeVec     // function
	inFlight     *prometheus.GaugeVec     // function
	backPressure *prometheus.CounterVec   // function, topic
	window       *prometheus.GaugeVec     // function, topic, partition
	committed    *prometheus.GaugeVec     // function, topic, partition
	// partitions publishes lag and oldest_undelivered_seconds, read off
	// the claimed partitions when scraped.
	partitions     *partitionCollector
	triggers       *prometheus.GaugeVec   // state
	restarts       *prometheus.CounterVec // function
	gatewayErrors  prometheus.Counter
	functionErrors *prometheus.GaugeVec // function
	// deadLetterErrors: function, topic (the source), reason
	deadLetterErrors *prometheus.CounterVec
	schemas          *schemaMetrics
	responses        *responseMetrics
}

func newMetrics() *metrics {
	const ns = "kafka_connector"
	m := &metrics{
		registry:  prometheus.NewRegistry(),
		responses: newResponseMetrics(ns),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "messages_consumed_total",
			Help: "Messages read from Kafka and put in a batch.",
		}, []string{"function", "topic"}),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "messages_filtered_total",
			Help: "Messages the function's kafka-filter rejected: committed without being delivered.",
		}, []string{"function", "topic"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "batches_delivered_total",
			Help: "Batches the function accepted (2xx).",
		}, []string{"function", "topic"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "batch_messages",
			Help:    "Messages per delivered batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000},
		}, []string{"function"}),
		invocation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "invocation_duration_seconds",
			Help:    "Duration of one invocation, by status class: 2xx, 4xx, 5xx, throttled (a 429, or a 503 with Retry-After: back-pressure, not a failure), or error when no answer came.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"function", "status_class"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "invocation_failures_total",
			Help: "Invocations that failed: a status other than 2xx, a timeout, no answer, or a partial batch failure; back-pressure is not a failure (see backpressure_waits_total).",
		}, []string{"function", "topic"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "retries_total",
			Help: "Batches sent again after a failure; a batch sent again after a back-pressure wait is not a retry.",
		}, []string{"function", "topic"}),
		giveUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "give_ups_total",
			Help: "Batches whose retries were spent (then dead-lettered, or logged and committed).",
		}, []string{"function", "topic"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "dead_letter_messages_total",
			Help: "Messages written to the dead-letter topic.",
		}, []string{"function", "topic"}),
		deadLetterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "dead_letter_errors_total",
			Help: "Failed writes to the dead-letter topic, by reason: too_large, unknown_topic and not_authorized will not succeed until the topic, the brokers or the ACLs change; transient may.",
		}, []string{"function", "topic", "reason"}),
		retrying: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "retrying_partitions",
			Help: "Batches waiting to be retried: under ordering=partition, partitions whose batch is.",
		}, []string{"function"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "invocations_in_flight",
			Help: "Invocations of the function in flight from this replica, across its partitions.",
		}, []string{"function"}),
		backPressure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "backpressure_waits_total",
			Help: "Waits on back-pressure: a 429, or a 503 with Retry-After, which lowers the invocations in flight and is not counted as a retry.",
		}, []string{"function", "topic"}),
		window: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "window_messages",
			Help: "Messages held beyond the partition's committed offset: waiting for a batch, in flight, or finished behind an unfinished one.",
		}, []string{"function", "topic", "partition"}),
		partitions: newPartitionCollector(ns),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "committed_offset",
			Help: "Next offset to consume, marked for commit once its batch was delivered; flushed to Kafka every commit_interval.",
		}, []string{"function", "topic", "partition"}),
		triggers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "functions",
			Help: "Functions discovered, by state: running (a trigger feeds it), restarting (its trigger failed and waits to start again) or invalid (its annotations cannot be used).",
		}, []string{"state"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "trigger_restarts_total",
			Help: "Times a trigger failed without being asked to stop (the brokers could not be reached, its consumer group could not be created) and was started again after a backoff.",
		}, []string{"function"}),
		gatewayErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "gateway_discovery_errors_total",
			Help: "Function listings that failed; the triggers stay as they were.",
		}),
		functionErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "function_config_error",
			Help: "1 for a function that has no trigger because its annotations cannot be used.",
		}, []string{"function"}),
	}
	m.registry.MustRegister(
		m.consumed, m.filtered, m.delivered, m.batchSize, m.invocation, m.failures, m.retries, m.giveUps,
		m.deadLetters, m.deadLetterErrors, m.retrying, m.inFlight, m.backPressure, m.window, m.partitions, m.committed, m.triggers, m.restarts, m.gatewayErrors, m.functionErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.schemas = newSchemaMetrics(ns)
	m.registry.MustRegister(m.schemas.collectors()...)
	m.registry.MustRegister(m.responses.collectors()...)
	return m
}

// partitionMetrics are the metrics of one partition worker, with their
// labels resolved once when the partition is claimed.
type partitionMetrics struct {
	m                                               *metrics
	function, topic, partition                      string
	consumed, delivered, failures, retries, giveUps prometheus.Counter
	deadLetters, filtered, backPressure             prometheus.Counter
	batchSize                                       prometheus.Observer
	retrying, committed, window                     prometheus.Gauge
	invocationOK                                    prometheus.Observer
}

func (m *metrics) partition(function, topic string, partition int32) *partitionMetrics {
	p := strconv.Itoa(int(partition))
	return &partitionMetrics{
		m: m, function: function, topic: topic, partition: p,
		consumed:     m.consumed.WithLabelValues(function, topic),
		filtered:     m.filtered.WithLabelValues(function, topic),
		delivered:    m.delivered.WithLabelValues(function, topic),
		failures:     m.failures.WithLabelValues(function, topic),
		retries:      m.retries.WithLabelValues(function, topic),
		giveUps:      m.giveUps.WithLabelValues(function, topic),
		deadLetters:  m.deadLetters.WithLabelValues(function, topic),
		backPressure: m.backPressure.WithLabelValues(function, topic),
		window:       m.window.WithLabelValues(function, topic, p),
		batchSize:    m.batchSize.WithLabelValues(function),
		retrying:     m.retrying.WithLabelValues(function),
		committed:    m.committed.WithLabelValues(function, topic, p),
		invocationOK: m.invocation.WithLabelValues(function, "2xx"),
	}
}

// invoked records one invocation's duration by the class of its status; 0
// means no answer came. Back-pressure (a 429, or a 503 with Retry-After) is
// a class of its own, throttled: the function asked to slow down, it did
// not fail.
func (p *partitionMetrics) invoked(status int, throttled bool, seconds float64) {
	switch {
	case status >= 200 && status < 300:
		p.invocationOK.Observe(seconds)
	case status == 0:
		p.m.invocation.WithLabelValues(p.function, "error").Observe(seconds)
	case throttled:
		p.m.invocation.WithLabelValues(p.function, "throttled").Observe(seconds)
	default:
		p.m.invocation.WithLabelValues(p.function, strconv.Itoa(status/100)+"xx").Observe(seconds)
	}
}

// release drops the partition's own series when the partition leaves this
// connector, so that another replica's figures are not shadowed by stale ones.
func (p *partitionMetrics) release() {
	p.m.committed.DeleteLabelValues(p.function, p.topic, p.partition)
	p.m.window.DeleteLabelValues(p.function, p.topic, p.partition)
}

// byFunction are the series that carry a function label and are kept while
// the function has a trigger; function_config_error is kept by the function
// list itself.
func (m *metrics) byFunction() []*prometheus.MetricVec {
	vecs := append(m.schemas.byFunction(),
		m.consumed.MetricVec, m.delivered.MetricVec, m.batchSize.MetricVec, m.invocation.MetricVec,
		m.failures.MetricVec, m.retries.MetricVec, m.giveUps.MetricVec, m.deadLetters.MetricVec,
		m.retrying.MetricVec, m.committed.MetricVec, m.restarts.MetricVec,
		m.filtered.MetricVec, m.deadLetterErrors.MetricVec, m.inFlight.MetricVec, m.backPressure.MetricVec, m.window.MetricVec,
	)
	return append(vecs, m.responses.vecs()...)
}

// forget deletes every series of a function whose trigger is gone.
func (m *metrics) forget(function string) {
	for _, v := range m.byFunction() {
		v.DeletePartialMatch(prometheus.Labels{"function": function})
	}
}

// forgetTopic deletes the series of a topic the function no longer reads.
func (m *metrics) forgetTopic(function, topic string) {
	for _, v := range m.byFunction() {
		v.DeletePartialMatch(prometheus.Labels{"function": function, "topic": topic})
	}
}

// partitionCollector publishes the figures of the claimed partitions that
// a gauge set on a timer would show stale: the lag, from the partition's
// end as last measured and its position now, and the age of its oldest
// undelivered message, as of the scrape. A partition whose end has not been
// measured yet has no lag series rather than a 0 that would hide a backlog.
type partitionCollector struct {
	lag, oldest *prometheus.Desc
	mu          sync.Mutex
	states      map[*partitionState]bool
}

func newPartitionCollector(ns string) *partitionCollector {
	labels := []string{"function", "topic", "partition"}
	return &partitionCollector{
		lag: prometheus.NewDesc(ns+"_consumer_lag_messages",
			"Messages in the partition not yet delivered: its end (the last stable offset under read_committed), measured when the partition is claimed and then on a timer whether or not batches succeed, less the group's position now. Absent until first measured.",
			labels, nil),
		oldest: prometheus.NewDesc(ns+"_oldest_undelivered_seconds",
			"Age, when scraped, of the oldest message read from the partition but not yet delivered (by its Kafka timestamp); 0 once everything read is delivered and nothing more is waiting. A stuck function shows here.",
			labels, nil),
		states: make(map[*partitionState]bool),
	}
}

func (c *partitionCollector) add(s *partitionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states[s] = true
}

func (c *partitionCollector) remove(s *partitionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.states, s)
}

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.oldest
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.states {
		m := s.metrics
		if lag, ok := s.lag(); ok {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lag), m.function, m.topic, m.partition)
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, s.age(now).Seconds(), m.function, m.topic, m.partition)
	}
}
