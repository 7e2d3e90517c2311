package connector

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// partitionState is what the lag watcher reads of a claimed partition while
// its worker delivers it. The worker writes it, the watcher reads it and
// may move position forward past a transaction tail: both through atomics.
type partitionState struct {
	topic     string
	partition int32
	metrics   *partitionMetrics
	// position is the next offset to deliver: what the group has, or is
	// about to have, committed. Negative until known.
	position atomic.Int64
	// oldest is when the oldest message read but not yet delivered was
	// written (Unix nanoseconds), 0 when every message read is delivered.
	oldest atomic.Int64
	// end is the partition's end as last measured: the last stable offset
	// under read_committed, the high watermark otherwise. -1 until measured.
	end atomic.Int64
	// watched is the position at the last measurement, so that the
	// transaction tail is checked only where the position stands still.
	watched int64 // only the watcher uses it
}

func newPartitionState(topic string, partition int32, m *partitionMetrics, position int64) *partitionState {
	s := &partitionState{topic: topic, partition: partition, metrics: m, watched: -1}
	s.position.Store(position)
	s.end.Store(-1)
	return s
}

// advance moves the position forward to offset; never back, since the
// worker and the watcher may both move it.
func (s *partitionState) advance(offset int64) bool {
	for {
		cur := s.position.Load()
		if offset <= cur {
			return false
		}
		if s.position.CompareAndSwap(cur, offset) {
			return true
		}
	}
}

// lag is the partition's end as last measured less its position now; not
// ok until both are known.
func (s *partitionState) lag() (int64, bool) {
	end, pos := s.end.Load(), s.position.Load()
	if end < 0 || pos < 0 {
		return 0, false
	}
	return max(0, end-pos), true
}

// age is how old the oldest undelivered message is at now; 0 when none is.
func (s *partitionState) age(now time.Time) time.Duration {
	o := s.oldest.Load()
	if o <= 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, o)))
}

// claims are a trigger's claimed partitions, as their workers register them.
type claims struct {
	mu    sync.Mutex
	parts map[topicPartition]*partitionState
}

type topicPartition struct {
	topic     string
	partition int32
}

func (c *claims) add(s *partitionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parts == nil {
		c.parts = make(map[topicPartition]*partitionState)
	}
	c.parts[topicPartition{s.topic, s.partition}] = s
}

func (c *claims) remove(s *partitionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parts[topicPartition{s.topic, s.partition}] == s {
		delete(c.parts, topicPartition{s.topic, s.partition})
	}
}

func (c *claims) snapshot() []*partitionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*partitionState, 0, len(c.parts))
	for _, s := range c.parts {
		out = append(out, s)
	}
	return out
}

// lagInterval is how often lag is measured: the check interval, but at
// least every ten seconds, so that a stuck function shows between two
// scrapes.
func (t *trigger) lagInterval() time.Duration { return min(t.checkInterval, 10*time.Second) }

// watchLag measures every claimed partition's lag on a timer until ctx
// ends, whether or not its batches succeed: a function failing for ever
// shows a growing lag and an ageing oldest message. Where a partition's
// position stands still short of its end under read_committed, it checks
// whether only transaction markers and aborted messages are left, and then
// commits the end, as a Java consumer's position would move there.
func (t *trigger) watchLag(done <-chan struct{}, sess sarama.ConsumerGroupSession, client sarama.Client) {
	tick := time.NewTicker(t.lagInterval())
	defer tick.Stop()
	for {
		// Only the timer's looks are a lag interval apart: a partition's
		// tail is looked into only where its position stood still from one
		// to the next, not between a claim's look and the one before it.
		ticked := false
		select {
		case <-done:
			return
		case <-tick.C:
			ticked = true
		case <-t.measure:
		}
		states := t.claimed.snapshot()
		if len(states) == 0 {
			continue
		}
		parts := make(partitions)
		for _, s := range states {
			parts[s.topic] = append(parts[s.topic], s.partition)
		}
		ends, err := listOffsets(client, t.isolation(), parts, sarama.OffsetNewest)
		if err == nil {
			err = t.resolveOldest(client, states)
		}
		if err != nil {
			t.log.Debug("cannot measure lag", "error", err)
			continue
		}
		t.health.answered(time.Now())
		for _, s := range states {
			end := ends[s.topic][s.partition]
			s.end.Store(end)
			pos := s.position.Load()
			if !ticked {
				continue
			}
			// Under exactly-once, offsets are committed in the partition's
			// transactions only, never through the group: the tail waits
			// for the next batch's transaction.
			exactly := t.answers != nil && t.answers.exactly
			if !exactly && t.isolation() == sarama.ReadCommitted && pos >= 0 && pos < end && pos == s.watched && s.oldest.Load() == 0 {
				t.skipTail(sess, client, s, pos, end)
			}
			s.watched = s.position.Load()
		}
	}
}

