package connector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/respond"
	"github.com/kafka-connector/kafka-connector/types"
)

// Writing a function's answers to its response topic (package respond
// holds the rules and the writers; this file decides when they run).
//
// At least once: a batch's answer is written, and acknowledged by the
// brokers, before the batch reports it is finished, so before its offsets
// can be marked. A write that fails is retried with backoff while the
// partition waits.
//
// Exactly once (ordering=partition only, see types.CheckResponse): each
// claimed partition has a transactional producer, started before the
// partition's first message is delivered, which fences the replica that had
// the partition before (see respond.Transactional). Answers are written in
// the open transaction, and the partition's offsets are committed in it
// instead of through the consumer group: commit holds the offset, and the
// transaction commits it with the answers every maxTransactionBatches
// batches or commit_interval, whichever comes first, and when the claim
// ends. A transaction that fails is aborted: its answers are dropped and
// its offset not committed, the partition stops, and the trigger joins its
// group again, so that the partition is read again from its committed
// offset and the batches are delivered again.

// maxTransactionBatches bounds the batches of a partition per transaction:
// a transaction costs four round trips to the brokers (adding the
// partitions and the offsets, committing the offsets, ending it), shared
// by its batches, and what an aborted one delivers again grows with them.
const maxTransactionBatches = 20

// errRedeliver ends a group session so that partitions whose transaction
// was aborted are read again from their committed offsets.
var errRedeliver = errors.New("a transaction of answers was aborted; reading its partition again from the committed offset")

// answers is what a trigger needs to write its function's answers.
type answers struct {
	topic   string
	exactly bool
	// writer writes at least once, for every partition; nil under
	// exactly-once, where each partition has its own producer.
	writer *respond.Writer
	// newConfig is the configuration of a partition's transactional
	// producer.
	newConfig func(transactionalID string) *sarama.Config
	// redeliver ends the trigger's group session, once; set by each
	// session (see onRedeliver).
	redeliver atomic.Pointer[func()]
	metrics   *responseMetrics
	// interval bounds how long a transaction holds finished batches:
	// commit_interval, as offsets are flushed without one.
	interval time.Duration
}

func newAnswers(s types.TriggerSettings, brokers []string, interval time.Duration, newConfig func(transactionalID string) *sarama.Config, m *responseMetrics) *answers {
	if s.ResponseTopic == "" {
		return nil
	}
	a := &answers{topic: s.ResponseTopic, exactly: s.ResponseDelivery == types.ExactlyOnce, newConfig: newConfig, metrics: m, interval: interval}
	if !a.exactly {
		a.writer = respond.NewWriter(brokers, func() *sarama.Config { return newConfig("") })
	}
	return a
}

// onRedeliver arms a session: a partition whose transaction failed calls
// end, and asked reports, once the session is over, whether one did.
func (a *answers) onRedeliver(end context.CancelFunc) (asked func() bool) {
	if a == nil || !a.exactly {
		return func() bool { return false }
	}
	var called atomic.Bool
	fn := func() {
		called.Store(true)
		end()
	}
	a.redeliver.Store(&fn)
	return called.Load
}

func (a *answers) close() {
	if a != nil {
		a.writer.Close()
	}
}

// responseMetrics count what is written to response topics.
type responseMetrics struct {
	records      *prometheus.CounterVec // function, topic (the source)
	errors       *prometheus.CounterVec // function, topic, reason
	transactions *prometheus.CounterVec // function, topic, result
}

func newResponseMetrics(ns string) *responseMetrics {
	return &responseMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "response_records_total",
			Help: "Records written to the response topic from the function's answers (under exactly-once, committed or not).",
		}, []string{"function", "topic"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "response_errors_total",
			Help: "Failed writes to the response topic, by reason: too_large, unknown_topic, not_authorized and transaction_timeout will not succeed until the topic, the brokers or the ACLs change; transient may; fenced is a replica that lost its partition.",
		}, []string{"function", "topic", "reason"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "response_transactions_total",
			Help: "Transactions of answers and offsets under exactly-once, by result: committed or aborted (its batches are delivered again).",
		}, []string{"function", "topic", "result"}),
	}
}

func (m *responseMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.records, m.errors, m.transactions}
}

func (m *responseMetrics) vecs() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{m.records.MetricVec, m.errors.MetricVec, m.transactions.MetricVec}
}

// partitionResponses is a partition worker's part in writing answers. Only
// the worker's goroutine touches it under exactly-once, whose batches are
// delivered inline; under at-least-once the flights only read it.
type partitionResponses struct {
	a *answers
	// tx is the partition's transactional producer; nil under
	// at-least-once.
	tx *respond.Transactional
	// from is the partition's committed offset as read once tx fenced
	// the previous owner: the messages before it were committed with
	// their answers after sarama read where to start, and are skipped.
	from int64
	// held is the offset waiting for the transaction, when holding.
	held    int64
	holding bool
	// batches are those whose answers went into the transaction since
	// the last commit; timer runs from the first offset held.
	batches int
	timer   *time.Timer
	timing  bool
	// failed is set once a transaction failed: nothing more is
	// committed, the claim ends, and the session is ended for the
	// partition to be read again. fenced is set when another replica
	// took the partition's transactional id.
	failed, fenced bool
	id             string // the transactional id
	halt           context.CancelFunc

	// pending is the answer being written at least once in the
	// background, and unacknowledged the offset waiting for it, -1 when
	// none (see answerwrite.go). Only the worker's goroutine touches
	// them; writes owns the goroutine writing.
	pending        *pendingAnswer
	unacknowledged int64
	writes         sync.WaitGroup
}

