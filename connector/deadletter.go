package connector

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/respond"
)

// Headers added to every dead-lettered message, beside its own, to say
// where it came from and why it is there.
const (
	HeaderOriginalTopic     = "x-original-topic"
	HeaderOriginalPartition = "x-original-partition"
	HeaderOriginalOffset    = "x-original-offset"
	HeaderFunction          = "x-function"
	HeaderAttempts          = "x-attempts"
	HeaderLastFailure       = "x-last-failure"
	// HeaderLastAnswer is the body of the function's last answer, its
	// first maxLastAnswer bytes, when it gave one: a status line alone
	// rarely says what the function found wrong.
	HeaderLastAnswer = "x-last-answer"
)

// maxLastAnswer bounds the answer a dead letter carries: a header is read
// whole by every consumer of the topic.
const maxLastAnswer = 8 << 10

// noteAnswer keeps the start of an attempt's answer for the dead letters,
// when there is a dead-letter topic to write them to.
func (f *flight) noteAnswer(body []byte) {
	if f.w.t.settings.DeadLetterTopic == "" {
		return
	}
	f.lastAnswer = append(f.lastAnswer[:0], body[:min(len(body), maxLastAnswer)]...)
}

// deadLetter writes the batch's messages to the dead-letter topic with their
// key, value and headers, retrying until the brokers acknowledge them all:
// only then may the batch be committed. It reports false if the worker must
// stop first; the batch is then left uncommitted, to be tried again.
func (f *flight) deadLetter(attempts int, failure string) bool {
	w := f.w
	topic := w.t.settings.DeadLetterTopic
	extra := []sarama.RecordHeader{
		{Key: []byte(HeaderOriginalTopic), Value: []byte(w.claim.Topic())},
		{Key: []byte(HeaderOriginalPartition), Value: []byte(w.metrics.partition)},
		{Key: []byte(HeaderFunction), Value: []byte(w.t.function)},
		{Key: []byte(HeaderAttempts), Value: []byte(strconv.Itoa(attempts))},
		{Key: []byte(HeaderLastFailure), Value: []byte(failure)},
	}
	if len(f.lastAnswer) > 0 {
		extra = append(extra, sarama.RecordHeader{Key: []byte(HeaderLastAnswer), Value: f.lastAnswer})
	}
	letters := make([]*sarama.ProducerMessage, 0, f.batch.Len())
	for _, it := range f.batch.Items {
		letters = append(letters, letterOf(it.Payload.msg, topic, extra))
	}

	log := f.log().With("dead_letter_topic", topic, "attempts", attempts, "last_failure", failure)
	s := w.t.settings
	for try := 1; ; try++ {
		err := w.t.deadLetters.send(letters)
		if err == nil {
			w.metrics.deadLetters.Add(float64(len(letters)))
			f.trace.DeadLettered(topic, len(letters))
			log.Error("retries spent: batch written to the dead-letter topic and committed")
			return true
		}
		delay := backoff(s.RetryBackoffInitial, s.RetryBackoffMax, try)
		reason, fix := deadLetterFailure(err)
		w.t.metrics.deadLetterErrors.WithLabelValues(w.t.function, w.claim.Topic(), reason).Inc()
		f.trace.DeadLetterFailed(topic, reason)
		if fix != "" {
			// Retrying goes on, as the cause may be fixed while the
			// connector runs, but it will not succeed by itself.
			log.Error("cannot write to the dead-letter topic, and retrying will not help until this is fixed: "+fix+
				"; the partition waits, uncommitted", "reason", reason, "error", err, "retry_in", delay)
		} else {
			log.Error("cannot write to the dead-letter topic; retrying, the batch stays uncommitted", "reason", reason, "error", err, "retry_in", delay)
		}
		if !f.sleep(delay) {
			return false
		}
	}
}

// letterOf is the dead letter of m: its key, value and headers, and the
// extra headers, with its offset.
func letterOf(m *sarama.ConsumerMessage, topic string, extra []sarama.RecordHeader) *sarama.ProducerMessage {
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+len(extra)+1)
	for _, h := range m.Headers {
		headers = append(headers, *h)
	}
	headers = append(headers, extra...)
	headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderOriginalOffset), Value: []byte(strconv.FormatInt(m.Offset, 10))})
	// A nil key or value stays null, not empty: a tombstone stays one.
	letter := &sarama.ProducerMessage{Topic: topic, Headers: headers}
	if m.Key != nil {
		letter.Key = sarama.ByteEncoder(m.Key)
	}
	if m.Value != nil {
		letter.Value = sarama.ByteEncoder(m.Value)
	}
	return letter
}

