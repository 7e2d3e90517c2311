package schedule

import (
	"container/heap"
	"strconv"
	"testing"
	"time"
)

// TestKeyedThroughput runs one partition worker in virtual time over a
// backlog whose keys come round in turn, as a key placed by Kafka's
// partitioner does in a partition that holds a share of a producer's keys:
// the worker reads while the window is not full, starts every batch Next
// allows, flushes at max_wait, and every call takes 20 ms. Under ordering
// key, with a window of three times the batches in flight (the
// connector's), the partition must reach the given multiple of the
// partition-serial bound (one call of max_messages at a time). No clock is
// read: the time is the simulation's.
func TestKeyedThroughput(t *testing.T) {
	const (
		conc, mm = 16, 10
		call     = 20 * time.Millisecond
		maxWait  = 10 * time.Millisecond
	)
	tests := []struct {
		ordering Ordering
		keys     int
		window   int // in batches of mm
		atLeast  float64
	}{
		// Ten keys allow at most ten batches in flight.
		{OrderKey, 10, 3 * conc, 9},
		{OrderKey, 83, 3 * conc, 14},
		{OrderKey, 1000, 3 * conc, 15},
		{OrderNone, 83, conc, 15},
	}
	for _, tt := range tests {
		t.Run(tt.ordering.String()+"/"+strconv.Itoa(tt.keys)+" keys", func(t *testing.T) {
			p := Policy{Ordering: tt.ordering, Concurrency: conc, MaxMessages: mm, MaxBytes: 1 << 20, Window: tt.window * mm}
			rate := simulate(t, p, tt.keys, 20_000, call, maxWait)
			bound := float64(mm) / call.Seconds()
			t.Logf("%.1f× the partition-serial bound", rate/bound)
			if rate < tt.atLeast*bound {
				t.Errorf("%.1f× the partition-serial bound, want at least %.0f×", rate/bound, tt.atLeast)
			}
		})
	}
}

// simulate delivers n messages, message i of key i mod keys, and returns
// the messages a second of virtual time.
func simulate(t *testing.T, p Policy, keys, n int, call, maxWait time.Duration) float64 {
	s, err := New[int](p)
	if err != nil {
		t.Fatal(err)
	}
	var (
		now      time.Duration
		timer    = time.Duration(-1) // when max_wait fires; -1 when it does not run
		calls    completions
		sizes    = map[uint64]int{}
		read     int
		finished int
	)
	start := func(flush bool) {
		for {
			b, ok := s.Next(flush)
			if !ok {
				return
			}
			sizes[b.ID] = b.Len()
			heap.Push(&calls, completion{at: now + call, id: b.ID})
		}
	}
	for finished < n {
		start(false)
		switch ready := s.Ready(); {
		case ready && timer < 0:
			timer = now + maxWait
		case !ready:
			timer = -1
		}
		if read < n && !s.Full() {
			if err := s.Add(Message[int]{Offset: int64(read), Key: []byte(strconv.Itoa(read % keys)), Size: 100}); err != nil {
				t.Fatal(err)
			}
			read++
			continue
		}
		switch {
		case len(calls) > 0 && (timer < 0 || calls[0].at <= timer):
			c := heap.Pop(&calls).(completion)
			now = c.at
			finished += sizes[c.id]
			if err := s.Done(c.id); err != nil {
				t.Fatal(err)
			}
		case timer >= 0:
			now, timer = timer, -1
			start(true)
		default:
			t.Fatalf("wedged after %d of %d messages", finished, n)
		}
	}
	return float64(n) / now.Seconds()
}

type completion struct {
	at time.Duration
	id uint64
}

// completions is a heap of the calls in flight, the first to end first.
type completions []completion

func (c completions) Len() int           { return len(c) }
func (c completions) Less(i, j int) bool { return c[i].at < c[j].at }
func (c completions) Swap(i, j int)      { c[i], c[j] = c[j], c[i] }
func (c *completions) Push(x any)        { *c = append(*c, x.(completion)) }
func (c *completions) Pop() any {
	old := *c
	x := old[len(old)-1]
	*c = old[:len(old)-1]
	return x
}
