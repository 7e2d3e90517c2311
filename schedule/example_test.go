package schedule_test

import (
	"fmt"

	"github.com/kafka-connector/kafka-connector/schedule"
)

// A partition worker's view, under ordering key: a key's queued messages
// travel together, a key in flight holds back its own messages only, and
// the commit waits for the oldest work.
func Example() {
	s, err := schedule.New[string](schedule.Policy{Ordering: schedule.OrderKey, Concurrency: 2, MaxMessages: 2, MaxBytes: 1 << 20})
	if err != nil {
		panic(err)
	}
	for i, key := range []string{"alice", "bob", "alice", "carol", "bob"} {
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

	first, _ := s.Next(false) // the oldest message's key, with its next one
	show(first)
	second, _ := s.Next(false) // the next key's
	show(second)
	fmt.Println("ready:", s.Ready()) // two batches in flight: carol waits

	_ = s.Done(second.ID) // finishes first, but offset 0 is still in flight
	commit()
	rest, _ := s.Partial(first.ID, 2) // alice's 0 succeeded, her 2 failed
	commit()
	third, _ := s.Next(true) // carol alone is no full batch: max_wait is over
	show(third)
	fmt.Println("in flight:", s.InFlight(), rest.Len())
	_ = s.Done(first.ID) // the retry of alice's 2 succeeded
	commit()
	// Output:
	//  0:alice 2:alice
	//  1:bob 4:bob
	// ready: false
	// commit 0
	// commit 2
	//  3:carol
	// in flight: 2 1
	// commit 3
}
