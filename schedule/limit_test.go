package schedule

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAIMD(t *testing.T) {
	// Each op: "s" a success, "t" a throttled call that started in the
	// current generation, "T" one that started before the last decrease.
	tests := []struct {
		name string
		max  int
		ops  string
		want []int // the limit after each op
	}{
		{"starts at its max, which successes do not pass", 4, "ss", []int{4, 4}},
		{"back-pressure halves", 8, "ttt", []int{4, 2, 1}},
		{"never below 1", 1, "tt", []int{1, 1}},
		{"a burst of throttled calls is one signal", 8, "tTTT", []int{4, 4, 4, 4}},
		{"a round of successes adds one", 8, "tt" + "ss" + "sss" + "ssss", []int{4, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5}},
		{"a decrease restarts the round", 8, "tsstss", []int{4, 4, 4, 2, 2, 3}},
		{"a max below 1 is 1", 0, "s", []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAIMD(tt.max)
			var stale uint64
			var got []int
			for _, op := range tt.ops {
				switch op {
				case 's':
					a.Succeeded()
				case 't':
					stale = a.Generation()
					a.Throttled(a.Generation())
				case 'T':
					a.Throttled(stale)
				}
				got = append(got, a.Limit())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("limits %v, want %v", got, tt.want)
			}
			if a.Limit() < 1 || a.Limit() > a.Max() {
				t.Errorf("limit %d outside 1..%d", a.Limit(), a.Max())
			}
		})
	}
}

// waitFor polls cond until a deadline: the only way to see that a
// goroutine is blocked in Acquire.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func TestGateBoundsAndOrder(t *testing.T) {
	g := NewGate(2)
	ctx := context.Background()
	p1, err := g.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := g.Acquire(ctx)
	if _, ok := g.TryAcquire(); ok {
		t.Fatal("a third permit under a limit of 2")
	}
	// Waiters are served in the order they asked.
	order := make(chan int, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := g.Acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			p.Release(Succeeded)
		}()
		waitFor(t, func() bool { return g.Waiting() == i+1 }, "a waiter")
	}
	if _, ok := g.TryAcquire(); ok {
		t.Fatal("TryAcquire went ahead of the waiters")
	}
	p1.Release(Succeeded)
	if first := <-order; first != 0 {
		t.Errorf("waiter %d served first", first)
	}
	p2.Release(Failed)
	wg.Wait()
	if second := <-order; second != 1 {
		t.Errorf("waiter %d served second", second)
	}
	if g.InUse() != 0 || g.Waiting() != 0 {
		t.Errorf("in use %d, waiting %d after all released", g.InUse(), g.Waiting())
	}
}

func TestGateBackPressure(t *testing.T) {
	g := NewGate(4)
	var ps []Permit
	for range 4 {
		p, _ := g.TryAcquire()
		ps = append(ps, p)
	}
	// The four calls of one burst are throttled: one halving, not four.
	for _, p := range ps {
		p.Release(Throttled)
	}
	if g.Limit() != 2 {
		t.Fatalf("limit %d after one throttled burst of 4, want 2", g.Limit())
	}
	a, _ := g.TryAcquire()
	b, _ := g.TryAcquire()
	if _, ok := g.TryAcquire(); ok {
		t.Fatal("a third permit under a lowered limit of 2")
	}
	// Two successes (a round at limit 2) raise it to 3.
	a.Release(Succeeded)
	b.Release(Succeeded)
	if g.Limit() != 3 {
		t.Errorf("limit %d after a round of successes, want 3", g.Limit())
	}
	// A throttled call started after the last decrease halves again.
	c, _ := g.TryAcquire()
	c.Release(Throttled)
	if g.Limit() != 1 {
		t.Errorf("limit %d, want 1", g.Limit())
	}
}

func TestGateLimitLoweredBelowUse(t *testing.T) {
	g := NewGate(4)
	var ps []Permit
	for range 4 {
		p, _ := g.TryAcquire()
		ps = append(ps, p)
	}
	ps[0].Release(Throttled) // limit 2, 3 in use
	ps[1].Release(Failed)    // 2 in use
	if _, ok := g.TryAcquire(); ok {
		t.Fatal("a permit while as many are in use as the limit allows")
	}
	ps[2].Release(Failed)
	p, ok := g.TryAcquire()
	if !ok {
		t.Fatal("no permit with 1 of 2 in use")
	}
	p.Release(Failed)
	ps[3].Release(Failed)
}

func TestGateCancel(t *testing.T) {
	g := NewGate(1)
	held, _ := g.TryAcquire()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := g.Acquire(ctx)
		errc <- err
	}()
	waitFor(t, func() bool { return g.Waiting() == 1 }, "the waiter")
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "invocation slot") {
		t.Errorf("Acquire after cancel = %v", err)
	}
	if g.Waiting() != 0 || g.InUse() != 1 {
		t.Errorf("waiting %d, in use %d after a cancelled wait", g.Waiting(), g.InUse())
	}
	// An ended context does not wait at all, and leaks nothing.
	if _, err := g.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with an ended context = %v", err)
	}
	held.Release(Succeeded)
	if p, ok := g.TryAcquire(); !ok {
		t.Error("the permit was lost to the cancelled waiter")
	} else {
		p.Release(Succeeded)
	}
}

