package connector

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafka-connector/kafka-connector/schema"
	"github.com/kafka-connector/kafka-connector/types"
)

// A trigger whose key_format or value_format is not raw decodes each key or
// value once, as the partition worker reads it, before the filter sees it:
// the filter, the event and the dead-letter decision all work on the one
// result. What cannot be decoded comes in two kinds (see package schema):
//
//   - The registry cannot answer. The message is held: the worker reads
//     nothing after it, goes on finishing and committing the batches before
//     it, and reads it again after a backoff, until the registry answers or
//     the claim ends. Nothing is skipped or reordered.
//   - The message will never decode. With a dead-letter topic, it is
//     written there (x-last-failure says why) and committed without being
//     delivered; without one, it is delivered undecoded, in base64, with
//     msgBodyDecodeError (or msgKeyDecodeError) saying why, whatever the
//     filter says: it must not vanish.

// triggerDecoding is what a trigger that decodes shares among its
// partitions.
type triggerDecoding struct {
	registry               *schema.Registry // nil when no format needs it
	keyFormat, valueFormat types.Format
	// logged is set once an undecodable message was logged undelivered:
	// the later ones are only counted.
	logged  atomic.Bool
	metrics *schemaMetrics
}

// decoded is a message's key and value as the trigger's formats read them.
type decoded struct {
	key, value types.Decoded
}

// failed reports whether the key or the value could not be decoded.
func (d *decoded) failed() bool { return d != nil && (d.key.Error != "" || d.value.Error != "") }

// failure says what could not be decoded, for x-last-failure and the logs.
func (d *decoded) failure() string {
	switch {
	case d.key.Error != "" && d.value.Error != "":
		return "key not decoded: " + d.key.Error + "; value not decoded: " + d.value.Error
	case d.key.Error != "":
		return "key not decoded: " + d.key.Error
	}
	return "value not decoded: " + d.value.Error
}

// decoder decodes the keys and values of one partition. Only the worker's
// goroutine uses it.
type decoder struct {
	t *triggerDecoding
	// out is the result for the message being read; key and value hold
	// its JSON, filled again for every message.
	out        decoded
	key, value []byte
	// lastKey and lastValue are the schemas of the last key and value
	// decoded through the registry: a partition's messages are mostly of
	// one schema, found here without the registry's lock.
	lastKey, lastValue *schema.Schema
	// held is the message waiting for the registry, read again when timer
	// fires; failures counts the attempts that failed so far.
	held     *sarama.ConsumerMessage
	timer    *time.Timer
	failures int
	// The trigger's series, resolved once.
	undecodable, registryErrors prometheus.Counter
	waiting                     prometheus.Gauge
}

func newDecoder(t *triggerDecoding, function, topic string) *decoder {
	if t == nil {
		return nil
	}
	return &decoder{t: t,
		undecodable:    t.metrics.undecodable.WithLabelValues(function, topic),
		registryErrors: t.metrics.registryErrors.WithLabelValues(function),
		waiting:        t.metrics.waiting.WithLabelValues(function),
	}
}

// retry is the channel on which a held message is due to be read again;
// nil while none is held, or for a trigger that does not decode.
func (d *decoder) retry() <-chan time.Time {
	if d == nil || d.held == nil {
		return nil
	}
	return d.timer.C
}

// holding reports whether a message waits for the registry: nothing after
// it is read meanwhile.
func (d *decoder) holding() bool { return d != nil && d.held != nil }

// take returns the held message, to be read again.
func (d *decoder) take() *sarama.ConsumerMessage {
	m := d.held
	d.held = nil
	return m
}

