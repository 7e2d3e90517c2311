package schedule

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// model drives a Scheduler and checks it, after every step, against a
// plain reference of the rules written for clarity rather than speed: what
// the next batch must be, what may be committed, when the window is full.
// It also checks the guarantees directly, so that a mistake shared by the
// scheduler and the reference would still be caught.
type model struct {
	tb   testing.TB
	s    *Scheduler[int] // the payload is the message's index in msgs
	p    Policy          // with its derived bounds
	seed string          // what reproduces the run, for a failure's message
	log  []step          // the steps so far, for a failure's message

	msgs []mmsg
	open map[uint64][]int // batch ID -> indices of the messages left in it
	// given is each batch in flight as the scheduler handed it out: its
	// Items must not change until it is done, whatever the scheduler
	// reuses.
	given   map[uint64]Batch[int]
	stopped bool
	limit   int
	commit  int64
	haveCmt bool
	maxSize int
	// front is the index of the lowest unfinished message: where the
	// window starts. Everything before it is finished.
	front   int
	keyOpen map[string]int // messages of each key in a batch in flight
}

// step is one call made to the scheduler, kept for a failure's message.
type step struct {
	op     string
	a, b   int64
	key    string
	result []int64
}

func (s step) String() string {
	switch s.op {
	case "add":
		return fmt.Sprintf("add %d key=%q size=%d", s.a, s.key, s.b)
	case "skip", "limit", "done":
		return fmt.Sprintf("%s %d", s.op, s.a)
	case "partial":
		return fmt.Sprintf("partial %d from %d: %v left", s.a, s.b, s.result)
	case "next", "flush":
		return fmt.Sprintf("%s: batch %d %v", s.op, s.a, s.result)
	}
	return s.op
}

type mmsg struct {
	offset  int64
	key     string // "" is no key
	size    int
	state   uint8 // queued, open or finished
	sent    bool  // in a batch at least once
	skipped bool
}

func newModel(tb testing.TB, p Policy) *model {
	s, err := New[int](p)
	if err != nil {
		tb.Fatalf("New(%+v): %v", p, err)
	}
	return &model{tb: tb, s: s, p: s.Policy(), open: map[uint64][]int{}, given: map[uint64]Batch[int]{}, limit: s.Policy().Concurrency, keyOpen: map[string]int{}}
}

func (m *model) fail(format string, args ...any) {
	var steps []string
	if len(m.log) > 80 {
		steps = append(steps, "...")
	}
	for _, s := range m.log[max(0, len(m.log)-80):] {
		steps = append(steps, s.String())
	}
	m.tb.Fatalf("%s policy %+v\nsteps:\n  %s\n%s", m.seed, m.p, strings.Join(steps, "\n  "), fmt.Sprintf(format, args...))
}

func (m *model) keyed() bool { return m.p.Ordering == OrderKey }

func (m *model) nextOffset(gap int64) int64 {
	if len(m.msgs) == 0 {
		return 100 + gap
	}
	return m.msgs[len(m.msgs)-1].offset + 1 + gap
}

// windowLen and held are the window as the rules define it: from the
// lowest unfinished message to the last one read.
func (m *model) windowLen() int {
	for m.front < len(m.msgs) && m.msgs[m.front].state == finished {
		m.front++
	}
	return len(m.msgs) - m.front
}

func (m *model) held() int {
	n := 0
	for _, g := range m.msgs[m.front:] {
		if g.state != finished {
			n += g.size
		}
	}
	return n
}

func (m *model) full() bool {
	return m.windowLen() >= m.p.Window || m.held() >= m.p.WindowBytes
}

// add reads one more message (skip: one that needs no invocation); it
// reports false, having checked the refusal, when the window is full.
func (m *model) add(key string, size int, gap int64, skip bool) bool {
	off := m.nextOffset(gap)
	full := m.full()
	var err error
	if skip {
		m.log = append(m.log, step{op: "skip", a: off})
		err = m.s.Skip(off)
	} else {
		m.log = append(m.log, step{op: "add", a: off, key: key, b: int64(size)})
		var k []byte
		if key != "" {
			k = []byte(key)
		}
		err = m.s.Add(Message[int]{Offset: off, Key: k, Size: size, Payload: len(m.msgs)})
	}
	if full {
		if !errors.Is(err, ErrFull) {
			m.fail("the window is full (%d messages, %d bytes), and reading a message gave %v", m.windowLen(), m.held(), err)
		}
		m.log[len(m.log)-1].op += " (full)"
		m.check()
		return false
	}
	if err != nil {
		m.fail("%v", err)
	}
	g := mmsg{offset: off, key: key, size: size, state: queued, skipped: skip}
	if skip {
		g.state = finished
	}
	m.msgs = append(m.msgs, g)
	m.maxSize = max(m.maxSize, size)
	m.check()
	return true
}

