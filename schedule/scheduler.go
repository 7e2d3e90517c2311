package schedule

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
)

// Ordering is what a partition's deliveries keep in order.
type Ordering uint8

const (
	// OrderPartition delivers a partition one batch at a time, in offset
	// order. It is the zero value: the behaviour of a connector that sets
	// nothing.
	OrderPartition Ordering = iota
	// OrderKey delivers the messages of one key one after another, in offset
	// order; messages of different keys may be in flight at once.
	OrderKey
	// OrderNone keeps no order, only at-least-once delivery.
	OrderNone
)

var orderingNames = [...]string{OrderPartition: "partition", OrderKey: "key", OrderNone: "none"}

func (o Ordering) String() string {
	if int(o) < len(orderingNames) {
		return orderingNames[o]
	}
	return fmt.Sprintf("Ordering(%d)", o)
}

// ParseOrdering reads the name of an ordering: partition, key or none.
func ParseOrdering(s string) (Ordering, error) {
	for o, name := range orderingNames {
		if strings.EqualFold(strings.TrimSpace(s), name) {
			return Ordering(o), nil
		}
	}
	return 0, fmt.Errorf("ordering %q: want partition, key or none", s)
}

// DefaultConcurrency is the suggested concurrency under OrderKey and
// OrderNone: ten batches in flight hide most of an invocation's latency,
// while the window (eleven batches) bounds what a crash sends again.
const DefaultConcurrency = 10

// MaxConcurrency is the largest concurrency a Policy may ask for.
const MaxConcurrency = 1000

// Policy is how one partition is scheduled.
type Policy struct {
	Ordering Ordering
	// Concurrency is how many batches may be in flight at once, retries
	// included: 1 to MaxConcurrency, and 1 under OrderPartition.
	Concurrency int
	// MaxMessages and MaxBytes bound a batch: it takes messages while it
	// holds fewer than MaxMessages and the sum of their Size stays within
	// MaxBytes. The first message is always taken, so a message larger
	// than MaxBytes goes alone rather than never.
	MaxMessages int
	MaxBytes    int
	// Window is how many messages the partition holds beyond its committed
	// offset, finished ones included: what a crash may deliver again. 0
	// means (Concurrency+1)*MaxMessages: every batch in flight full, and
	// the next one filling.
	Window int
	// WindowBytes bounds the Size of the unfinished messages held, which is
	// what the window costs in memory. 0 means (Concurrency+1)*MaxBytes.
	WindowBytes int
}

// withDefaults checks p and fills in the derived bounds.
func (p Policy) withDefaults() (Policy, error) {
	switch {
	case p.Ordering > OrderNone:
		return p, fmt.Errorf("policy: unknown ordering %d", p.Ordering)
	case p.Concurrency < 1 || p.Concurrency > MaxConcurrency:
		return p, fmt.Errorf("policy: concurrency %d: want 1 to %d", p.Concurrency, MaxConcurrency)
	case p.Ordering == OrderPartition && p.Concurrency != 1:
		return p, fmt.Errorf("policy: concurrency %d: ordering partition allows only 1", p.Concurrency)
	case p.MaxMessages < 1:
		return p, fmt.Errorf("policy: max messages %d: want 1 or more", p.MaxMessages)
	case p.MaxBytes < 1:
		return p, fmt.Errorf("policy: max bytes %d: want 1 or more", p.MaxBytes)
	case p.Window < 0:
		return p, fmt.Errorf("policy: window %d: want 0 (derived) or more", p.Window)
	case p.WindowBytes < 0:
		return p, fmt.Errorf("policy: window bytes %d: want 0 (derived) or more", p.WindowBytes)
	}
	if p.Window == 0 {
		p.Window = mulSat(p.Concurrency+1, p.MaxMessages)
	}
	if p.WindowBytes == 0 {
		p.WindowBytes = mulSat(p.Concurrency+1, p.MaxBytes)
	}
	return p, nil
}

