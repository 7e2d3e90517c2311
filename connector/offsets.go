package connector

import (
	"cmp"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
)

// The offset requests the connector makes itself, beside what sarama's
// consumer group does: sarama's own look-ups read uncommitted offsets one
// partition at a time and commit in the background without telling anyone
// whether it worked.

// partitions names partitions by topic.
type partitions map[string][]int32

// offsets holds an offset by topic and partition.
type offsets map[string]map[int32]int64

func (o offsets) set(topic string, p int32, offset int64) {
	if o[topic] == nil {
		o[topic] = make(map[int32]int64)
	}
	o[topic][p] = offset
}

// listOffsets asks each partition's leader for the offset at timestamp:
// sarama.OffsetNewest for the end, which under read_committed is the last
// stable offset (nothing past an open transaction is readable yet), or a
// time in Unix milliseconds for the first message at or after it (-1 when
// there is none). One request per leader covers all its partitions.
func listOffsets(client sarama.Client, level sarama.IsolationLevel, parts partitions, timestamp int64) (offsets, error) {
	byLeader := make(map[*sarama.Broker]*sarama.OffsetRequest)
	for topic, ps := range parts {
		for _, p := range ps {
			leader, err := client.Leader(topic, p)
			if err != nil {
				return nil, fmt.Errorf("finding the leader of %s/%d: %w", topic, p, err)
			}
			req := byLeader[leader]
			if req == nil {
				req = sarama.NewOffsetRequest(client.Config().Version)
				req.IsolationLevel = level
				byLeader[leader] = req
			}
			req.AddBlock(topic, p, timestamp, 1)
		}
	}
	// The leaders are asked at once: each may answer only after the fetch
	// it is holding for this client (up to the idle fetch wait), and one
	// after the other the waits would add up.
	out := make(offsets)
	var (
		mu       sync.Mutex
		firstErr error
		asked    sync.WaitGroup
	)
	for leader, req := range byLeader {
		asked.Go(func() {
			resp, err := leader.GetAvailableOffsets(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmp.Or(firstErr, fmt.Errorf("listing offsets on broker %s: %w", leader.Addr(), err))
				return
			}
			for topic, ps := range parts {
				for _, p := range ps {
					block := resp.GetBlock(topic, p)
					if block == nil {
						continue // another leader's partition
					}
					if !errors.Is(block.Err, sarama.ErrNoError) {
						firstErr = cmp.Or(firstErr, fmt.Errorf("listing the offset of %s/%d: %w", topic, p, block.Err))
						continue
					}
					offset := block.Offset
					if req.Version == 0 && len(block.Offsets) > 0 {
						offset = block.Offsets[0]
					}
					out.set(topic, p, offset)
				}
			}
		})
	}
	asked.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for topic, ps := range parts {
		for _, p := range ps {
			if _, ok := out[topic][p]; !ok {
				return nil, fmt.Errorf("listing the offset of %s/%d: no answer", topic, p)
			}
		}
	}
	return out, nil
}

// committed is a group's committed offset of one partition, with the
// metadata it was committed with; offset -1 when it has none.
type committed struct {
	offset   int64
	metadata string
}

// fetchCommitted reads the group's committed offsets of every partition of
// the topics.
func fetchCommitted(client sarama.Client, group string, parts partitions) (map[string]map[int32]committed, error) {
	coordinator, err := client.Coordinator(group)
	if err != nil {
		return nil, fmt.Errorf("finding the coordinator of group %s: %w", group, err)
	}
	resp, err := coordinator.FetchOffset(sarama.NewOffsetFetchRequest(client.Config().Version, group, parts))
	if err != nil {
		return nil, fmt.Errorf("reading the committed offsets of group %s: %w", group, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return nil, fmt.Errorf("reading the committed offsets of group %s: %w", group, resp.Err)
	}
	out := make(map[string]map[int32]committed)
	for topic, ps := range parts {
		out[topic] = make(map[int32]committed)
		for _, p := range ps {
			block := resp.GetBlock(topic, p)
			if block == nil {
				return nil, fmt.Errorf("reading the committed offsets of group %s: no answer for %s/%d", group, topic, p)
			}
			if !errors.Is(block.Err, sarama.ErrNoError) {
				return nil, fmt.Errorf("reading the committed offset of group %s for %s/%d: %w", group, topic, p, block.Err)
			}
			out[topic][p] = committed{offset: block.Offset, metadata: block.Metadata}
		}
	}
	return out, nil
}

// commitSync commits offsets for the group session's generation and waits
// for the coordinator's answer, failing if any partition was refused.
func commitSync(client sarama.Client, sess sarama.ConsumerGroupSession, group string, o offsets, metadata map[string]string) error {
	conf := client.Config()
	req := sarama.NewOffsetCommitRequest(conf, group)
	req.ConsumerGroupGeneration = sess.GenerationID()
	req.ConsumerID = sess.MemberID()
	if id := conf.Consumer.Group.InstanceId; id != "" && req.Version >= 7 {
		req.GroupInstanceId = &id
	}
	for topic, ps := range o {
		for p, offset := range ps {
			req.AddBlock(topic, p, offset, 0, metadata[topic])
		}
	}
	coordinator, err := client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("finding the coordinator of group %s: %w", group, err)
	}
	resp, err := coordinator.CommitOffset(req)
	if err != nil {
		return fmt.Errorf("committing offsets of group %s: %w", group, err)
	}
	for topic, ps := range o {
		for p := range ps {
			kerr, ok := resp.Errors[topic][p]
			if !ok {
				return fmt.Errorf("committing the offset of group %s for %s/%d: no answer", group, topic, p)
			}
			if !errors.Is(kerr, sarama.ErrNoError) {
				return fmt.Errorf("committing the offset of group %s for %s/%d: %w", group, topic, p, kerr)
			}
		}
	}
	return nil
}