// expected is the batch that Next(flush) must start, as the rules say.
func (m *model) expected(flush bool) []int {
	if m.stopped || len(m.open) >= m.limit {
		return nil
	}
	var eligible []int
	bytes := 0
	m.windowLen()
	for i := m.front; i < len(m.msgs); i++ {
		if g := m.msgs[i]; g.state == queued && (!m.keyed() || m.keyOpen[g.key] == 0) {
			eligible = append(eligible, i)
			bytes += g.size
		}
	}
	if len(eligible) == 0 {
		return nil
	}
	if !flush && len(eligible) < m.p.MaxMessages && bytes <= m.p.MaxBytes && !m.full() {
		return nil
	}
	if m.keyed() {
		// Whole keys, the key of the oldest eligible message first: all
		// its queued messages, then the next key's, until one does not
		// fit; the batch in offset order.
		var byKey [][]int
		at := map[string]int{}
		for _, i := range eligible {
			k := m.msgs[i].key
			if _, ok := at[k]; !ok {
				at[k] = len(byKey)
				byKey = append(byKey, nil)
			}
			byKey[at[k]] = append(byKey[at[k]], i)
		}
		eligible = slices.Concat(byKey...)
	}
	var batch []int
	bytes = 0
	for _, i := range eligible {
		g := m.msgs[i]
		if len(batch) == m.p.MaxMessages || (len(batch) > 0 && bytes+g.size > m.p.MaxBytes) {
			break
		}
		batch = append(batch, i)
		bytes += g.size
	}
	slices.Sort(batch)
	return batch
}

// next calls Next(flush) and reports whether it started a batch.
func (m *model) next(flush bool) bool {
	want := m.expected(flush)
	if ready := m.expected(true) != nil; m.s.Ready() != ready {
		m.fail("Ready() = %v, want %v", m.s.Ready(), ready)
	}
	b, ok := m.s.Next(flush)
	var got []int
	for _, it := range b.Items {
		got = append(got, it.Payload)
	}
	op := "next"
	if flush {
		op = "flush"
	}
	m.log = append(m.log, step{op: op, a: int64(b.ID), result: m.offsets(got)})
	if ok != (want != nil) || !slices.Equal(got, want) {
		m.fail("Next(%v) = %v %v, want %v", flush, ok, m.offsets(got), m.offsets(want))
	}
	if !ok {
		return false
	}
	for _, it := range b.Items {
		if it.Offset != m.msgs[it.Payload].offset {
			m.fail("item %d has offset %d, want %d", it.Payload, it.Offset, m.msgs[it.Payload].offset)
		}
	}
	if _, dup := m.open[b.ID]; dup {
		m.fail("batch ID %d reused while in flight", b.ID)
	}
	m.checkNewBatch(got)
	for _, i := range got {
		m.msgs[i].state = open
		m.msgs[i].sent = true
		m.keyOpen[m.msgs[i].key]++
	}
	m.open[b.ID] = got
	m.given[b.ID] = b
	m.check()
	return true
}

// checkNewBatch checks the guarantees a batch must keep as it starts,
// directly rather than against the reference.
func (m *model) checkNewBatch(batch []int) {
	if len(batch) > m.p.MaxMessages {
		m.fail("a batch of %d messages, max %d", len(batch), m.p.MaxMessages)
	}
	bytes := 0
	for n, i := range batch {
		bytes += m.msgs[i].size
		if n > 0 && i <= batch[n-1] {
			m.fail("batch %v is not in offset order", m.offsets(batch))
		}
		if m.msgs[i].sent {
			m.fail("offset %d sent in a second batch", m.msgs[i].offset)
		}
	}
	if len(batch) > 1 && bytes > m.p.MaxBytes {
		m.fail("a batch of %d bytes, max %d", bytes, m.p.MaxBytes)
	}
	if len(m.open)+1 > m.p.Concurrency || len(m.open)+1 > m.limit {
		m.fail("%d batches in flight, concurrency %d, limit %d", len(m.open)+1, m.p.Concurrency, m.limit)
	}
	in := map[int]bool{}
	for _, i := range batch {
		in[i] = true
	}
	// Every earlier message of the same ordering is finished, or in this
	// batch ahead of it.
	for _, i := range batch {
		if m.p.Ordering == OrderNone {
			break
		}
		for j := m.front; j < i; j++ {
			g := m.msgs[j]
			if g.state == finished || in[j] {
				continue
			}
			if m.p.Ordering == OrderPartition || g.key == m.msgs[i].key {
				m.fail("offset %d starts before offset %d (key %q) finished", m.msgs[i].offset, g.offset, g.key)
			}
		}
	}
	switch m.p.Ordering {
	case OrderKey:
		for _, i := range batch {
			if m.keyOpen[m.msgs[i].key] > 0 {
				m.fail("key %q in two batches in flight", m.msgs[i].key)
			}
		}
	case OrderPartition:
		if len(m.open) > 0 {
			m.fail("a second batch in flight under ordering partition")
		}
		// Contiguous: every message between its first and last is in it,
		// or skipped.
		for j := batch[0]; j <= batch[len(batch)-1]; j++ {
			if !in[j] && !m.msgs[j].skipped {
				m.fail("batch %v leaves out offset %d", m.offsets(batch), m.msgs[j].offset)
			}
		}
	}
}

