package connector

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/IBM/sarama"
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
)

// deadLetter writes the batch's messages to the dead-letter topic with their
// key, value and headers, retrying until the brokers acknowledge them all:
// only then may the batch be committed. It reports false if the worker must
// stop first; the batch is then left uncommitted, to be tried again.
func (w *partitionWorker) deadLetter(attempts int, failure string) bool {
	topic := w.t.settings.DeadLetterTopic
	extra := []sarama.RecordHeader{
		{Key: []byte(HeaderOriginalTopic), Value: []byte(w.claim.Topic())},
		{Key: []byte(HeaderOriginalPartition), Value: []byte(w.metrics.partition)},
		{Key: []byte(HeaderFunction), Value: []byte(w.t.function)},
		{Key: []byte(HeaderAttempts), Value: []byte(strconv.Itoa(attempts))},
		{Key: []byte(HeaderLastFailure), Value: []byte(failure)},
	}
	letters := make([]*sarama.ProducerMessage, 0, w.batch.len())
	for _, m := range w.batch.msgs {
		headers := make([]sarama.RecordHeader, 0, len(m.Headers)+len(extra)+1)
		for _, h := range m.Headers {
			headers = append(headers, *h)
		}
		headers = append(headers, extra...)
		headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderOriginalOffset), Value: []byte(strconv.FormatInt(m.Offset, 10))})
		letter := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(m.Value), Headers: headers}
		if m.Key != nil {
			letter.Key = sarama.ByteEncoder(m.Key)
		}
		letters = append(letters, letter)
	}

	log := w.batchLog().With("dead_letter_topic", topic, "attempts", attempts, "last_failure", failure)
	s := w.t.settings
	for try := 1; ; try++ {
		err := w.t.deadLetters.send(letters)
		if err == nil {
			w.metrics.deadLetters.Add(float64(len(letters)))
			log.Error("retries spent: batch written to the dead-letter topic and committed")
			return true
		}
		delay := backoff(s.RetryBackoffInitial, s.RetryBackoffMax, try)
		log.Error("cannot write to the dead-letter topic; retrying, the batch stays uncommitted", "error", err, "retry_in", delay)
		if !w.sleep(delay) {
			return false
		}
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
	return p.SendMessages(msgs)
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