func mulSat(a, b int) int {
	if b != 0 && a > math.MaxInt/b {
		return math.MaxInt
	}
	return a * b
}

// Message is one message handed to a scheduler.
type Message[P any] struct {
	Offset int64
	// Key orders the message under OrderKey. Messages without a key (nil
	// or empty) all share one key.
	Key []byte
	// Size counts toward Policy.MaxBytes and Policy.WindowBytes: the bytes
	// the message adds to a request body.
	Size    int
	Payload P
}

// Item is one message of a batch.
type Item[P any] struct {
	Offset  int64
	Payload P
	seq     uint64
}

// Batch is a set of messages to deliver in one invocation, in offset order.
// Its ID stays the same through partial successes, which only drop items
// from its front.
type Batch[P any] struct {
	ID    uint64
	Items []Item[P]
}

// Len is the number of messages in the batch.
func (b Batch[P]) Len() int { return len(b.Items) }

// First is the lowest offset of the batch. The batch must not be empty.
func (b Batch[P]) First() int64 { return b.Items[0].Offset }

// Last is the highest offset of the batch. The batch must not be empty.
func (b Batch[P]) Last() int64 { return b.Items[len(b.Items)-1].Offset }

// Fingerprint hashes the batch's offsets. Under OrderKey a batch need not
// hold every offset between its first and last, and after a restart the
// same first and last may frame other records: an idempotency key must
// then name the records, and this names them the same way in every process.
func (b Batch[P]) Fingerprint() uint64 {
	h := fnv.New64a()
	var buf [8]byte
	for _, it := range b.Items {
		binary.LittleEndian.PutUint64(buf[:], uint64(it.Offset))
		h.Write(buf[:])
	}
	return h.Sum64()
}

// Errors of a scheduler's methods; each is wrapped with its input.
var (
	ErrFull         = errors.New("the window is full")
	ErrOffsetOrder  = errors.New("offsets must increase")
	ErrUnknownBatch = errors.New("no such batch in flight")
)

// The states of a message in the window.
const (
	queued   uint8 = iota // not in a batch yet
	open                  // in a batch in flight
	finished              // delivered, given up on, or skipped
)

const noSeq = math.MaxUint64

type entry[P any] struct {
	offset  int64
	payload P
	size    int
	state   uint8
	key     int32  // the message's key in keyTable.slab, under OrderKey
	next    uint64 // the next queued message of the same key, or noSeq
}

// Scheduler decides, for one partition, which messages go in which batch
// and when, and which offset may be committed. It is pure logic, owned by
// one goroutine: nothing in it is safe for concurrent use, and it keeps no
// time. See the package documentation.
type Scheduler[P any] struct {
	p       Policy
	keyed   bool
	limit   int // batches that may be in flight now, 1 to p.Concurrency
	stopped bool

	win        ring[P]
	lastOffset int64
	seen       bool
	held       int // Size of the unfinished messages in the window

	// Without keys, the queued messages are those from cursor on that are
	// not finished (skipped): batches take them in offset order.
	cursor uint64
	// Eligible messages: queued, and under OrderKey of a key that is not in
	// flight. They are what the next batch is made of.
	eligible, eligibleBytes int

	batches map[uint64]*flying[P]
	nextID  uint64
	// spare is the items of the last batch done, for the next one to
	// fill: a busy partition builds its batches without allocating. Trim
	// drops it.
	spare []Item[P]
	// order and moved are sortItems' room, kept for the next batch.
	order []uint64
	moved []Item[P]

	keys keyTable
}

// New returns a scheduler for one partition, or an error naming what in p
// cannot be used.
func New[P any](p Policy) (*Scheduler[P], error) {
	p, err := p.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Scheduler[P]{
		p:       p,
		keyed:   p.Ordering == OrderKey,
		limit:   p.Concurrency,
		batches: make(map[uint64]*flying[P], p.Concurrency),
	}
	if s.keyed {
		s.keys.init()
	}
	return s, nil
}

