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
// successes and completions in random order. Every body must be the event
// of its batch's records, and neither a body nor a record may change once
// handed out: the HTTP transport may still be reading a body, and a retry
// copies the records again.
func TestEncoderBodiesStayTheirRecords(t *testing.T) {
	for _, o := range []schedule.Ordering{schedule.OrderPartition, schedule.OrderKey, schedule.OrderNone} {
		for seed := range uint64(30) {
			t.Run(fmt.Sprintf("%v/seed=%d", o, seed), func(t *testing.T) {
				checkEncoder(t, o, rand.New(rand.NewPCG(seed, 7)))
			})
		}
	}
}

type handedOut struct {
	live, copy []byte
	what       string
}

func checkEncoder(t *testing.T, o schedule.Ordering, rng *rand.Rand) {
	concurrency := 1
	if o != schedule.OrderPartition {
		concurrency = 1 + rng.IntN(4)
	}
	maxMessages, maxBytes := 1+rng.IntN(12), 1024+rng.IntN(2048)
	sched, err := schedule.New[record](schedule.Policy{
		Ordering: o, Concurrency: concurrency, MaxMessages: maxMessages, MaxBytes: bodyBudget(maxBytes),
		Window: concurrency * maxMessages, WindowBytes: concurrency * bodyBudget(maxBytes),
	})
	if err != nil {
		t.Fatal(err)
	}
	enc := newEncoder(rng.IntN(2) == 0, sched.Policy())
	var out []handedOut
	keep := func(b []byte, what string) {
		out = append(out, handedOut{live: b, copy: bytes.Clone(b), what: what})
	}
	inFlight := map[uint64][]schedule.Item[record]{}
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
			check(b.ID, b.Items, enc.body(b.Items))
			inFlight[b.ID] = b.Items
		}
	}
	finishOne := func() {
		for id, items := range inFlight { // a random one
			if len(items) > 1 && rng.IntN(4) == 0 {
				// A partial success: the rest is copied for its retry, on
				// the flight's goroutine, with no encoder.
				rest, err := sched.Partial(id, items[1+rng.IntN(len(items)-1)].Offset)
				if err != nil {
					t.Fatal(err)
				}
				check(id, rest.Items, body(rest.Items))
				inFlight[id] = rest.Items
				return
			}
			if err := sched.Done(id); err != nil {
				t.Fatal(err)
			}
			delete(inFlight, id)
			return
		}
	}
	for offset := int64(0); offset < 400; {
		switch {
		case sched.Full() || (len(inFlight) > 0 && rng.IntN(3) == 0):
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
	for _, h := range out {
		if !bytes.Equal(h.live, h.copy) {
			t.Fatalf("%s changed after it was handed out:\n%s\nwas\n%s", h.what, h.live, h.copy)
		}
	}
}

// TestFullBatchesAreTheirRuns checks what the encoder's runs are for: when
// batches take the records as they are read, each full batch's body is the
// buffer its records were encoded into, not a copy.
func TestFullBatchesAreTheirRuns(t *testing.T) {
	msgs := benchMessages(1000)
	for _, max := range []int{1, 10, 100} {
		t.Run(fmt.Sprintf("max_messages=%d", max), func(t *testing.T) {
			enc := newEncoder(false, benchPolicy(max))
			var items []schedule.Item[record]
			copies := 0
			for _, m := range msgs {
				items = append(items, schedule.Item[record]{Offset: m.Offset, Payload: enc.encode(m)})
				if len(items) < max {
					continue
				}
				b := enc.body(items)
				if &b[len(types.EventStart)] != &items[0].Payload.enc[0] {
					copies++
				}
				items = items[:0]
			}
			// The first run is sized before any batch is seen.
			if copies > 1 {
				t.Errorf("%d of %d bodies were copied", copies, len(msgs)/max)
			}
		})
	}
}
