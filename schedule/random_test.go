package schedule

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestRandomized runs the scheduler through random policies, keys, sizes,
// offsets gaps, skips, starts, completions in random orders, partial
// successes, give-ups, limits and stops, checking every rule after every
// step (see model). Each run is seeded by its number, which a failure
// names; the runs are the same on every machine.
func TestRandomized(t *testing.T) {
	runs := 3000
	if testing.Short() {
		runs = 300
	}
	for seed := range runs {
		randomRun(t, uint64(seed))
	}
}

func randomPolicy(r *rand.Rand) Policy {
	p := Policy{Ordering: Ordering(r.IntN(3)), Concurrency: 1, MaxMessages: 1 + r.IntN(6), MaxBytes: 1 + r.IntN(30)}
	if p.Ordering != OrderPartition {
		p.Concurrency = 1 + r.IntN(5)
	}
	if r.IntN(2) == 0 {
		p.Window = 1 + r.IntN(20)
	}
	if r.IntN(3) == 0 {
		p.WindowBytes = 1 + r.IntN(60)
	}
	return p
}

func randomRun(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	p := randomPolicy(r)
	m := newModel(t, p)
	m.seed = fmt.Sprintf("seed %d:", seed)
	keys := []string{"", "a", "b", "c", "d", "e", "f"}[:1+r.IntN(7)]
	total := 10 + r.IntN(150)
	for step := 0; step < 4000 && !(len(m.msgs) == total && len(m.open) == 0 && m.s.Eligible() == 0); step++ {
		switch op := r.IntN(100); {
		case op < 40:
			// A full window refuses a message: checked now and then, as a
			// worker would not even read one.
			if len(m.msgs) < total && (!m.s.Full() || r.IntN(10) == 0) {
				randomAdd(m, r, keys)
			}
		case op < 60:
			m.next(r.IntN(2) == 0)
		case op < 95:
			if ids := m.openIDs(); len(ids) > 0 {
				randomResult(m, r, ids[r.IntN(len(ids))], true)
			}
		case op < 99:
			m.setLimit(r.IntN(p.Concurrency + 2))
		default:
			if r.IntN(10) == 0 {
				m.stop()
			}
		}
	}
	// Drain: what was not read is read, everything in flight completes, in
	// random orders still, until nothing is left.
	m.setLimit(p.Concurrency)
	for {
		for m.next(r.IntN(4) != 0) {
		}
		if len(m.msgs) < total && !m.stopped {
			if randomAdd(m, r, keys) {
				continue
			}
		}
		ids := m.openIDs()
		if len(ids) == 0 {
			if m.stopped || len(m.msgs) == total && !m.next(true) {
				break
			}
			continue
		}
		randomResult(m, r, ids[r.IntN(len(ids))], false)
	}
	if !m.stopped {
		m.checkDrained()
	}
}

func randomAdd(m *model, r *rand.Rand, keys []string) bool {
	size := 1 + r.IntN(8)
	if r.IntN(20) == 0 {
		size = 40 // larger than any MaxBytes: it goes alone
	}
	var gap int64
	if r.IntN(5) == 0 {
		gap = int64(1 + r.IntN(3)) // compaction, transaction markers
	}
	return m.add(keys[r.IntN(len(keys))], size, gap, r.IntN(10) == 0)
}

// randomResult ends an attempt at a batch: success, give-up, a partial
// success from one of its offsets, or (when retry) a failure that leaves the
// batch in flight for its retry.
func randomResult(m *model, r *rand.Rand, id uint64, retry bool) {
	idx := m.open[id]
	switch n := r.IntN(10); {
	case n < 5:
		m.done(id)
	case n < 8:
		k := r.IntN(len(idx) + 1)
		var from int64
		switch {
		case k == len(idx):
			from = m.msgs[idx[k-1]].offset + 1 // nothing failed, as it turns out
		case r.IntN(3) == 0:
			from = m.msgs[idx[k]].offset - 1 // an offset between records, or before
		default:
			from = m.msgs[idx[k]].offset
		}
		m.partial(id, from)
	case !retry:
		m.done(id)
	}
}