// resolveOldest gives a position to the partitions that start at their
// oldest message and have committed nothing yet: that oldest offset.
func (t *trigger) resolveOldest(client sarama.Client, states []*partitionState) error {
	parts := make(partitions)
	for _, s := range states {
		if s.position.Load() < 0 {
			parts[s.topic] = append(parts[s.topic], s.partition)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	starts, err := listOffsets(client, t.isolation(), parts, sarama.OffsetOldest)
	if err != nil {
		return err
	}
	for _, s := range states {
		if pos := s.position.Load(); pos < 0 {
			s.position.CompareAndSwap(pos, starts[s.topic][s.partition])
		}
	}
	return nil
}

// skipTail commits end for a partition whose position is pos when nothing
// in [pos, end) is deliverable. A failed or incomplete look commits
// nothing.
func (t *trigger) skipTail(sess sarama.ConsumerGroupSession, client sarama.Client, s *partitionState, pos, end int64) {
	deliverable, err := t.readTail(client, s.topic, s.partition, pos, end)
	if err != nil {
		t.log.Debug("cannot read the end of the partition", "topic", s.topic, "partition", s.partition, "error", err)
		return
	}
	if deliverable || !s.advance(end) {
		return
	}
	sess.MarkOffset(s.topic, s.partition, end, t.startMetadata(s.topic))
	s.metrics.committed.Set(float64(end))
	t.log.Debug("only transaction markers or aborted messages left; committing the end of the partition",
		"topic", s.topic, "partition", s.partition, "from", pos, "offset", end)
}

// errTailIncomplete is a look at a partition's tail that did not reach the end.
var errTailIncomplete = errors.New("the answer did not reach the end")

// readTail fetches [pos, end) under read_committed and reports whether it
// holds a message that would be delivered.
func (t *trigger) readTail(client sarama.Client, topic string, partition int32, pos, end int64) (bool, error) {
	leader, err := client.Leader(topic, partition)
	if err != nil {
		return false, err
	}
	// Markers are small: a stretch larger than a fetch of the partition
	// is not a tail, and reading it would pass the read-ahead budget.
	maxBytes := int32(min(1<<20, t.settings.MaxBufferedBytes))
	req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 0, MinBytes: 1, MaxBytes: maxBytes, Isolation: sarama.ReadCommitted}
	req.AddBlock(topic, partition, pos, maxBytes, -1)
	resp, err := leader.Fetch(req)
	if err != nil {
		return false, err
	}
	block := resp.GetBlock(topic, partition)
	if block == nil {
		return false, fmt.Errorf("no answer for %s/%d", topic, partition)
	}
	if !errors.Is(block.Err, sarama.ErrNoError) {
		return false, block.Err
	}
	var batches []recordBatch
	for _, records := range block.RecordsSet {
		rb := records.RecordBatch
		if rb == nil || rb.PartialTrailingRecord {
			return false, errTailIncomplete // old formats hold no transactions
		}
		b := recordBatch{
			first:         rb.FirstOffset,
			last:          rb.FirstOffset + int64(rb.LastOffsetDelta),
			control:       rb.Control,
			transactional: rb.IsTransactional,
			producerID:    rb.ProducerID,
		}
		if rb.Control && len(rb.Records) > 0 {
			b.abort = controlAbort(rb.Records[0].Key)
		}
		batches = append(batches, b)
	}
	aborted := make([]abortedTxn, 0, len(block.AbortedTransactions))
	for _, a := range block.AbortedTransactions {
		aborted = append(aborted, abortedTxn{producerID: a.ProducerID, firstOffset: a.FirstOffset})
	}
	deliverable, complete := tailDeliverable(batches, aborted, pos, end)
	if deliverable {
		return true, nil
	}
	if !complete {
		return false, errTailIncomplete
	}
	return false, nil
}
