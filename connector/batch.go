package connector

import (
	"sync/atomic"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/types"
)

// record is one message of a partition's window: the message, for a
// partial retry or the dead-letter topic, and its record of the event,
// encoded once when it is read. A batch's body is its records' encodings
// put end to end, so that the scheduler can count the bytes of a batch
// before it is built.
type record struct {
	msg *sarama.ConsumerMessage
	enc []byte
}

// recordSize is what a record adds to a body: its encoding and a comma.
// With the scheduler's MaxBytes at bodyBudget, the batches are those of a
// body of at most max_bytes.
func recordSize(r record) int { return len(r.enc) + 1 }

// bodyBudget is the scheduler's MaxBytes for max_bytes: the records of a
// body of n records take the sum of their sizes less one comma, plus the
// event's start and end.
func bodyBudget(maxBytes int) int {
	return max(1, maxBytes-len(types.EventStart)-len(types.EventEnd)+1)
}

// encoder encodes the records of one partition, each once, as it is read,
// into runs: the start of an event, then records separated by commas. A
// run is cut where the scheduler cuts a batch when messages flow (by its
// policy's Fits: after max_messages records or before max_bytes), so that
// under ordering partition and none, whose batches take the records in the
// order they were read, a batch is usually one whole run, and its body is
// that run with the event's end appended: one buffer a batch, written
// once. Any other batch (ordering key, a batch cut short by max_wait or a
// full window, what is left after a partial success) is copied from its
// records into a body of its own.
//
// A record refers to the bytes of its run: a run is never written below
// its length once a record is there, and a run sealed as a body is not
// written again until its lease gives it back: once every record of it is
// finished and the HTTP transport, which may go on reading a body after
// the invocation returned, is done with it.
type encoder struct {
	extras bool            // add timestamp and headers to every record
	p      schedule.Policy // the partition's, which cuts its batches
	// run is the run being filled, with n records whose sizes sum to
	// bytes; prev is the run cut before it, which the next batch may still
	// be. size is the capacity of a fresh run, lastBody the length of the
	// last body.
	run, prev      []byte
	n, bytes       int
	size, lastBody int
	// free holds a run given back by its lease, for the next run to fill
	// again. One is enough: a batch is usually given back before the
	// worker starts the next run (when the transport closes late, that run
	// is a fresh one), and the buffers a partition holds stay those of its
	// batches in flight and the run being filled, and at most this one.
	// It is made with the first lease: a partition of small batches has
	// none.
	free chan []byte
	// lendFrom is the smallest body lent (leaseMin, lower in tests).
	lendFrom int
}

// leaseMin is the smallest body worth having back. Below it, a body goes
// out with its headers in one write only if it is not lent (see
// gateway.Request.Released), and the runtime makes it cheaply from its
// size classes. Above it, a body takes several writes anyway, and a fresh
// one costs the runtime the clearing of its every page: 5% of the
// connector's CPU at max_messages=1000, before the collector's share.
const leaseMin = 32 << 10

// newEncoder returns an encoder for the batches of a scheduler of policy p.
func newEncoder(extras bool, p schedule.Policy) encoder {
	return encoder{extras: extras, p: p, size: 512, lendFrom: leaseMin}
}

// largest is the size of the largest run made, unless for one larger
// record: a body of max_bytes (see bodyBudget).
func (e *encoder) largest() int {
	return e.p.MaxBytes + len(types.EventStart) + len(types.EventEnd) - 1
}

// release drops the runs, for a partition with nothing to do: a thousand
// idle partitions keep no buffers, but for a run given back after this by
// a transport that closed its body late, which waits in free. The records
// already encoded keep what they refer to.
func (e *encoder) release() {
	e.run, e.prev, e.n, e.bytes = nil, nil, 0, 0
	select {
	case <-e.free:
	default:
	}
}

// cut ends the run being filled: the next record starts a new one.
func (e *encoder) cut() {
	e.prev, e.run, e.n, e.bytes = e.run, nil, 0, 0
}

// fit sizes the next runs for bodies like b, with room to spare for
// somewhat larger records.
func (e *encoder) fit(b []byte) {
	e.size, e.lastBody = min(len(b)+len(b)/16, e.largest()), len(b)
}

// start begins a run of at least n bytes, in a run given back if it holds
// as much as the last body: a fresh run has room to spare, and bodies that
// grow a little go on filling it.
func (e *encoder) start(n int) {
	e.run = nil
	select {
	case run := <-e.free:
		if cap(run) >= max(e.lastBody, n+len(types.EventEnd)) {
			e.run = run[:0]
		}
	default:
	}
	if e.run == nil {
		e.run = make([]byte, 0, max(e.size, n)+len(types.EventEnd))
	}
	e.run = append(e.run, types.EventStart...)
}

func (e *encoder) encode(m *sarama.ConsumerMessage) record { return e.encodeDecoded(m, nil) }