// close ends the partition's wait for the registry, if it waits, in the
// gauge: the claim is over.
func (d *decoder) close() {
	if d == nil {
		return
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.failures > 0 {
		d.waiting.Dec()
		d.failures = 0
	}
}

// decode reads m's key and value as the trigger's formats say. It returns
// the result, nil for a trigger that does not decode, and true when the
// worker goes on with m: to deliver it, or to commit it once dead-lettered
// (lettered). It returns false when m is held for the registry, or when
// the worker must stop before the dead letter is written.
func (w *partitionWorker) decode(m *sarama.ConsumerMessage) (d *decoded, lettered, ok bool) {
	dec := w.dec
	if dec == nil {
		return nil, false, true
	}
	dec.out = decoded{}
	var err error
	if m.Key != nil && dec.t.keyFormat.Decodes() {
		dec.key, err = dec.one(w, dec.t.keyFormat, &dec.lastKey, &dec.out.key, dec.key[:0], m.Key)
	}
	if err == nil && m.Value != nil && dec.t.valueFormat.Decodes() {
		dec.value, err = dec.one(w, dec.t.valueFormat, &dec.lastValue, &dec.out.value, dec.value[:0], m.Value)
	}
	if err != nil {
		// Only the registry's failures come out as errors.
		var unavailable *schema.UnavailableError
		if !errors.As(err, &unavailable) {
			unavailable = &schema.UnavailableError{Registry: dec.t.registry.URL(), Err: err}
		}
		dec.hold(w, m, unavailable)
		return nil, false, false
	}
	if dec.failures > 0 {
		w.log.Info("the schema registry answers again; reading on", "registry", dec.t.registry.URL(), "offset", m.Offset, "failed_attempts", dec.failures)
		dec.close()
	}
	if !dec.out.failed() {
		return &dec.out, false, true
	}
	dec.undecodable.Inc()
	if w.t.settings.DeadLetterTopic != "" {
		if !w.letter(m, dec.out.failure()) {
			return nil, false, false
		}
		return nil, true, true
	}
	if dec.t.logged.CompareAndSwap(false, true) {
		w.log.Warn("a message could not be decoded; delivering it undecoded, in base64, with msgBodyDecodeError or msgKeyDecodeError saying why "+
			"(set a dead-letter topic to keep such messages from the function); the later ones of this function are only counted, in kafka_connector_undecodable_messages_total",
			"offset", m.Offset, "failure", dec.out.failure())
	}
	return &dec.out, false, true
}

// one decodes a key or value b in format into out, its JSON appended to
// buf; last is the schema of the one before. An undecodable b is reported
// in out; the error is only the registry's, which passes.
func (d *decoder) one(w *partitionWorker, format types.Format, last **schema.Schema, out *types.Decoded, buf, b []byte) ([]byte, error) {
	if format == types.FormatJSON {
		if err := schema.CheckJSON(b); err != nil {
			out.Error = err.Error()
			return buf, nil
		}
		out.JSON = b
		return buf, nil
	}
	id, payload, err := schema.ParseHeader(b)
	s := *last
	if err == nil && (s == nil || s.ID != id) {
		s, err = d.t.registry.Schema(w.stop, id)
	}
	if err == nil {
		*last = s
		buf, err = s.AppendJSON(buf, payload)
	}
	if err == nil {
		out.JSON, out.SchemaID = buf, s.IDText
		return buf, nil
	}
	// Declared here, off the path of a value that decodes: errors.As
	// moves it to the heap.
	var undecodable *schema.UndecodableError
	if errors.As(err, &undecodable) {
		out.Error = err.Error()
		return buf, nil
	}
	return buf, err
}

// hold keeps m back until the registry answers: the worker reads nothing
// after it, and reads it again after a backoff.
func (d *decoder) hold(w *partitionWorker, m *sarama.ConsumerMessage, err *schema.UnavailableError) {
	if w.stop.Err() != nil {
		return // the claim is over: the next owner reads m again
	}
	d.failures++
	d.registryErrors.Inc()
	if d.failures == 1 {
		d.waiting.Inc()
	}
	s := w.t.settings
	delay := backoff(s.RetryBackoffInitial, s.RetryBackoffMax, d.failures)
	w.log.Warn("the schema registry cannot be reached; the partition waits at this message, skipping nothing",
		"registry", err.Registry, "offset", m.Offset, "attempt", d.failures, "error", err.Err.Error(), "retry_in", delay.Round(time.Millisecond))
	d.held = m
	if d.timer == nil {
		d.timer = time.NewTimer(delay)
	} else {
		d.timer.Reset(delay)
	}
}

// letter writes m to the dead-letter topic because it cannot be decoded,
// retrying until the brokers acknowledge it. It reports false if the worker
// must stop first: m is then left uncommitted, to be read again.
func (w *partitionWorker) letter(m *sarama.ConsumerMessage, failure string) bool {
	topic := w.t.settings.DeadLetterTopic
	letter := letterOf(m, topic, []sarama.RecordHeader{
		{Key: []byte(HeaderOriginalTopic), Value: []byte(w.claim.Topic())},
		{Key: []byte(HeaderOriginalPartition), Value: []byte(w.metrics.partition)},
		{Key: []byte(HeaderFunction), Value: []byte(w.t.function)},
		{Key: []byte(HeaderAttempts), Value: []byte("0")}, // never delivered
		{Key: []byte(HeaderLastFailure), Value: []byte(failure)},
	})
	log := w.log.With("offset", m.Offset, "dead_letter_topic", topic, "failure", failure)
	s := w.t.settings
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for try := 1; ; try++ {
		err := w.t.deadLetters.send([]*sarama.ProducerMessage{letter})
		if err == nil {
			w.metrics.deadLetters.Inc()
			log.Error("a message could not be decoded: written to the dead-letter topic and committed without delivery")
			return true
		}
		delay := backoff(s.RetryBackoffInitial, s.RetryBackoffMax, try)
		reason, fix := deadLetterFailure(err)
		w.t.metrics.deadLetterErrors.WithLabelValues(w.t.function, w.claim.Topic(), reason).Inc()
		log.Error("cannot write an undecodable message to the dead-letter topic; the partition waits, uncommitted "+fix,
			"reason", reason, "error", err, "retry_in", delay)
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		select {
		case <-timer.C:
		case <-w.stop.Done():
			return false
		}
	}
}

// schemaMetrics are the metrics of decoding.
type schemaMetrics struct {
	undecodable    *prometheus.CounterVec // function, topic
	registryErrors *prometheus.CounterVec // function
	waiting        *prometheus.GaugeVec   // function
}

func newSchemaMetrics(ns string) *schemaMetrics {
	return &schemaMetrics{
		undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "undecodable_messages_total",
			Help: "Messages whose key or value could not be decoded as key_format or value_format says (not in the wire format, a schema ID the registry does not know, a payload that does not match its schema): dead-lettered, or delivered undecoded with msgBodyDecodeError or msgKeyDecodeError.",
		}, []string{"function", "topic"}),
		registryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "schema_registry_errors_total",
			Help: "Attempts to fetch a schema that failed because the registry could not be reached, refused the credentials or answered an error; the partition waits and tries again.",
		}, []string{"function"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "schema_registry_waiting_partitions",
			Help: "Partitions of the function waiting for the schema registry to answer before they read on.",
		}, []string{"function"}),
	}
}

func (m *schemaMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.undecodable, m.registryErrors, m.waiting}
}

func (m *schemaMetrics) byFunction() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{m.undecodable.MetricVec, m.registryErrors.MetricVec, m.waiting.MetricVec}
}

// decodingFor returns what a trigger of settings shares for decoding, nil
// when it decodes nothing, and an error when it needs a registry the
// connector does not have.
func (c *Connector) decodingFor(s types.TriggerSettings) (*triggerDecoding, error) {
	if !s.KeyFormat.Decodes() && !s.ValueFormat.Decodes() {
		return nil, nil
	}
	d := &triggerDecoding{keyFormat: s.KeyFormat, valueFormat: s.ValueFormat, metrics: c.metrics.schemas}
	if s.KeyFormat == types.FormatSchemaRegistry || s.ValueFormat == types.FormatSchemaRegistry {
		if c.registry == nil {
			why := "schema_registry_url is not set"
			if c.registryErr != nil {
				why = c.registryErr.Error()
			}
			return nil, fmt.Errorf("%s or %s is %s, which needs the connector's schema registry: %s",
				types.AnnotationKeyFormat, types.AnnotationValueFormat, types.FormatSchemaRegistry, why)
		}
		d.registry = c.registry
	}
	return d, nil
}
