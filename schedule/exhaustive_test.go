package schedule

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

// choice is one step of an exhaustive exploration.
type choice struct {
	kind  uint8 // chooseAdd, chooseNext, chooseFlush, chooseDone, choosePartial
	id    uint64
	from  int64
	limit int
}

const (
	chooseAdd = iota
	chooseNext
	chooseFlush
	chooseDone
	choosePartial
	chooseLimit
)

// scripted is a message of an exhaustive case; skip is one a filter drops.
type scripted struct {
	key  string
	size int
	skip bool
}

// TestExhaustive tries every order of events for small cases: every
// interleaving of reading the messages, starting batches (full or at
// max_wait), and completing the batches in flight with a success, a
// give-up or a partial success at each of their records, with the
// partition's limit lowered and raised between them. Every step is checked
// as in the randomized test (see model), and every path must end with all
// messages finished: no interleaving can wedge a partition.
func TestExhaustive(t *testing.T) {
	// Every way four messages can share keys: the scheduler treats all
	// keys alike (the unkeyed messages' one included), so the names do not
	// matter, only which messages share one.
	keys := []string{"", "a", "b", "c"}
	var scripts [][]scripted
	var share func(s []scripted, used int)
	share = func(s []scripted, used int) {
		if len(s) == 4 {
			scripts = append(scripts, s)
			return
		}
		for k := 0; k <= used && k < len(keys); k++ {
			share(append(s[:len(s):len(s)], scripted{key: keys[k], size: 1}), max(used, k+1))
		}
	}
	share(nil, 0)
	sizes := []scripted{{key: "a", size: 2}, {key: "b", size: 1}, {key: "a", size: 1}, {key: "b", size: 2}}
	skips := []scripted{{key: "a", size: 1}, {skip: true}, {key: "a", size: 1}, {key: "b", size: 1}, {skip: true}}

	type tcase struct {
		p       Policy
		scripts [][]scripted
		limits  bool
	}
	var cases []tcase
	for _, o := range []Ordering{OrderPartition, OrderKey, OrderNone} {
		for c := 1; c <= 3; c++ {
			if o == OrderPartition && c > 1 {
				continue
			}
			for mm := 1; mm <= 3; mm++ {
				p := Policy{Ordering: o, Concurrency: c, MaxMessages: mm, MaxBytes: 100}
				cases = append(cases, tcase{p: p, scripts: scripts})
				// A window smaller than the messages, by count and by bytes.
				pw := p
				pw.Window = 2
				cases = append(cases, tcase{p: pw, scripts: scripts})
				pb := p
				pb.WindowBytes = 2
				cases = append(cases, tcase{p: pb, scripts: [][]scripted{sizes}})
				ps := p
				ps.MaxBytes = 2
				cases = append(cases, tcase{p: ps, scripts: [][]scripted{sizes, skips}})
			}
			cases = append(cases, tcase{p: Policy{Ordering: o, Concurrency: c, MaxMessages: 2, MaxBytes: 100}, scripts: [][]scripted{skips, scripts[7]}, limits: true})
		}
	}
	paths := 0
	for _, c := range cases {
		for _, s := range c.scripts {
			e := explorer{t: t, p: c.p, script: s, limits: c.limits}
			m := newModel(t, c.p)
			m.seed = fmt.Sprintf("script %+v:", s)
			e.explore(m, chooseAdd)
			paths += e.paths
		}
	}
	t.Logf("%d cases, %d paths", len(cases), paths)
}

type explorer struct {
	t      *testing.T
	p      Policy
	script []scripted
	limits bool // also lower and raise the limit between steps
	paths  int
}

// explore tries every next step from m, each on a copy of it.
func (e *explorer) explore(m *model, last uint8) {
	choices := e.choices(m, last)
	if len(choices) == 0 {
		e.paths++
		if len(m.msgs) < len(e.script) {
			m.fail("wedged: %d of %d messages read, nothing may happen", len(m.msgs), len(e.script))
		}
		m.checkDrained()
		return
	}
	for n, c := range choices {
		next := m
		if n < len(choices)-1 {
			next = m.clone()
		}
		switch c.kind {
		case chooseAdd:
			g := e.script[len(next.msgs)]
			next.add(g.key, g.size, 0, g.skip)
		case chooseNext:
			next.next(false)
		case chooseFlush:
			next.next(true)
		case chooseDone:
			next.done(c.id)
		case choosePartial:
			next.partial(c.id, c.from)
		case chooseLimit:
			next.setLimit(c.limit)
		}
		e.explore(next, c.kind)
	}
}

// clone copies the model and its scheduler, which no step then shares.
func (m *model) clone() *model {
	c := *m
	c.s = m.s.clone()
	c.log = slices.Clone(m.log)
	c.msgs = slices.Clone(m.msgs)
	c.open = maps.Clone(m.open)
	c.given = make(map[uint64]Batch[int], len(m.given))
	for id := range m.given {
		c.given[id] = c.s.batches[id].Batch
	}
	c.keyOpen = maps.Clone(m.keyOpen)
	return &c
}

func (s *Scheduler[P]) clone() *Scheduler[P] {
	c := *s
	c.win.buf = slices.Clone(s.win.buf)
	c.batches = make(map[uint64]*flying[P], len(s.batches))
	for id, b := range s.batches {
		// Done fills a batch's items again: each copy gets its own.
		cb := flying[P]{items: slices.Clone(b.items)}
		cb.Batch = Batch[P]{ID: b.ID, Items: cb.items[len(b.items)-len(b.Items):]}
		c.batches[id] = &cb
	}
	c.spare, c.order, c.moved = nil, nil, nil
	c.keys.index = maps.Clone(s.keys.index)
	c.keys.slab = slices.Clone(s.keys.slab)
	c.keys.free = slices.Clone(s.keys.free)
	c.keys.heap = slices.Clone(s.keys.heap)
	return &c
}

// choices lists the steps that make progress from m: each path is finite.
// Limit changes are allowed only right after a completion, so that they
// cannot follow each other for ever.
func (e *explorer) choices(m *model, last uint8) []choice {
	var out []choice
	if len(m.msgs) < len(e.script) && !m.full() {
		out = append(out, choice{kind: chooseAdd})
	}
	if m.expected(false) != nil {
		out = append(out, choice{kind: chooseNext})
	} else if m.expected(true) != nil {
		out = append(out, choice{kind: chooseFlush})
	}
	for _, id := range m.openIDs() {
		out = append(out, choice{kind: chooseDone, id: id})
		idx := m.open[id]
		for _, i := range idx[1:] {
			out = append(out, choice{kind: choosePartial, id: id, from: m.msgs[i].offset})
		}
	}
	if e.limits && (last == chooseDone || last == choosePartial) {
		for l := 1; l <= m.p.Concurrency; l++ {
			if l != m.limit {
				out = append(out, choice{kind: chooseLimit, limit: l})
			}
		}
	}
	return out
}