// TestGateCancelRace ends a waiter's context as a permit is handed to it,
// over and over: whichever wins, no permit may be lost or left held.
func TestGateCancelRace(t *testing.T) {
	g := NewGate(1)
	for range 500 {
		held, _ := g.TryAcquire()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if p, err := g.Acquire(ctx); err == nil {
				p.Release(Failed)
			}
		}()
		waitFor(t, func() bool { return g.Waiting() == 1 }, "the waiter")
		cancel()
		held.Release(Failed)
		<-done
		if g.InUse() != 0 || g.Waiting() != 0 {
			t.Fatalf("in use %d, waiting %d after the race", g.InUse(), g.Waiting())
		}
	}
}

// TestGateConcurrent has many goroutines share a gate, with cancellations
// and throttling, and checks that the permits in use never pass the limit
// and that none is lost. Run it with -race.
func TestGateConcurrent(t *testing.T) {
	g := NewGate(5)
	var mu sync.Mutex
	inUse, peak := 0, 0
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ctx, cancel := context.WithCancel(context.Background())
				if (w+i)%7 == 0 {
					cancel() // some give up waiting
				}
				p, err := g.Acquire(ctx)
				cancel()
				if err != nil {
					continue
				}
				mu.Lock()
				inUse++
				peak = max(peak, inUse)
				if inUse > 5 {
					t.Errorf("%d permits in use, max 5", inUse)
				}
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				inUse--
				mu.Unlock()
				o := Succeeded
				if (w*i)%11 == 0 {
					o = Throttled
				}
				p.Release(o)
			}
		}()
	}
	wg.Wait()
	if g.InUse() != 0 || g.Waiting() != 0 {
		t.Errorf("in use %d, waiting %d at the end", g.InUse(), g.Waiting())
	}
	if l := g.Limit(); l < 1 || l > 5 {
		t.Errorf("limit %d outside 1..5", l)
	}
}

func TestNilGate(t *testing.T) {
	g := NewGate(0) // max_inflight 0: no cap
	if g != nil {
		t.Fatal("NewGate(0) is not the unlimited nil gate")
	}
	for range 3 {
		p, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.Release(Throttled)
	}
	if _, ok := g.TryAcquire(); !ok || g.Limit() != 0 || g.InUse() != 0 || g.Waiting() != 0 {
		t.Error("a nil gate limits something")
	}
}

// A learning gate has no limit until back-pressure comes, then halves what
// was in flight and climbs back a round at a time: it settles around what
// a function that accepts 4 calls at once lets through.
func TestLearningGate(t *testing.T) {
	g := NewLearningGate()
	var ps []Permit
	for range 1000 {
		p, ok := g.TryAcquire()
		if !ok {
			t.Fatal("a learning gate limits before any back-pressure")
		}
		ps = append(ps, p)
	}
	if g.Limit() != 0 {
		t.Fatalf("limit %d before any back-pressure, want 0 (none)", g.Limit())
	}
	for _, p := range ps {
		p.Release(Succeeded)
	}
	// Six calls in flight, the function accepts four: the fifth and sixth
	// are throttled, one signal.
	ps = ps[:0]
	for range 6 {
		p, _ := g.TryAcquire()
		ps = append(ps, p)
	}
	for i, p := range ps {
		if i < 4 {
			p.Release(Succeeded)
		} else {
			p.Release(Throttled)
		}
	}
	if g.Limit() != 2 {
		t.Fatalf("limit %d, want 2: half of the 5 in flight as the first throttled call started", g.Limit())
	}
	// Then the function's own rule, round after round: the limit never
	// stays above 4 and keeps climbing back to it.
	const accepts = 4
	throttles, peak := 0, 0
	for range 200 {
		n := g.Limit()
		peak = max(peak, n)
		ps = ps[:0]
		for range n {
			p, ok := g.TryAcquire()
			if !ok {
				t.Fatalf("no permit within the limit %d", n)
			}
			ps = append(ps, p)
		}
		if _, ok := g.TryAcquire(); ok {
			t.Fatalf("a permit beyond the limit %d", n)
		}
		for i, p := range ps {
			if i < accepts {
				p.Release(Succeeded)
			} else {
				throttles++
				p.Release(Throttled)
			}
		}
	}
	if peak != accepts+1 || throttles > 200/accepts {
		t.Errorf("peak limit %d and %d throttled calls in 200 rounds; want a peak of %d and a throttle every few rounds at most", peak, throttles, accepts+1)
	}
}