// openResponses prepares the partition's answers before its first message
// is read; under exactly-once, it starts the partition's producer, which
// fences the previous owner, and reads the committed offset. It reports
// false if the worker must stop first.
func (w *partitionWorker) openResponses() bool {
	a := w.t.answers
	if a == nil {
		return true
	}
	r := &partitionResponses{a: a, from: -1, held: -1, unacknowledged: -1}
	w.resp = r
	if !a.exactly {
		return true
	}
	stop, halt := context.WithCancel(w.stop)
	w.stop, r.halt = stop, halt
	r.timer = time.NewTimer(time.Hour)
	r.timer.Stop()
	id := respond.TransactionalID(w.t.settings.Group, w.claim.Topic(), w.claim.Partition())
	r.id = id
	retry := newRetrier(w.t.settings.RetryBackoffInitial, w.t.settings.RetryBackoffMax)
	for r.tx == nil {
		tx, err := respond.NewTransactional(w.t.brokers, a.newConfig(id), w.t.settings.Group)
		if err == nil {
			r.tx = tx
			break
		}
		if !w.waitResponses(retry, "cannot start the partition's transactional producer", err) {
			return false
		}
	}
	for {
		from, err := r.tx.Committed(w.claim.Topic(), w.claim.Partition())
		if err == nil {
			if w.claim.InitialOffset() < 0 {
				// The claim does not start at the committed offset: the
				// group has none, or it is past the partition's end (a
				// truncated log) and sarama reset it. What the partition
				// holds below it was not committed by anyone: nothing is
				// skipped.
				if from >= 0 {
					w.log.Warn("the committed offset is not in the partition; delivering from where the claim starts, skipping nothing",
						"committed", from, "initial_offset", w.claim.InitialOffset())
				}
				from = -1
			}
			r.from = from
			if from > w.claim.InitialOffset() && w.claim.InitialOffset() >= 0 {
				w.log.Info("the partition's previous owner committed more before it was fenced; skipping what it committed",
					"initial_offset", w.claim.InitialOffset(), "committed", from)
			}
			return true
		}
		if !w.waitResponses(retry, "cannot read the partition's committed offset", err) {
			return false
		}
	}
}

// waitResponses logs a failure to start a partition's producer and waits
// before the next try; false if the worker must stop first.
func (w *partitionWorker) waitResponses(retry *retrier, what string, err error) bool {
	reason, fix := writeFailure(err, "response topic")
	w.t.answers.metrics.errors.WithLabelValues(w.t.function, w.claim.Topic(), reason).Inc()
	delay := retry.next()
	if fix != "" {
		w.log.Error(what+", and retrying will not help until this is fixed: "+fix, "reason", reason, "error", err, "retry_in", delay)
	} else {
		w.log.Warn(what+"; retrying", "reason", reason, "error", err, "retry_in", delay)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop.Done():
		return false
	}
}

// closeResponses commits what the partition finished, unless a transaction
// failed, and lets the producer go. After a failure it ends the session:
// the partition is read again from its committed offset.
func (w *partitionWorker) closeResponses() {
	r := w.resp
	if r == nil {
		return
	}
	r.writes.Wait() // run awaited the answer being written, or it never started
	if r.tx == nil {
		return
	}
	r.timer.Stop()
	if !r.failed {
		w.flushResponses()
	}
	r.tx.Close()
	if !r.failed {
		return
	}
	if !r.fenced {
		// A producer that failed may leave its transaction open at the
		// coordinator, and with it the offsets it added: readers of the
		// group's offsets (read_committed consumers, this partition's
		// next claim) wait for it until the transaction timeout. Starting
		// the id again aborts it now. After fencing, the id is the other
		// replica's, and its own start aborted the transaction.
		if tx, err := respond.NewTransactional(w.t.brokers, r.a.newConfig(r.id), w.t.settings.Group); err == nil {
			tx.Close()
		} else {
			w.log.Warn("cannot abort the failed transaction; the partition waits for the brokers' transaction timeout", "error", err)
		}
	}
	if end := r.a.redeliver.Load(); end != nil {
		(*end)()
	}
}

// skipped reports whether a message was committed, answers and all, by a
// previous owner of the partition.
func (r *partitionResponses) skipped(offset int64) bool {
	return r != nil && offset < r.from
}

// transactional reports whether the partition's offsets are committed in
// its transactions rather than through the consumer group.
func (r *partitionResponses) transactional() bool { return r != nil && r.tx != nil }

// due is the transaction's timer while batches wait in it.
func (r *partitionResponses) due() <-chan time.Time {
	if r == nil || !r.timing {
		return nil
	}
	return r.timer.C
}