// checkGiven checks that a batch in flight still holds what it was given.
func (m *model) checkGiven(id uint64) {
	var got []int
	for _, it := range m.given[id].Items {
		got = append(got, it.Payload)
	}
	if want := m.open[id]; !slices.Equal(got, want) {
		m.fail("batch %d in flight changed: holds %v, was given %v", id, m.offsets(got), m.offsets(want))
	}
}

// done finishes a batch in flight: it succeeded or was given up on.
func (m *model) done(id uint64) {
	m.log = append(m.log, step{op: "done", a: int64(id)})
	m.checkGiven(id)
	delete(m.given, id)
	if err := m.s.Done(id); err != nil {
		m.fail("Done(%d): %v", id, err)
	}
	for _, i := range m.open[id] {
		m.msgs[i].state = finished
		m.keyOpen[m.msgs[i].key]--
	}
	delete(m.open, id)
	m.check()
}

// partial reports a partial success of a batch, from offset from on.
func (m *model) partial(id uint64, from int64) {
	m.checkGiven(id)
	rest, err := m.s.Partial(id, from)
	if err != nil {
		m.fail("Partial(%d, %d): %v", id, from, err)
	}
	var left []int
	for _, i := range m.open[id] {
		if m.msgs[i].offset < from {
			m.msgs[i].state = finished
			m.keyOpen[m.msgs[i].key]--
		} else {
			left = append(left, i)
		}
	}
	var got []int
	for _, it := range rest.Items {
		got = append(got, it.Payload)
	}
	m.log = append(m.log, step{op: "partial", a: int64(id), b: from, result: m.offsets(got)})
	if rest.ID != id || !slices.Equal(got, left) {
		m.fail("Partial left batch %d %v, want %d %v", rest.ID, m.offsets(got), id, m.offsets(left))
	}
	m.given[id] = rest
	if len(left) == 0 {
		delete(m.open, id)
	} else {
		m.open[id] = left
	}
	m.check()
}

func (m *model) setLimit(n int) {
	m.log = append(m.log, step{op: "limit", a: int64(n)})
	m.s.SetLimit(n)
	m.limit = min(max(n, 1), m.p.Concurrency)
	m.check()
}

func (m *model) stop() {
	m.log = append(m.log, step{op: "stop"})
	m.s.Stop()
	m.stopped = true
	m.check()
}

// check compares the scheduler's state with the reference after a step.
func (m *model) check() {
	want, wantOK := int64(0), len(m.msgs) > 0
	if m.windowLen() > 0 {
		want = m.msgs[m.front].offset
	} else if wantOK {
		want = m.msgs[len(m.msgs)-1].offset + 1
	}
	got, ok := m.s.Committable()
	if ok != wantOK || got != want {
		m.fail("Committable() = %d %v, want %d %v", got, ok, want, wantOK)
	}
	if ok {
		if m.haveCmt && got < m.commit {
			m.fail("the committable offset went back from %d to %d", m.commit, got)
		}
		m.commit, m.haveCmt = got, true
	}
	if n := m.s.InFlight(); n != len(m.open) || n > m.p.Concurrency {
		m.fail("InFlight() = %d, want %d (concurrency %d)", n, len(m.open), m.p.Concurrency)
	}
	if n := m.s.Len(); n != m.windowLen() || n > m.p.Window {
		m.fail("Len() = %d, want %d (window %d)", n, m.windowLen(), m.p.Window)
	}
	if h := m.s.Held(); h != m.held() || (h > 0 && h >= m.p.WindowBytes+m.maxSize) {
		m.fail("Held() = %d, want %d (window bytes %d)", h, m.held(), m.p.WindowBytes)
	}
	if m.s.Full() != m.full() {
		m.fail("Full() = %v, want %v", m.s.Full(), m.full())
	}
	if m.s.Limit() != m.limit {
		m.fail("Limit() = %d, want %d", m.s.Limit(), m.limit)
	}
}

// checkDrained checks the end of a run in which everything was read and
// nothing was stopped: every message finished, and the commit past them.
func (m *model) checkDrained() {
	for _, g := range m.msgs {
		if g.state != finished {
			m.fail("offset %d never finished", g.offset)
		}
	}
	if m.s.Len() != 0 || m.s.Held() != 0 || m.s.InFlight() != 0 || m.s.Eligible() != 0 {
		m.fail("drained, yet Len %d, Held %d, InFlight %d, Eligible %d", m.s.Len(), m.s.Held(), m.s.InFlight(), m.s.Eligible())
	}
	if m.s.keyed && (len(m.s.keys.index) != 0 || len(m.s.keys.heap) != 0) {
		m.fail("drained, yet %d keys known and %d eligible", len(m.s.keys.index), len(m.s.keys.heap))
	}
}

// openIDs returns the batches in flight, in the order they started.
func (m *model) openIDs() []uint64 {
	ids := make([]uint64, 0, len(m.open))
	for id := range m.open {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (m *model) offsets(idx []int) []int64 {
	out := make([]int64, len(idx))
	for n, i := range idx {
		out[n] = m.msgs[i].offset
	}
	return out
}
