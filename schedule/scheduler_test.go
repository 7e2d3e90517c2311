package schedule

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestPolicy(t *testing.T) {
	tests := []struct {
		name    string
		p       Policy
		want    Policy // with the derived bounds
		wantErr string
	}{
		{"partition", Policy{Concurrency: 1, MaxMessages: 100, MaxBytes: 1000},
			Policy{Concurrency: 1, MaxMessages: 100, MaxBytes: 1000, Window: 200, WindowBytes: 2000}, ""},
		{"key", Policy{Ordering: OrderKey, Concurrency: 10, MaxMessages: 100, MaxBytes: 1000},
			Policy{Ordering: OrderKey, Concurrency: 10, MaxMessages: 100, MaxBytes: 1000, Window: 1100, WindowBytes: 11000}, ""},
		{"explicit window", Policy{Ordering: OrderNone, Concurrency: 3, MaxMessages: 10, MaxBytes: 10, Window: 5, WindowBytes: 7},
			Policy{Ordering: OrderNone, Concurrency: 3, MaxMessages: 10, MaxBytes: 10, Window: 5, WindowBytes: 7}, ""},
		{"largest", Policy{Ordering: OrderKey, Concurrency: MaxConcurrency, MaxMessages: 10000, MaxBytes: 1 << 62},
			Policy{Ordering: OrderKey, Concurrency: MaxConcurrency, MaxMessages: 10000, MaxBytes: 1 << 62, Window: 10010000, WindowBytes: 1<<63 - 1}, ""},
		{"partition concurrency", Policy{Concurrency: 2, MaxMessages: 1, MaxBytes: 1}, Policy{}, "ordering partition allows only 1"},
		{"no concurrency", Policy{Ordering: OrderKey, MaxMessages: 1, MaxBytes: 1}, Policy{}, "concurrency 0: want 1 to 1000"},
		{"too much concurrency", Policy{Ordering: OrderNone, Concurrency: 1001, MaxMessages: 1, MaxBytes: 1}, Policy{}, "concurrency 1001"},
		{"no messages", Policy{Concurrency: 1, MaxBytes: 1}, Policy{}, "max messages 0"},
		{"no bytes", Policy{Concurrency: 1, MaxMessages: 1}, Policy{}, "max bytes 0"},
		{"negative window", Policy{Concurrency: 1, MaxMessages: 1, MaxBytes: 1, Window: -1}, Policy{}, "window -1"},
		{"negative window bytes", Policy{Concurrency: 1, MaxMessages: 1, MaxBytes: 1, WindowBytes: -1}, Policy{}, "window bytes -1"},
		{"unknown ordering", Policy{Ordering: 7, Concurrency: 1, MaxMessages: 1, MaxBytes: 1}, Policy{}, "unknown ordering 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New[int](tt.p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New(%+v) = %v, want an error with %q", tt.p, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Policy() != tt.want {
				t.Errorf("Policy() = %+v, want %+v", s.Policy(), tt.want)
			}
		})
	}
}

