package connector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/types"
)

// TestEncoderBodiesStayTheirRecords drives an encoder with a scheduler as
// a partition worker does, with random sizes, keys, flushes, partial
// successes, completions in random order, and transports that let go of
// lent bodies early or late. Every body must be the event of its batch's
// records, and neither a body nor a record may change once handed out
// until its lease gave its run back: the HTTP transport may still be
// reading a body, and a retry copies the records again.
func TestEncoderBodiesStayTheirRecords(t *testing.T) {
	for _, o := range []schedule.Ordering{schedule.OrderPartition, schedule.OrderKey, schedule.OrderNone} {
		for seed := range uint64(30) {
			t.Run(fmt.Sprintf("%v/seed=%d", o, seed), func(t *testing.T) {
				checkEncoder(t, o, rand.New(rand.NewPCG(seed, 7)), seed%3 != 0)
			})
		}
	}
}

type handedOut struct {
	live, copy []byte
}

// checkEncoder runs one random partition; with lend, every sealed run is
// lent, however small.
func checkEncoder(t *testing.T, o schedule.Ordering, rng *rand.Rand, lend bool) {
	concurrency := 1
	if o != schedule.OrderPartition {
		concurrency = 1 + rng.IntN(4)
	}
	maxMessages, maxBytes := 1+rng.IntN(12), 1024+rng.IntN(2048)
	settings := types.TriggerSettings{Ordering: o, MaxMessages: maxMessages, MaxBytes: maxBytes}
	sched, err := schedule.New[record](schedule.Policy{
		Ordering: o, Concurrency: concurrency, MaxMessages: maxMessages, MaxBytes: bodyBudget(maxBytes),
		Window: windowOf(settings, concurrency), WindowBytes: windowBytes(settings, concurrency),
	})
	if err != nil {
		t.Fatal(err)
	}
	enc := newEncoder(rng.IntN(2) == 0, sched.Policy())
	if lend {
		enc.lendFrom = 0
	}
	out := map[string]handedOut{}
	keep := func(b []byte, what string) {
		out[what] = handedOut{live: b, copy: bytes.Clone(b)}
	}
	unchanged := func() {
		t.Helper()
		for what, h := range out {
			if !bytes.Equal(h.live, h.copy) {
				t.Fatalf("%s changed while it was handed out:\n%s\nwas\n%s", what, h.live, h.copy)
			}
		}
	}
	type batch struct {
		items []schedule.Item[record]
		lease *lease
		// what the run of a lease holds: dropped from out once it is back
		held []string
	}
	inFlight := map[uint64]*batch{}
	// transports holds the releases of invocations whose transport is not
	// done with the body yet: they come in any order, before or after
	// their batch is done.
	var transports []func()
	var reused int
	letGo := func(b *batch, release func()) {
		unchanged()
		release()
		if b.lease.refs.Load() == 0 {
			for _, what := range b.held {
				delete(out, what)
			}
			reused++
		}
	}
	check := func(id uint64, items []schedule.Item[record], b []byte) {
		t.Helper()
		if want := body(items); !bytes.Equal(b, want) {
			t.Fatalf("body of batch %d is not its records:\n%s\nwant\n%s", id, b, want)
		}
		var e types.Event
		if err := json.Unmarshal(b, &e); err != nil || len(e.Records) != len(items) {
			t.Fatalf("body of batch %d: %d records, error %v", id, len(e.Records), err)
		}
		keep(b, fmt.Sprintf("body of batch %d", id))
	}
	start := func(flush bool) {
		for {
			b, ok := sched.Next(flush)
			if !ok {
				return
			}
			body, l := enc.body(b.Items)
			check(b.ID, b.Items, body)
			f := &batch{items: b.Items, lease: l}
			if l != nil {
				f.held = append(f.held, fmt.Sprintf("body of batch %d", b.ID))
				for _, it := range b.Items {
					f.held = append(f.held, fmt.Sprintf("record %d", it.Offset))
				}
				for range rng.IntN(3) { // invocations, each with the transport's reference
					release := l.hold()
					transports = append(transports, func() { letGo(f, release) })
				}
			}
			inFlight[b.ID] = f
		}
	}
	finishOne := func() {
		if n := len(transports); n > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(n)
			release := transports[i]
			transports = append(transports[:i], transports[i+1:]...)
			release()
			return
		}
		for id, f := range inFlight { // a random one
			if items := f.items; len(items) > 1 && rng.IntN(4) == 0 {
				// A partial success: the rest is copied for its retry, on
				// the flight's goroutine, with no encoder.
				rest, err := sched.Partial(id, items[1+rng.IntN(len(items)-1)].Offset)
				if err != nil {
					t.Fatal(err)
				}
				check(id, rest.Items, body(rest.Items))
				f.items = rest.Items
				return
			}
			if err := sched.Done(id); err != nil {
				t.Fatal(err)
			}
			delete(inFlight, id)
			if f.lease != nil {
				letGo(f, f.lease.release) // the flight's
			}
			return
		}
	}
	for offset := int64(0); offset < 400; {
		switch {
		case sched.Full() || ((len(inFlight) > 0 || len(transports) > 0) && rng.IntN(3) == 0):
			finishOne()
		case rng.IntN(8) == 0:
			start(true) // max_wait
		case rng.IntN(40) == 0 && sched.Len() == 0 && len(inFlight) == 0:
			enc.release() // idle
		default:
			m := &sarama.ConsumerMessage{Topic: "orders", Partition: 3, Offset: offset,
				Key: []byte{byte('a' + rng.IntN(3))}, Value: bytes.Repeat([]byte{'v'}, rng.IntN(3)*rng.IntN(600))}
			r := enc.encode(m)
			keep(r.enc, fmt.Sprintf("record %d", offset))
			if err := sched.Add(schedule.Message[record]{Offset: offset, Key: m.Key, Size: recordSize(r), Payload: r}); err != nil {
				t.Fatal(err)
			}
			offset++
		}
		start(false)
	}
	unchanged()
	if lend && reused == 0 {
		t.Error("no run was given back")
	}
}

// TestFullBatchesAreTheirRuns checks what the encoder's runs are for: when
// batches take the records as they are read, each full batch's body is the
// buffer its records were encoded into, not a copy; and once a lent body
// is given back, the next runs fill it again instead of a fresh buffer.
func TestFullBatchesAreTheirRuns(t *testing.T) {
	msgs := benchMessages(1000)
	for _, max := range []int{1, 10, 100} {
		t.Run(fmt.Sprintf("max_messages=%d", max), func(t *testing.T) {
			enc := newEncoder(false, benchPolicy(max))
			enc.lendFrom = 0
			var items []schedule.Item[record]
			copies := 0
			buffers := map[*byte]bool{}
			for _, m := range msgs {
				items = append(items, schedule.Item[record]{Offset: m.Offset, Payload: enc.encode(m)})
				if len(items) < max {
					continue
				}
				b, l := enc.body(items)
				if &b[len(types.EventStart)] != &items[0].Payload.enc[0] {
					copies++
				}
				buffers[&b[0]] = true
				l.release() // delivered
				items = items[:0]
			}
			// The first run is sized before any batch is seen.
			if copies > 1 {
				t.Errorf("%d of %d bodies were copied", copies, len(msgs)/max)
			}
			if len(buffers) > 3 {
				t.Errorf("%d bodies took %d buffers, want the same few filled again", len(msgs)/max, len(buffers))
			}
		})
	}
}