// The reasons a dead-letter write failed, as the dead_letter_errors_total
// metric counts them. All but the last are permanent: the write fails the
// same way until someone changes the topic, the brokers or the ACLs.
const (
	deadLetterTooLarge      = "too_large"
	deadLetterUnknownTopic  = "unknown_topic"
	deadLetterNotAuthorized = "not_authorized"
	deadLetterTransient     = "transient"
	// responseBadTimeout is a transaction timeout the brokers refuse.
	responseBadTimeout = "transaction_timeout"
)

// deadLetterFailure classifies a failed dead-letter write and, for a
// permanent failure, says what to do about it.
func deadLetterFailure(err error) (reason, fix string) {
	return writeFailure(err, "dead-letter topic")
}

// writeFailure classifies a failed write to the connector's own topics,
// named by what (the dead-letter or the response topic), and for a
// permanent failure says what to do about it. The reasons are those of
// dead_letter_errors_total and response_errors_total.
func writeFailure(err error, what string) (reason, fix string) {
	var config sarama.ConfigurationError
	switch {
	case errors.Is(err, sarama.ErrMessageSizeTooLarge), errors.Is(err, sarama.ErrMessageSetSizeTooLarge),
		errors.As(err, &config) && strings.Contains(string(config), "MaxMessageBytes"):
		return deadLetterTooLarge, "a record is larger than the " + what + " accepts; " +
			"give the topic a max.message.bytes (and the brokers a message.max.bytes) at least as large as its source topics'"
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition), errors.Is(err, sarama.ErrInvalidTopic):
		return deadLetterUnknownTopic, "the " + what + " does not exist, and the brokers do not create topics on demand; create it"
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed), errors.Is(err, sarama.ErrClusterAuthorizationFailed):
		return deadLetterNotAuthorized, "the brokers do not let the connector write to the " + what + "; " +
			"grant its user WRITE and DESCRIBE on the topic"
	case errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed):
		return deadLetterNotAuthorized, "the brokers do not let the connector use its transactional ids; " +
			"grant its user WRITE and DESCRIBE on the transactional ids that start with the function's group"
	case errors.Is(err, sarama.ErrInvalidTransactionTimeout):
		return responseBadTimeout, "the brokers refuse the transaction timeout, upstream_timeout + commit_interval + 30s; " +
			"lower upstream_timeout or raise the brokers' transaction.max.timeout.ms"
	default:
		return deadLetterTransient, ""
	}
}

// deadLetterProducer writes dead letters for one trigger. It connects on
// first use, as most triggers never need it, and may be used by every
// partition at once.
type deadLetterProducer struct {
	brokers   []string
	newConfig func() *sarama.Config

	mu       sync.Mutex
	producer sarama.SyncProducer
}

// send writes the messages and waits for the brokers' acknowledgement. A
// partly failed send is sent again whole, so a dead letter may be written
// twice; sarama's own timeouts and retries bound how long it takes.
func (d *deadLetterProducer) send(msgs []*sarama.ProducerMessage) error {
	p, err := d.get()
	if err != nil {
		return err
	}
	return respond.Send(p, msgs, "dead letters")
}

// get returns the producer, connecting it first if need be. Connecting
// happens outside the lock, so that one slow connection does not hold up
// the partitions that only want the producer already there.
func (d *deadLetterProducer) get() (sarama.SyncProducer, error) {
	d.mu.Lock()
	p := d.producer
	d.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := sarama.NewSyncProducer(d.brokers, d.newConfig())
	if err != nil {
		return nil, fmt.Errorf("connecting a producer to %v: %w", d.brokers, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.producer != nil { // another partition connected first
		p.Close()
		return d.producer, nil
	}
	d.producer = p
	return p, nil
}

// close closes the producer, once no partition uses it any more.
func (d *deadLetterProducer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.producer != nil {
		d.producer.Close()
		d.producer = nil
	}
}
