package respond

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/IBM/sarama"
)

// WriteError is a send of which some records were not acknowledged. It
// says why, once per cause, and lets errors.Is find each cause.
type WriteError struct {
	Failed, Sent int
	Causes       []error
}

func newWriteError(pes sarama.ProducerErrors, sent int) *WriteError {
	e := &WriteError{Failed: len(pes), Sent: sent}
	seen := make(map[string]bool)
	for _, pe := range pes {
		if text := pe.Err.Error(); !seen[text] {
			seen[text] = true
			e.Causes = append(e.Causes, pe.Err)
		}
	}
	return e
}

func (e *WriteError) Error() string {
	causes := make([]string, len(e.Causes))
	for i, c := range e.Causes {
		causes[i] = c.Error()
	}
	return fmt.Sprintf("%d of %d records not written: %s", e.Failed, e.Sent, strings.Join(causes, "; "))
}

func (e *WriteError) Unwrap() []error { return e.Causes }

func send(p sarama.SyncProducer, msgs []*sarama.ProducerMessage) error {
	err := p.SendMessages(msgs)
	var pes sarama.ProducerErrors
	if errors.As(err, &pes) {
		return newWriteError(pes, len(msgs))
	}
	return err
}

// Writer writes records at least once: Write returns once the brokers
// acknowledged every record. One Writer serves every partition of a
// trigger, concurrently; it connects on first use.
type Writer struct {
	brokers   []string
	newConfig func() *sarama.Config

	mu       sync.Mutex
	producer sarama.SyncProducer
}

// NewWriter returns a writer to brokers. newConfig gives the producer's
// configuration (acks from every in-sync replica, idempotent: a record
// retried by the producer is written once, in order); the writer sets the
// partitioner.
func NewWriter(brokers []string, newConfig func() *sarama.Config) *Writer {
	return &Writer{brokers: brokers, newConfig: newConfig}
}

// Write writes msgs and waits for the brokers' acknowledgement. A partly
// failed write is retried whole by the caller, so a record may be written
// twice: readers that mind drop the copies by their idempotency key.
func (w *Writer) Write(msgs []*sarama.ProducerMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	p, err := w.get()
	if err != nil {
		return err
	}
	return send(p, msgs)
}

func (w *Writer) get() (sarama.SyncProducer, error) {
	w.mu.Lock()
	p := w.producer
	w.mu.Unlock()
	if p != nil {
		return p, nil
	}
	// Connecting happens outside the lock: the partitions that want the
	// producer already there do not wait for a slow connection.
	conf := w.newConfig()
	conf.Producer.Partitioner = Partitioner
	p, err := sarama.NewSyncProducer(w.brokers, conf)
	if err != nil {
		return nil, fmt.Errorf("connecting a producer to %v: %w", w.brokers, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.producer != nil {
		p.Close()
		return w.producer, nil
	}
	w.producer = p
	return p, nil
}

// Close closes the producer, once no partition writes any more.
func (w *Writer) Close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.producer != nil {
		w.producer.Close()
		w.producer = nil
	}
}
