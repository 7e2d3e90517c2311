package schedule

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkPartition is the scheduler's cost per message on the hot path of
// ordering partition: Add every message, ask Next after each, and report
// each batch of 100 done as soon as it starts. ns/op is ns per message.
func BenchmarkPartition(b *testing.B) {
	s, err := New[*int](Policy{Concurrency: 1, MaxMessages: 100, MaxBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	v := new(int)
	b.ReportAllocs()
	var offset int64
	batches := 0
	for b.Loop() {
		if err := s.Add(Message[*int]{Offset: offset, Size: 100, Payload: v}); err != nil {
			b.Fatal(err)
		}
		offset++
		if bt, ok := s.Next(false); ok {
			batches++
			if err := s.Done(bt.ID); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/float64(max(batches, 1)), "msgs/batch")
}

// BenchmarkConcurrent is the cost per message with ten batches of up to 100
// in flight, completed oldest first: under ordering none, and under
// ordering key with messages spread over 1,000 keys at random. ns/op is ns
// per message.
func BenchmarkConcurrent(b *testing.B) {
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = []byte("customer-" + strconv.Itoa(i))
	}
	r := rand.New(rand.NewPCG(1, 1))
	pick := make([]int, 1<<16)
	for i := range pick {
		pick[i] = r.IntN(len(keys))
	}
	for _, o := range []Ordering{OrderNone, OrderKey} {
		b.Run("ordering="+o.String(), func(b *testing.B) {
			s, err := New[*int](Policy{Ordering: o, Concurrency: 10, MaxMessages: 100, MaxBytes: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			v := new(int)
			var inFlight []uint64
			oldestDone := func() {
				if err := s.Done(inFlight[0]); err != nil {
					b.Fatal(err)
				}
				inFlight = inFlight[1:]
			}
			b.ReportAllocs()
			var offset int64
			batches := 0
			for b.Loop() {
				for s.Full() {
					oldestDone()
				}
				m := Message[*int]{Offset: offset, Key: keys[pick[offset&(1<<16-1)]], Size: 100, Payload: v}
				if err := s.Add(m); err != nil {
					b.Fatal(err)
				}
				offset++
				for {
					bt, ok := s.Next(false)
					if !ok {
						break
					}
					batches++
					inFlight = append(inFlight, bt.ID)
				}
				if len(inFlight) == 10 {
					oldestDone()
				}
			}
			b.ReportMetric(float64(b.N)/float64(max(batches, 1)), "msgs/batch")
		})
	}
}
