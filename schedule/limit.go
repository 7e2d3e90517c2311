package schedule

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"sync"
)

// AIMD is an in-flight limit that back-pressure lowers and successes raise
// again: additive increase, multiplicative decrease, as TCP does with its
// window. It starts at its maximum, since a function that is not pushing
// back should get the concurrency it was given. It is pure logic and not
// safe for concurrent use; Gate is the shared form.
type AIMD struct {
	max, limit int
	credit     int // successes since the limit last changed
	// gen counts the decreases. A call remembers the generation it started
	// in, and its throttling lowers the limit only if no decrease happened
	// since: the calls of one burst all get throttled together, and that is
	// one signal, not one per call.
	gen uint64
}

// NewAIMD returns a limit that moves between 1 and ceiling (at least 1).
func NewAIMD(ceiling int) AIMD {
	ceiling = max(ceiling, 1)
	return AIMD{max: ceiling, limit: ceiling}
}

// Limit is how many calls may be in flight now.
func (a *AIMD) Limit() int { return a.limit }

// Max is the highest the limit goes.
func (a *AIMD) Max() int { return a.max }

// Generation names the current limit: pass it, taken when a call starts, to
// Throttled.
func (a *AIMD) Generation() uint64 { return a.gen }

// Succeeded counts a successful call: every limit successes in a row (about
// one round of calls at the current limit) raise the limit by one.
func (a *AIMD) Succeeded() {
	if a.limit >= a.max {
		return
	}
	a.credit++
	if a.credit >= a.limit {
		a.limit++
		a.credit = 0
	}
}

// Throttled counts a call, started in generation gen, that was asked to slow
// down: it halves the limit, unless the limit was already lowered since the
// call started. It reports whether the limit was lowered.
func (a *AIMD) Throttled(gen uint64) bool {
	if gen != a.gen {
		return false
	}
	a.limit = max(1, a.limit/2)
	a.credit = 0
	a.gen++
	return true
}

// Outcome is what a call came to, as far as its limit is concerned.
type Outcome uint8

const (
	// Failed is a call that neither succeeded nor was throttled: an error
	// of the function says nothing about its capacity, and leaves the
	// limit as it is.
	Failed Outcome = iota
	// Succeeded raises the limit back, additively.
	Succeeded
	// Throttled is back-pressure (429, or 503 with Retry-After): it halves
	// the limit.
	Throttled
)

// Gate bounds the calls in flight to an AIMD limit, for the goroutines
// that share it: the invocations of one function across its partitions
// (max_inflight), or of one partition's batches.
//
// Its rules: a call holds a permit for exactly the time of one attempt,
// from Acquire to Release, and not while it waits to retry, so that a
// batch waiting out a Retry-After leaves room for others. Permits go to
// waiters in the order they asked. A limit lowered below the permits in use
// takes nothing back: no new permit is granted until fewer are in use than
// the limit. A nil *Gate has no limit: Acquire never waits, and Release
// does nothing. All methods are safe for concurrent use.
type Gate struct {
	mu      sync.Mutex
	aimd    AIMD
	inUse   int
	waiters list.List // of chan struct{}, closed when granted
	// learning is a gate with no ceiling of its own (see NewLearningGate).
	learning bool
}

// unbounded is a learning gate's limit until the first back-pressure.
const unbounded = math.MaxInt32

// NewGate returns a gate whose limit moves between 1 and ceiling, or nil
// (no limit) when ceiling is 0 or less: max_inflight's default.
func NewGate(ceiling int) *Gate {
	if ceiling <= 0 {
		return nil
	}
	return &Gate{aimd: NewAIMD(ceiling)}
}

// NewLearningGate returns a gate with no limit until back-pressure first
// comes: the limit of a function whose capacity nobody told the connector
// (max_inflight 0). The first back-pressure halves the calls that were in
// flight, not an unbounded limit, and successes of calls that filled the
// gate then raise the limit again by one a round, so that the gate settles
// near what the function accepts
// (a watchdog's max_inflight, say) instead of each partition pushing one
// call past it for ever.
func NewLearningGate() *Gate {
	return &Gate{aimd: AIMD{max: unbounded, limit: unbounded}, learning: true}
}

// Permit is the right to make one call. Release it exactly once.
type Permit struct {
	g   *Gate
	gen uint64
	// inFlight is how many calls were in flight as this one started, this
	// one included.
	inFlight int
}

// Acquire waits for a permit or for ctx to end, whichever comes first.
func (g *Gate) Acquire(ctx context.Context) (Permit, error) {
	if g == nil {
		return Permit{}, nil
	}
	g.mu.Lock()
	if g.inUse < g.aimd.Limit() && g.waiters.Len() == 0 {
		g.inUse++
		p := Permit{g: g, gen: g.aimd.Generation(), inFlight: g.inUse}
		g.mu.Unlock()
		return p, nil
	}
	if err := ctx.Err(); err != nil {
		g.mu.Unlock()
		return Permit{}, fmt.Errorf("waiting for an invocation slot: %w", err)
	}
	ready := make(chan struct{})
	elem := g.waiters.PushBack(ready)
	g.mu.Unlock()

	select {
	case <-ready:
		g.mu.Lock()
		p := Permit{g: g, gen: g.aimd.Generation(), inFlight: g.inUse}
		g.mu.Unlock()
		return p, nil
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-ready:
			// Granted as ctx ended: hand the permit on.
			g.inUse--
		default:
			g.waiters.Remove(elem)
		}
		g.grant()
		g.mu.Unlock()
		return Permit{}, fmt.Errorf("waiting for an invocation slot: %w", ctx.Err())
	}
}

// TryAcquire takes a permit if one is free now.
func (g *Gate) TryAcquire() (Permit, bool) {
	if g == nil {
		return Permit{}, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inUse < g.aimd.Limit() && g.waiters.Len() == 0 {
		g.inUse++
		return Permit{g: g, gen: g.aimd.Generation(), inFlight: g.inUse}, true
	}
	return Permit{}, false
}

// Release ends the call and feeds its outcome to the limit.
func (p Permit) Release(o Outcome) {
	g := p.g
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inUse--
	switch o {
	case Succeeded:
		// A learning gate climbs only on calls that filled it: calls made
		// well below its limit say nothing of a higher one, and the limit
		// would drift away from what the function showed it accepts.
		if !g.learning || p.inFlight >= g.aimd.limit {
			g.aimd.Succeeded()
		}
	case Throttled:
		if g.learning && p.gen == g.aimd.gen {
			// Halve what was in flight as the call started: an unbounded
			// or long-climbed limit says nothing of the function.
			g.aimd.limit = min(g.aimd.limit, p.inFlight)
		}
		g.aimd.Throttled(p.gen)
	}
	g.grant()
}

// grant hands free permits to the oldest waiters. g.mu is held.
func (g *Gate) grant() {
	for g.inUse < g.aimd.Limit() {
		front := g.waiters.Front()
		if front == nil {
			return
		}
		g.inUse++
		close(g.waiters.Remove(front).(chan struct{}))
	}
}

// Limit is the gate's current limit; 0 for no limit: a nil gate, or a
// learning gate that has met no back-pressure yet.
func (g *Gate) Limit() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.aimd.Limit(); l < unbounded {
		return l
	}
	return 0
}

// InUse is the number of permits held.
func (g *Gate) InUse() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inUse
}

// Waiting is the number of callers waiting in Acquire.
func (g *Gate) Waiting() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiters.Len()
}
