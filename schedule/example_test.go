package schedule_test

import (
	"fmt"

	"github.com/kafka-connector/kafka-connector/schedule"
)

// A partition worker's view, under ordering key: a key in flight holds back
// its own next message only, and the commit waits for the oldest work.
func Example() {
	s, err := schedule.New[string](schedule.Policy{Ordering: schedule.OrderKey, Concurrency: 2, MaxMessages: 2, MaxBytes: 1 << 20})
	if err != nil {
		panic(err)
	}
	for i, key := range []string{"alice", "bob", "alice", "carol"} {
		if s.Full() {
			break // stop reading the partition until work finishes
		}
		if err := s.Add(schedule.Message[string]{Offset: int64(i), Key: []byte(key), Size: 1, Payload: key}); err != nil {
			panic(err)
		}
	}
	show := func(b schedule.Batch[string]) {
		for _, it := range b.Items {
			fmt.Printf(" %d:%s", it.Offset, it.Payload)
		}
		fmt.Println()
	}
	commit := func() {
		offset, _ := s.Committable()
		fmt.Println("commit", offset)
	}

	first, _ := s.Next(false) // a full batch
	show(first)
	_, ok := s.Next(false) // alice's second message waits; carol alone is no full batch
	fmt.Println("full batch:", ok, "ready:", s.Ready())
	second, _ := s.Next(true) // max_wait is over
	show(second)

	_ = s.Done(second.ID) // finishes first, but offset 0 is still in flight
	commit()
	rest, _ := s.Partial(first.ID, 1) // alice's 0 succeeded, bob's 1 failed
	commit()
	_, ok = s.Next(true)
	fmt.Println("alice may go:", ok, "in flight:", s.InFlight(), rest.Len())
	_ = s.Done(first.ID) // the retry of bob's 1 succeeded
	commit()
	// Output:
	//  0:alice 1:bob
	// full batch: false ready: true
	//  3:carol
	// commit 0
	// commit 1
	// alice may go: true in flight: 2 1
	// commit 2
}