func TestParseOrdering(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Ordering
		ok   bool
	}{
		{"partition", OrderPartition, true}, {"key", OrderKey, true}, {"none", OrderNone, true},
		{" Key ", OrderKey, true}, {"", 0, false}, {"keys", 0, false}, {"random", 0, false},
	} {
		got, err := ParseOrdering(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseOrdering(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok && got.String() != strings.ToLower(strings.TrimSpace(tt.in)) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

// op is one step of a scenario: "add KEY[:SIZE]" (KEY - for none), "skip",
// "next" (Next(false)), "flush" (Next(true)), "done ID", "partial ID FROM",
// "limit N", "stop". Offsets start at 0 and increase by one a message.
type scenario struct {
	name string
	p    Policy
	ops  []string
	// want holds, for every next and flush, the offsets of the batch
	// started ("-" for none), and for every other step the committable
	// offset after it ("" when not yet known).
	want []string
}

func TestScenarios(t *testing.T) {
	key := func(c, mm int) Policy {
		return Policy{Ordering: OrderKey, Concurrency: c, MaxMessages: mm, MaxBytes: 100}
	}
	none := func(c, mm int) Policy {
		return Policy{Ordering: OrderNone, Concurrency: c, MaxMessages: mm, MaxBytes: 100}
	}
	part := func(mm, mb int) Policy { return Policy{Concurrency: 1, MaxMessages: mm, MaxBytes: mb} }
	tests := []scenario{
		{"partition: one batch at a time, contiguous", part(2, 100),
			[]string{"add a", "next", "add b", "next", "next", "add a", "add c", "next", "done 1", "next", "flush", "done 2", "flush"},
			[]string{"0", "-", "0", "0,1", "-", "0", "0", "-", "2", "2,3", "-", "4", "-"}},
		{"partition: max_wait sends what is there", part(3, 100),
			[]string{"add -", "next", "flush", "add -", "flush", "done 1", "flush"},
			[]string{"0", "-", "0", "0", "-", "1", "1"}},
		{"partition: the next message past max_bytes ends the batch", part(10, 5),
			[]string{"add -:2", "add -:3", "next", "add -:1", "next", "done 1", "add -:9", "next", "done 2", "next"},
			[]string{"0", "0", "-", "0", "0,1", "2", "2", "2", "3", "3"}},
		{"an oversized message goes alone, at once", part(10, 5),
			[]string{"add -:9", "next", "add -:1", "next", "done 1", "flush"},
			[]string{"0", "0", "0", "-", "1", "1"}},
		{"key: a key in flight holds back only its own messages", key(3, 1),
			[]string{"add a", "add a", "add b", "next", "next", "next", "done 2", "add b", "next", "done 1", "next"},
			[]string{"0", "0", "0", "0", "2", "-", "0", "0", "3", "1", "1"}},
		{"key: later messages of a key go behind it in the same batch", key(2, 10),
			[]string{"add a", "add b", "add a", "add c", "flush", "add a", "add d", "flush", "done 2", "done 1", "flush"},
			[]string{"0", "0", "0", "0", "0,1,2,3", "0", "0", "5", "0", "4", "4"}},
		{"key: a batch never holds a key another batch holds", key(2, 2),
			[]string{"add a", "next", "add a", "add b", "add a", "next", "flush", "done 1", "flush", "flush"},
			[]string{"0", "-", "0", "0", "0", "0,1", "2", "2", "3", "-"}},
		{"key: every message without a key shares one key", key(3, 1),
			[]string{"add -", "add -", "add a", "next", "next", "next", "done 1", "next"},
			[]string{"0", "0", "0", "0", "2", "-", "1", "1"}},
		{"key: a partial success frees the keys it finished", key(2, 3),
			[]string{"add a", "add b", "add a", "next", "add b", "add a", "flush", "partial 1 2", "flush", "done 1", "flush"},
			[]string{"0", "0", "0", "0,1,2", "0", "0", "-", "2", "3", "3", "4"}},
		{"key: an unreadable failure report finishes nothing", key(2, 3),
			[]string{"add a", "add b", "flush", "partial 1 0", "add b", "flush", "done 1", "flush"},
			[]string{"0", "0", "0,1", "0", "0", "-", "2", "2"}},
		{"key: the batch is full once it cannot take the next eligible message", Policy{Ordering: OrderKey, Concurrency: 2, MaxMessages: 10, MaxBytes: 4},
			[]string{"add a:2", "add b:3", "add c:1", "next", "next", "flush"},
			[]string{"0", "0", "0", "0", "-", "1,2"}},
		{"none: batches in flight at once, committed in offset order", none(3, 2),
			[]string{"add a", "add a", "add a", "add a", "add a", "next", "next", "flush", "done 3", "done 1", "done 2"},
			[]string{"0", "0", "0", "0", "0", "0,1", "2,3", "4", "0", "2", "5"}},
		{"skipped messages count as finished", none(2, 5),
			[]string{"skip", "add a", "skip", "add a", "skip", "flush", "done 1"},
			[]string{"1", "1", "1", "1", "1", "1,3", "5"}},
		{"a lowered limit starts nothing until a batch finishes", none(3, 1),
			[]string{"add -", "add -", "add -", "add -", "next", "next", "limit 1", "next", "done 1", "next", "done 2", "next", "limit 9", "next"},
			[]string{"0", "0", "0", "0", "0", "1", "0", "-", "1", "-", "2", "2", "2", "3"}},
		{"a stopped partition starts nothing, and still commits", none(3, 1),
			[]string{"add -", "add -", "add -", "next", "next", "stop", "next", "flush", "done 1", "done 2"},
			[]string{"0", "0", "0", "0", "1", "0", "-", "-", "1", "2"}},
		{"a full window sends a batch that is not full", Policy{Ordering: OrderNone, Concurrency: 2, MaxMessages: 10, MaxBytes: 100, Window: 3},
			[]string{"add a", "add a", "next", "add a", "next", "done 1"},
			[]string{"0", "0", "-", "0", "0,1,2", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t) })
	}
}

func (sc scenario) run(t *testing.T) {
	t.Helper()
	s, err := New[int](sc.p)
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.want) != len(sc.ops) {
		t.Fatalf("%d ops, %d results", len(sc.ops), len(sc.want))
	}
	var offset int64
	for i, op := range sc.ops {
		f := strings.Fields(op)
		arg := func(n int) int64 {
			v, err := strconv.ParseInt(f[n], 10, 64)
			if err != nil {
				t.Fatalf("op %q: %v", op, err)
			}
			return v
		}
		var got string
		switch f[0] {
		case "add":
			k, size, _ := strings.Cut(f[1], ":")
			m := Message[int]{Offset: offset, Key: []byte(k), Size: 1, Payload: int(offset)}
			if k == "-" {
				m.Key = nil
			}
			if size != "" {
				m.Size, _ = strconv.Atoi(size)
			}
			if err := s.Add(m); err != nil {
				t.Fatalf("op %d %q: %v", i, op, err)
			}
			offset++
		case "skip":
			if err := s.Skip(offset); err != nil {
				t.Fatalf("op %d %q: %v", i, op, err)
			}
			offset++
		case "next", "flush":
			got = "-"
			if b, ok := s.Next(f[0] == "flush"); ok {
				var offs []string
				for _, it := range b.Items {
					offs = append(offs, strconv.FormatInt(it.Offset, 10))
				}
				got = strings.Join(offs, ",")
			}
		case "done":
			if err := s.Done(uint64(arg(1))); err != nil {
				t.Fatalf("op %d %q: %v", i, op, err)
			}
		case "partial":
			if _, err := s.Partial(uint64(arg(1)), arg(2)); err != nil {
				t.Fatalf("op %d %q: %v", i, op, err)
			}
		case "limit":
			s.SetLimit(int(arg(1)))
		case "stop":
			s.Stop()
		default:
			t.Fatalf("unknown op %q", op)
		}
		if f[0] != "next" && f[0] != "flush" {
			if c, ok := s.Committable(); ok {
				got = strconv.FormatInt(c, 10)
			}
		}
		if got != sc.want[i] {
			t.Fatalf("after %q (op %d): %q, want %q", op, i, got, sc.want[i])
		}
	}
}

// TestPartitionBatchesAsBefore checks that ordering partition makes the
// batches the connector made before orderings existed, from a backlog: fill
// up to max_messages, stop before the message that would pass max_bytes,
// always take the first.
func TestPartitionBatchesAsBefore(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		maxMessages, maxBytes := 1+r.IntN(20), 1+r.IntN(200)
		sizes := make([]int, 1+r.IntN(300))
		for i := range sizes {
			sizes[i] = 1 + r.IntN(40)
		}
		// Before: one batch after the other, each from the next message on.
		var want [][]int64
		for i := 0; i < len(sizes); {
			batch, bytes := []int64{int64(i)}, sizes[i]
			for i++; i < len(sizes) && len(batch) < maxMessages && bytes+sizes[i] <= maxBytes; i++ {
				batch = append(batch, int64(i))
				bytes += sizes[i]
			}
			want = append(want, batch)
		}
		s, err := New[int](Policy{Concurrency: 1, MaxMessages: maxMessages, MaxBytes: maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		var got [][]int64
		next := 0
		for {
			for next < len(sizes) && !s.Full() {
				if err := s.Add(Message[int]{Offset: int64(next), Size: sizes[next]}); err != nil {
					t.Fatal(err)
				}
				next++
			}
			b, ok := s.Next(next == len(sizes)) // at the end, max_wait passes
			if !ok {
				if s.InFlight() > 0 || next < len(sizes) || s.Eligible() > 0 {
					t.Fatalf("stuck: %d in flight, %d read, %d eligible", s.InFlight(), next, s.Eligible())
				}
				break
			}
			var offs []int64
			for _, it := range b.Items {
				offs = append(offs, it.Offset)
			}
			got = append(got, offs)
			if err := s.Done(b.ID); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("max_messages %d, max_bytes %d, sizes %v:\nbatches %v\nwant    %v", maxMessages, maxBytes, sizes, got, want)
		}
	}
}

// TestStuckKey checks that a key retrying for ever holds back its own
// messages and the commit, never the other keys, and that the window then
// fills and stays bounded instead of growing.
func TestStuckKey(t *testing.T) {
	p := Policy{Ordering: OrderKey, Concurrency: 4, MaxMessages: 1, MaxBytes: 1000, Window: 50}
	s, err := New[*string](p)
	if err != nil {
		t.Fatal(err)
	}
	window := s.Policy().Window
	stuck := uint64(0)
	var offset int64
	for range 10 * window {
		for !s.Full() {
			key := []byte{byte('a' + offset%7)}
			v := "payload"
			if err := s.Add(Message[*string]{Offset: offset, Key: key, Size: 10, Payload: &v}); err != nil {
				t.Fatal(err)
			}
			offset++
		}
		b, ok := s.Next(true)
		if !ok {
			break // everything but the stuck key is finished
		}
		if b.First() == 0 {
			stuck = b.ID // key a's first batch never finishes
			continue
		}
		if err := s.Done(b.ID); err != nil {
			t.Fatal(err)
		}
	}
	if stuck == 0 {
		t.Fatal("the first batch never started")
	}
	if c, _ := s.Committable(); c != 0 {
		t.Errorf("committable %d, past the stuck batch at 0", c)
	}
	if s.Len() != window || !s.Full() {
		t.Errorf("window holds %d (full %v), want %d, full", s.Len(), s.Full(), window)
	}
	// What is left: key a's messages, all in the window; the rest finished
	// and their payloads dropped.
	for seq := s.win.head; seq < s.win.end(); seq++ {
		e := s.win.at(seq)
		isA := e.offset%7 == 0
		if isA != (e.state != finished) {
			t.Errorf("offset %d: state %d", e.offset, e.state)
		}
		if e.state == finished && e.payload != nil {
			t.Errorf("offset %d finished, its payload still held", e.offset)
		}
	}
	// Once it succeeds, the commit moves to key a's next message.
	if err := s.Done(stuck); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Committable(); c != 7 {
		t.Errorf("committable %d, want 7", c)
	}
}

func TestErrors(t *testing.T) {
	s, err := New[int](Policy{Ordering: OrderNone, Concurrency: 2, MaxMessages: 2, MaxBytes: 10, Window: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Message[int]{Offset: 5}); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{5, 4} {
		if err := s.Add(Message[int]{Offset: off}); !errors.Is(err, ErrOffsetOrder) {
			t.Errorf("Add(offset %d) after 5 = %v, want ErrOffsetOrder", off, err)
		}
		if err := s.Skip(off); !errors.Is(err, ErrOffsetOrder) {
			t.Errorf("Skip(%d) after 5 = %v, want ErrOffsetOrder", off, err)
		}
	}
	if err := s.Add(Message[int]{Offset: 6, Size: -1}); err == nil || !strings.Contains(err.Error(), "size -1") {
		t.Errorf("Add(size -1) = %v, want an error", err)
	}
	if err := s.Add(Message[int]{Offset: 6}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Message[int]{Offset: 7}); !errors.Is(err, ErrFull) {
		t.Errorf("Add to a full window = %v, want ErrFull", err)
	}
	if err := s.Done(1); !errors.Is(err, ErrUnknownBatch) {
		t.Errorf("Done(1) before any batch = %v, want ErrUnknownBatch", err)
	}
	b, _ := s.Next(false)
	if err := s.Done(b.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Done(b.ID); !errors.Is(err, ErrUnknownBatch) {
		t.Errorf("second Done = %v, want ErrUnknownBatch", err)
	}
	if _, err := s.Partial(b.ID, 6); !errors.Is(err, ErrUnknownBatch) {
		t.Errorf("Partial after Done = %v, want ErrUnknownBatch", err)
	}
	if c, ok := s.Committable(); !ok || c != 7 {
		t.Errorf("Committable() = %d %v, want 7", c, ok)
	}
}

func TestPartialKeepsTheBatch(t *testing.T) {
	s, err := New[string](Policy{Ordering: OrderKey, Concurrency: 2, MaxMessages: 5, MaxBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"a", "b", "a", "c"} {
		if err := s.Add(Message[string]{Offset: int64(10 + 2*i), Key: []byte(k), Size: 1, Payload: k}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := s.Next(true)
	rest, err := s.Partial(b.ID, 13) // between the records 12 and 14
	if err != nil {
		t.Fatal(err)
	}
	if rest.ID != b.ID || rest.First() != 14 || rest.Last() != 16 || rest.Len() != 2 || rest.Items[0].Payload != "a" {
		t.Errorf("rest %+v", rest)
	}
	if rest, _ = s.Partial(b.ID, 17); rest.Len() != 0 || s.InFlight() != 0 {
		t.Errorf("nothing left, yet rest %+v and %d in flight", rest, s.InFlight())
	}
	if c, _ := s.Committable(); c != 17 {
		t.Errorf("committable %d, want 17", c)
	}
}

func TestFingerprint(t *testing.T) {
	a := Batch[int]{Items: []Item[int]{{Offset: 1}, {Offset: 3}}}
	b := Batch[int]{ID: 9, Items: []Item[int]{{Offset: 1, Payload: 5}, {Offset: 3}}}
	c := Batch[int]{Items: []Item[int]{{Offset: 1}, {Offset: 2}, {Offset: 3}}}
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("the same offsets give two fingerprints")
	}
	if a.Fingerprint() == c.Fingerprint() {
		t.Error("other offsets give the same fingerprint")
	}
	// The same in every process: an idempotency key must survive a restart.
	if got := a.Fingerprint(); got != 0x96125f0c6eb82a87 {
		t.Errorf("Fingerprint() = %#x, changed", got)
	}
}