// Policy is the scheduler's policy, with its derived bounds.
func (s *Scheduler[P]) Policy() Policy { return s.p }

// Full reports that the window has no room: the worker must not read the
// partition's next message until work finishes. Add and Skip refuse a
// message while Full.
func (s *Scheduler[P]) Full() bool {
	return s.win.n >= s.p.Window || s.held >= s.p.WindowBytes
}

// Add puts a message in the window. Offsets must increase from one call of
// Add or Skip to the next.
func (s *Scheduler[P]) Add(m Message[P]) error {
	if m.Size < 0 {
		return fmt.Errorf("offset %d: size %d: want 0 or more", m.Offset, m.Size)
	}
	if err := s.admit(m.Offset); err != nil {
		return err
	}
	seq := s.win.push(entry[P]{offset: m.Offset, payload: m.Payload, size: m.Size, state: queued, next: noSeq})
	s.held += m.Size
	if !s.keyed {
		s.eligible++
		s.eligibleBytes += m.Size
		return nil
	}
	ki := s.keys.get(m.Key)
	k := &s.keys.slab[ki]
	s.win.at(seq).key = ki
	if k.queued == 0 {
		k.head = seq
	} else {
		s.win.at(k.tail).next = seq
	}
	k.tail = seq
	k.queued++
	k.bytes += m.Size
	if k.open == 0 {
		if k.heapIdx < 0 {
			s.keys.push(ki)
		}
		s.eligible++
		s.eligibleBytes += m.Size
	}
	return nil
}

// Skip puts a message in the window that is already finished, such as one
// a filter rejects: the committed offset moves past it without an
// invocation.
func (s *Scheduler[P]) Skip(offset int64) error {
	if err := s.admit(offset); err != nil {
		return err
	}
	s.win.push(entry[P]{offset: offset, state: finished, next: noSeq})
	s.popFinished()
	return nil
}

func (s *Scheduler[P]) admit(offset int64) error {
	if s.Full() {
		return fmt.Errorf("offset %d: %w (%d messages, %d bytes)", offset, ErrFull, s.win.n, s.held)
	}
	if s.seen && offset <= s.lastOffset {
		return fmt.Errorf("offset %d after %d: %w", offset, s.lastOffset, ErrOffsetOrder)
	}
	s.lastOffset, s.seen = offset, true
	return nil
}

// SetLimit caps the batches in flight below the policy's concurrency, as
// back-pressure asks; n is kept between 1 and the concurrency. Batches
// already in flight go on; no new one starts while the cap is reached.
func (s *Scheduler[P]) SetLimit(n int) {
	s.limit = min(max(n, 1), s.p.Concurrency)
}

// Limit is the current cap on batches in flight.
func (s *Scheduler[P]) Limit() int { return s.limit }

// Stop makes the scheduler start nothing new, for a revoked or draining
// partition. Batches in flight may still be reported done, and the
// committed offset follows them.
func (s *Scheduler[P]) Stop() { s.stopped = true }

// Ready reports that Next(true) would start a batch: there is room for a
// batch in flight and a message that may go. The worker runs its max-wait
// timer while Ready holds and no full batch is ready.
func (s *Scheduler[P]) Ready() bool {
	return !s.stopped && s.eligible > 0 && len(s.batches) < s.limit
}

// Next starts the next batch, if one may start: there is room for a batch
// in flight, and with flush false, the batch would be full (MaxMessages
// messages, or the next message would exceed MaxBytes) or the window is
// full, so that waiting would not make it fuller. The batch holds the
// eligible messages in offset order, as many as fit. The batch is in
// flight until Done, or a Partial that leaves nothing of it.
func (s *Scheduler[P]) Next(flush bool) (Batch[P], bool) {
	if !s.Ready() {
		return Batch[P]{}, false
	}
	if !flush && s.eligible < s.p.MaxMessages && s.eligibleBytes <= s.p.MaxBytes && !s.Full() {
		return Batch[P]{}, false
	}
	items := s.spare[:0]
	if n := min(s.eligible, s.p.MaxMessages); cap(items) < n {
		items = make([]Item[P], 0, n)
	}
	s.spare = nil
	if s.keyed {
		items = s.takeKeyed(items)
	} else {
		items = s.take(items)
	}
	s.nextID++
	f := &flying[P]{Batch: Batch[P]{ID: s.nextID, Items: items}, items: items}
	s.batches[f.ID] = f
	return f.Batch, true
}