// hold keeps offset, the partition's next to consume, for the transaction,
// and commits it once the transaction holds enough batches.
func (w *partitionWorker) hold(offset int64) {
	r := w.resp
	if r.failed {
		return
	}
	r.held, r.holding = offset, true
	if r.batches >= maxTransactionBatches {
		w.flushResponses()
		return
	}
	if !r.timing {
		r.timer.Reset(r.a.interval)
		r.timing = true
	}
}

// flushResponses commits the open transaction with the held offset. It
// reports false once a transaction failed.
func (w *partitionWorker) flushResponses() bool {
	r := w.resp
	if !r.transactional() {
		return true
	}
	if r.failed {
		return false
	}
	if r.timing {
		r.timer.Stop()
		r.timing = false
	}
	open, _ := r.tx.Pending()
	if !r.holding && !open {
		return true
	}
	if !r.holding {
		// Answers without an offset to commit them with: a batch reported
		// nothing finished. Not reached while batches are delivered
		// inline, but aborting is what keeps it exactly once.
		r.tx.Abort()
		r.batches = 0
		return true
	}
	tm := r.a.metrics.transactions
	if err := r.tx.Commit(w.claim.Topic(), w.claim.Partition(), r.held, w.meta); err != nil {
		tm.WithLabelValues(w.t.function, w.claim.Topic(), "aborted").Inc()
		w.responseFailed("cannot commit the transaction of the partition's answers and offsets", err, respond.Fenced(err))
		return false
	}
	if open {
		tm.WithLabelValues(w.t.function, w.claim.Topic(), "committed").Inc()
	}
	r.holding, r.batches = false, 0
	w.committed(r.held)
	return true
}

// responseFailed gives up on the partition after a failed transaction: its
// answers are dropped and its offsets not committed; the claim ends and the
// session with it (see closeResponses).
func (w *partitionWorker) responseFailed(what string, err error, fenced bool) {
	r := w.resp
	r.failed = true
	r.holding = false
	reason, fix := writeFailure(err, "response topic")
	if fenced {
		reason, fix = "fenced", ""
		r.fenced = true
	}
	r.a.metrics.errors.WithLabelValues(w.t.function, w.claim.Topic(), reason).Inc()
	log := w.log.With("response_topic", r.a.topic, "reason", reason, "error", err)
	switch {
	case reason == "fenced":
		log.Warn(what + ": another replica took the partition and fenced this one; what this one wrote since its last commit is dropped")
	case fix != "":
		log.Error(what + "; the transaction is aborted and its batches will be delivered again, but not until this is fixed: " + fix)
	default:
		log.Error(what + "; the transaction is aborted, and its batches will be delivered again from the committed offset")
	}
	r.halt()
}

// answer reads a successful answer into the records to write, when the
// function has a response topic.
func (f *flight) answer(resp gateway.Response) ([]respond.Record, error) {
	if f.w.t.answers == nil {
		return nil, nil
	}
	if resp.Truncated {
		return nil, fmt.Errorf("the answer is larger than the %d bytes the connector keeps of it, and would be written cut short", gateway.MaxResponseBytes)
	}
	return respond.Parse(resp.Body)
}

// source names the batch as it was sent in the attempt just made.
func (f *flight) source() respond.Source {
	w := f.w
	return respond.Source{
		Topic: w.claim.Topic(), Partition: w.claim.Partition(),
		First: f.first(), Last: f.last(),
		Function: w.t.function, IdempotencyKey: f.idempotencyKey(),
	}
}

// writeAnswer writes the records of a batch's successful answer before the
// batch reports its records finished: at least once (see answerwrite.go),
// or in the partition's transaction, retrying with backoff while the
// partition waits. It reports false if the worker must stop first, or,
// under exactly-once, once the transaction failed: the batch is then
// abandoned, uncommitted.
func (f *flight) writeAnswer(records []respond.Record) bool {
	w := f.w
	a := w.t.answers
	switch {
	case a == nil:
		return true
	case !a.exactly:
		return f.writeAtLeastOnce(records)
	}
	msgs := respond.Messages(a.topic, f.source(), records)
	r := w.resp
	for try := 1; ; try++ {
		if r.failed {
			return false
		}
		// fenced: the coordinator refused the write for the state of the
		// transaction, which a producer of the id started elsewhere (the
		// partition's next owner) aborted.
		_, before := r.tx.Pending()
		err := r.tx.Write(msgs)
		if err == nil {
			r.batches++
			a.metrics.records.WithLabelValues(w.t.function, w.claim.Topic()).Add(float64(len(msgs)))
			return true
		}
		// The transaction can only be aborted now. What it held of the
		// batches before this one is lost with it.
		fenced := respond.Fenced(err) || errors.Is(err, sarama.ErrInvalidTxnState)
		r.tx.Abort()
		if before > 0 || fenced || !r.tx.Usable() {
			w.responseFailed("cannot write the answer in the partition's transaction", err, fenced)
			return false
		}
		if !f.sleep(w.answerFailed(f.log(), err, try)) {
			return false
		}
	}
}