// encodeDecoded encodes m, its key and value as d decoded them (nil for
// raw).
func (e *encoder) encodeDecoded(m *sarama.ConsumerMessage, d *decoded) record {
	if e.run == nil {
		e.start(0)
	}
	msg := types.Message{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Timestamp: m.Timestamp,
	}
	if d != nil {
		msg.KeyDecoded, msg.ValueDecoded = d.key, d.value
	}
	if e.extras {
		msg.Headers = make([]types.Header, len(m.Headers))
		for i, h := range m.Headers {
			msg.Headers[i] = types.Header{Key: h.Key, Value: h.Value}
		}
	}
	run, from := e.run, len(e.run)
	if e.n > 0 {
		run = append(run, ',')
	}
	run = types.AppendRecord(run, &msg, e.extras)
	enc := run[from:] // with its comma after the first record: its recordSize
	fits, moved := e.p.Fits(e.n, e.bytes, len(enc)), cap(run) != cap(e.run)
	switch {
	case e.n == 0:
	case !fits || moved:
		// The record does not belong to this run: the scheduler would
		// start a batch with it, or it did not fit and append moved the
		// run, whose records refer to where it was. It starts the next run.
		if fits {
			e.size = min(2*cap(e.run), e.largest()) // the run was too small
		}
		e.cut()
		e.start(len(types.EventStart) + len(enc))
		run = append(e.run, enc[1:]...)
		enc = run[len(types.EventStart):]
	default:
		enc = enc[1:]
	}
	e.run = run
	e.n++
	e.bytes += len(enc) + 1 // its recordSize
	return record{msg: m, enc: enc[:len(enc):len(enc)]}
}

// body returns the body of a batch: the run that holds exactly its
// records, sealed, with a lease on it when it is worth having back, or
// else a copy of them and no lease. It must be called on the goroutine
// that encodes.
func (e *encoder) body(items []schedule.Item[record]) ([]byte, *lease) {
	if spans(e.run, items) {
		e.cut() // the run is now prev
	}
	if spans(e.prev, items) {
		b := append(e.prev, types.EventEnd...)
		e.prev = nil // sealed: not written again until its lease gives it back
		e.fit(b)
		if len(b) < e.lendFrom {
			return b, nil
		}
		if e.free == nil {
			e.free = make(chan []byte, 1)
		}
		return b, newLease(b, e.free)
	}
	b := body(items)
	e.fit(b)
	if len(items) > 0 && ends(e.run, items[len(items)-1].Payload.enc) {
		// The next batch starts after this run: so does the next run, for
		// the batches and the runs to meet again.
		e.cut()
	}
	return b, nil
}

// A lease shares a run sealed as a body between the flight that delivers
// its batch and the HTTP transport's readers of it. The flight lets go
// once every record of the run is finished (never for a batch abandoned,
// whose records stay in the window), each invocation once the transport
// is done with the body; the last to let go gives the run back to its
// encoder. A busy partition thus writes its batches into the same few
// buffers, which the runtime need not clear nor the collector chase.
//
// Only the flight reads the encodings of a batch's records once it is in
// flight (its body, and keepFrom's copy): the worker and the scheduler
// may still hold the records of a finished batch for a moment, but never
// read their bytes. So the run may go back before the worker has applied
// the batch's report.
//
// A lease is shared between goroutines: the worker makes it, the flight
// and the transport let go of it, the worker takes the run back.
type lease struct {
	run  []byte
	refs atomic.Int32
	free chan<- []byte
}

// newLease returns a lease on run, held by the flight that delivers it.
func newLease(run []byte, free chan<- []byte) *lease {
	l := &lease{run: run, free: free}
	l.refs.Store(1)
	return l
}

// hold takes a reference for one invocation and returns what lets go of
// it, for gateway.Request.Released.
func (l *lease) hold() func() {
	l.refs.Add(1)
	return l.release
}

// release lets go of one reference; no lease holds nothing. On the last,
// the run goes back to its encoder, unless one is there already.
func (l *lease) release() {
	if l == nil || l.refs.Add(-1) > 0 {
		return
	}
	select {
	case l.free <- l.run[:0]:
	default:
	}
}

// ends reports whether enc is the last record of run.
func ends(run, enc []byte) bool {
	return len(enc) <= len(run)-len(types.EventStart) && &enc[0] == &run[len(run)-len(enc)]
}

// spans reports whether items are exactly the records of run, in its
// order: the first starts the run, the last ends it, and their sizes add
// up to its length. The records of a run do not overlap, so that nothing
// else fits in between.
func spans(run []byte, items []schedule.Item[record]) bool {
	if len(items) == 0 || len(run) <= len(types.EventStart) {
		return false
	}
	first, last := items[0].Payload.enc, items[len(items)-1].Payload.enc
	if &first[0] != &run[len(types.EventStart)] || !ends(run, last) {
		return false
	}
	n := len(types.EventStart) - 1
	for _, it := range items {
		n += recordSize(it.Payload)
	}
	return n == len(run)
}

// body builds the event of a batch in a buffer of its own from the
// encodings of its records.
func body(items []schedule.Item[record]) []byte {
	n := len(types.EventStart) + len(types.EventEnd)
	for _, it := range items {
		n += recordSize(it.Payload)
	}
	b := make([]byte, 0, n)
	b = append(b, types.EventStart...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.Payload.enc...)
	}
	return append(b, types.EventEnd...)
}