// flying is a batch in flight: what is left of it, and all the items Next
// gave it, to be filled again once it is done.
type flying[P any] struct {
	Batch[P]
	items []Item[P]
}

// Trim drops what the scheduler keeps to build the next batch, for a
// partition with nothing to do: a thousand idle partitions keep nothing.
func (s *Scheduler[P]) Trim() { s.spare, s.order, s.moved = nil, nil, nil }

// Fits reports whether a message of size may join a batch of n messages
// and bytes so far: the rule by which Next fills a batch.
func (p Policy) Fits(n, bytes, size int) bool {
	return n < p.MaxMessages && (n == 0 || bytes+size <= p.MaxBytes)
}

// take fills a batch without keys: the queued messages are those after
// the cursor, in offset order, so this costs O(1) a message.
func (s *Scheduler[P]) take(items []Item[P]) []Item[P] {
	s.cursor = max(s.cursor, s.win.head)
	bytes := 0
	for s.cursor < s.win.end() {
		e := s.win.at(s.cursor)
		if e.state == finished { // skipped
			s.cursor++
			continue
		}
		if !s.p.Fits(len(items), bytes, e.size) {
			break
		}
		e.state = open
		items = append(items, Item[P]{Offset: e.offset, Payload: e.payload, seq: s.cursor})
		bytes += e.size
		s.eligible--
		s.eligibleBytes -= e.size
		s.cursor++
	}
	return items
}

// takeKeyed fills a batch under OrderKey with whole keys: the eligible key
// whose oldest queued message is the oldest, with its queued messages in
// offset order, then the next such key, until a message does not fit. A
// key's messages then travel together behind its first, instead of one a
// batch: with few keys a partition, a batch of one message of each of ten
// keys would block ten keys for one invocation each. It costs O(log k) a
// key for k eligible keys, and a sort of the batch when it took more than
// one key, never a scan of the window.
func (s *Scheduler[P]) takeKeyed(items []Item[P]) []Item[P] {
	kt := &s.keys
	bytes := 0
	sorted := true
	for len(kt.heap) > 0 {
		ki := kt.heap[0].key
		k := &kt.slab[ki]
		if !s.p.Fits(len(items), bytes, s.win.at(k.head).size) {
			break
		}
		// The key is open from now on: its queued messages that do not
		// fit wait for this batch to finish with it.
		kt.remove(0)
		s.eligible -= k.queued
		s.eligibleBytes -= k.bytes
		for k.queued > 0 {
			e := s.win.at(k.head)
			if !s.p.Fits(len(items), bytes, e.size) {
				break
			}
			if n := len(items); n > 0 && items[n-1].Offset > e.offset {
				sorted = false
			}
			e.state = open
			items = append(items, Item[P]{Offset: e.offset, Payload: e.payload, seq: k.head})
			bytes += e.size
			k.open++
			k.queued--
			k.bytes -= e.size
			k.head = e.next
		}
		if k.queued > 0 {
			break // the batch is full
		}
	}
	if !sorted {
		s.sortItems(items)
	}
	return items
}

// sortItems puts a batch in offset order, which is the order of the
// items' sequence numbers. It sorts plain integers, each an item's place
// in the window above its index in the batch, and then moves the items:
// sorting the items themselves through a comparison function cost more
// than building the rest of the batch.
func (s *Scheduler[P]) sortItems(items []Item[P]) {
	if s.win.n >= 1<<32 || len(items) >= 1<<32 {
		slices.SortFunc(items, func(a, b Item[P]) int { return cmp.Compare(a.seq, b.seq) })
		return
	}
	order := s.order[:0]
	for i, it := range items {
		order = append(order, (it.seq-s.win.head)<<32|uint64(i))
	}
	slices.Sort(order)
	moved := append(s.moved[:0], items...)
	for i, o := range order {
		items[i] = moved[uint32(o)]
	}
	clear(moved) // keep no message alive
	s.order, s.moved = order[:0], moved[:0]
}

// Done reports that a batch is finished: it succeeded, or it was given up
// on (dead-lettered or not). Its messages count as handled. The batch's
// Items go back to the scheduler, which fills them again for a later
// batch: nothing may read them after Done.
func (s *Scheduler[P]) Done(id uint64) error {
	b, ok := s.batches[id]
	if !ok {
		return fmt.Errorf("done: batch %d: %w", id, ErrUnknownBatch)
	}
	for _, it := range b.Items {
		s.finish(it.seq)
	}
	delete(s.batches, id)
	s.popFinished()
	clear(b.items) // keep no message alive
	s.spare = b.items[:0]
	return nil
}

// Partial reports a partial success: the messages of the batch before
// offset failedFrom are finished; the others stay in the batch, in flight,
// for its retry. It returns what is left of the batch, under the same ID;
// when nothing is left, the batch is done and the result is empty.
func (s *Scheduler[P]) Partial(id uint64, failedFrom int64) (Batch[P], error) {
	b, ok := s.batches[id]
	if !ok {
		return Batch[P]{}, fmt.Errorf("partial success from offset %d: batch %d: %w", failedFrom, id, ErrUnknownBatch)
	}
	i := 0
	for i < len(b.Items) && b.Items[i].Offset < failedFrom {
		s.finish(b.Items[i].seq)
		i++
	}
	b.Items = b.Items[i:]
	if len(b.Items) == 0 {
		delete(s.batches, id)
		b.Items = nil
	}
	s.popFinished()
	return b.Batch, nil
}

func (s *Scheduler[P]) finish(seq uint64) {
	e := s.win.at(seq)
	e.state = finished
	s.held -= e.size
	var zero P
	e.payload = zero // the worker's message may be collected
	if !s.keyed {
		return
	}
	ki := e.key
	k := &s.keys.slab[ki]
	k.open--
	switch {
	case k.open > 0:
	case k.queued > 0:
		s.keys.push(ki)
		s.eligible += k.queued
		s.eligibleBytes += k.bytes
	default:
		s.keys.release(ki)
	}
}

// popFinished drops the finished messages at the front of the window,
// which the committed offset has passed.
func (s *Scheduler[P]) popFinished() {
	for s.win.n > 0 && s.win.at(s.win.head).state == finished {
		s.win.pop()
	}
}

// Committable is the offset to commit: the lowest offset not finished, or
// the one after the last message when all are finished. It reports false
// before the first message.
func (s *Scheduler[P]) Committable() (int64, bool) {
	if s.win.n > 0 {
		return s.win.at(s.win.head).offset, true
	}
	if !s.seen {
		return 0, false
	}
	return s.lastOffset + 1, true
}

// InFlight is the number of batches in flight.
func (s *Scheduler[P]) InFlight() int { return len(s.batches) }

// Len is the number of messages in the window: from the committed offset
// on, finished ones included.
func (s *Scheduler[P]) Len() int { return s.win.n }

// Held is the Size of the unfinished messages in the window.
func (s *Scheduler[P]) Held() int { return s.held }

// Eligible is the number of messages that the next batch could take.
func (s *Scheduler[P]) Eligible() int { return s.eligible }

// Oldest is the payload of the window's first message, the lowest offset
// not finished: the oldest message not yet delivered. It reports false
// when every message of the window is finished.
func (s *Scheduler[P]) Oldest() (P, bool) {
	if s.win.n == 0 {
		var zero P
		return zero, false
	}
	return s.win.at(s.win.head).payload, true
}
