package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/types"
)

// Invoker calls a function through the gateway; *gateway.Client is one.
type Invoker interface {
	Invoke(ctx context.Context, r gateway.Request) (gateway.Response, error)
}

// trigger feeds one function from its topics through its own consumer
// group. Its run goroutine owns the Kafka client and the group; the other
// methods may be called from any goroutine.
type trigger struct {
	function string // as invoked: name or name.namespace
	topics   []string
	settings types.TriggerSettings

	brokers           []string
	newSaramaConfig   func() *sarama.Config
	gateway           Invoker
	printResponse     bool
	printResponseBody bool
	checkInterval     time.Duration // how often missing topics are looked for
	log               *slog.Logger
	metrics           *metrics
	deadLetters       *deadLetterProducer

	ready atomic.Bool // in a group session, or idle for want of topics
	// noQueue logs, once, that the gateway has no queue for asynchronous
	// invocations: every partition's every retry would say it again.
	noQueue sync.Once
	// missing is the topics last logged as missing, so that the same
	// warning is not repeated at every check. Only run's goroutine and the
	// watcher it waits for use it, one after the other.
	missing string
	// late holds the topics that did not exist when the trigger first
	// looked: created while the function was subscribed, all they hold is
	// new to it. Setup reads it from sarama's goroutine.
	lateMu sync.Mutex
	late   map[string]bool
	// draining ends when drain is called: run then stops taking new
	// batches, lets the invocations in flight finish, commits them, leaves
	// the group and returns.
	draining context.Context
	drain    context.CancelFunc
}

// run consumes until ctx ends or drain is called. Cancelling ctx abandons
// the invocations in flight without committing them.
func (t *trigger) run(ctx context.Context) {
	client := t.connect(ctx)
	if client == nil {
		return
	}
	defer client.Close()
	defer t.deadLetters.close()
	group, err := sarama.NewConsumerGroupFromClient(t.settings.Group, client)
	if err != nil {
		t.log.Error("cannot create consumer group", "group", t.settings.Group, "error", err)
		return
	}
	var errorsDone sync.WaitGroup
	errorsDone.Go(func() {
		for err := range group.Errors() { // closed by group.Close
			t.log.Warn("kafka consumer error", "group", t.settings.Group, "error", err)
		}
	})
	defer errorsDone.Wait()
	defer func() {
		// Leaving the group hands the partitions over at once instead of
		// after the session timeout.
		if err := group.Close(); err != nil {
			t.log.Warn("leaving consumer group", "group", t.settings.Group, "error", err)
		}
		t.log.Info("trigger stopped", "group", t.settings.Group)
	}()

	h := &groupHandler{t: t, ctx: ctx, client: client}
	retry := newRetrier(time.Second, 30*time.Second)
	for !t.stopping(ctx) {
		topics, err := t.availableTopics(client)
		if err == nil && len(topics) == 0 {
			t.ready.Store(true) // nothing to consume until a topic exists
			if !t.wait(ctx, t.checkInterval) {
				return
			}
			continue
		}
		began := time.Now()
		if err == nil {
			err = t.consume(ctx, group, topics, h)
		}
		switch {
		case t.stopping(ctx):
			return
		case errors.Is(err, errTopicsChanged):
			retry.reset()
			continue
		case err == nil && time.Since(began) > time.Second:
			retry.reset() // a rebalance: rejoin at once
			continue
		case err == nil:
			// A partition that cannot be consumed ends a session as soon
			// as it begins; rejoining at once would make the whole group
			// rebalance in a loop.
			err = errors.New("the group session ended as soon as it began")
		}
		t.ready.Store(false)
		delay := retry.next()
		t.log.Warn("cannot consume; joining the group again", "group", t.settings.Group, "brokers", strings.Join(t.brokers, ","), "error", err, "retry_in", delay)
		if !t.wait(ctx, delay) {
			return
		}
	}
}

// errTopicsChanged ends a session because a topic appeared or went away.
var errTopicsChanged = errors.New("the topics that exist changed")

// consume runs one group session on topics. It ends the session early,
// which makes the group rebalance, when the trigger drains or when the
// topics that exist or their partitions change (errTopicsChanged): sarama
// itself looks for new partitions only every ten minutes.
func (t *trigger) consume(ctx context.Context, group sarama.ConsumerGroup, topics []string, h *groupHandler) error {
	sessCtx, cancel := context.WithCancel(ctx)
	stopOnDrain := context.AfterFunc(t.draining, cancel)
	var changed atomic.Bool
	var watcher sync.WaitGroup
	defer func() {
		cancel() // also ends the watcher
		watcher.Wait()
		stopOnDrain()
	}()
	partitions := partitionCount(h.client, topics)
	watcher.Go(func() {
		tick := time.NewTicker(t.checkInterval)
		defer tick.Stop()
		for {
			select {
			case <-sessCtx.Done():
				return
			case <-tick.C:
				// A failed look changes nothing: the session itself fails
				// if the brokers are gone.
				now, err := t.availableTopics(h.client)
				if err == nil && (!slices.Equal(now, topics) || partitionCount(h.client, topics) != partitions) {
					changed.Store(true)
					cancel()
					return
				}
			}
		}
	})
	err := group.Consume(sessCtx, topics, h)
	if err == nil && changed.Load() {
		return errTopicsChanged
	}
	return err
}

// partitionCount is how many partitions the topics have, as the client's
// metadata last said. Partitions can only be added, so a change in the sum
// is a change.
func partitionCount(client sarama.Client, topics []string) int {
	n := 0
	for _, topic := range topics {
		partitions, _ := client.Partitions(topic)
		n += len(partitions)
	}
	return n
}

// connect creates the Kafka client, retrying with backoff while no broker
// can be reached. It returns nil when the trigger stops first.
func (t *trigger) connect(ctx context.Context) sarama.Client {
	retry := newRetrier(time.Second, 30*time.Second)
	for {
		client, err := sarama.NewClient(t.brokers, t.newSaramaConfig())
		if err == nil {
			return client
		}
		delay := retry.next()
		t.log.Error("cannot reach kafka brokers; retrying", "brokers", strings.Join(t.brokers, ","), "error", err, "retry_in", delay)
		if !t.wait(ctx, delay) {
			return nil
		}
	}
}

// availableTopics returns the trigger's topics that exist in the cluster,
// in a fixed order. A topic that does not exist (yet) is logged and left
// out, so that a wrong name in one annotation does not stop the others.
func (t *trigger) availableTopics(client sarama.Client) ([]string, error) {
	if err := client.RefreshMetadata(); err != nil {
		return nil, fmt.Errorf("reading the cluster's metadata: %w", err)
	}
	existing, err := client.Topics()
	if err != nil {
		return nil, fmt.Errorf("listing the cluster's topics: %w", err)
	}
	var found, missing []string
	for _, topic := range t.topics {
		if slices.Contains(existing, topic) {
			found = append(found, topic)
		} else {
			missing = append(missing, topic)
		}
	}
	t.lateMu.Lock()
	if t.late == nil { // the first look
		t.late = make(map[string]bool)
		for _, topic := range missing {
			t.late[topic] = true
		}
	}
	t.lateMu.Unlock()
	if m := strings.Join(missing, ","); m != t.missing {
		if m != "" {
			t.log.Warn("topics do not exist; waiting for them", "missing", m)
		} else {
			t.log.Info("every topic exists now", "topics", strings.Join(found, ","))
		}
		t.missing = m
	}
	slices.Sort(found)
	return found, nil
}

func (t *trigger) stopping(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-t.draining.Done():
		return true
	default:
		return false
	}
}

// wait sleeps for d and reports false if the trigger stops first.
func (t *trigger) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	case <-t.draining.Done():
		return false
	}
}

// groupHandler is the trigger's sarama.ConsumerGroupHandler. Sarama calls
// ConsumeClaim concurrently, one goroutine per claimed partition.
type groupHandler struct {
	t      *trigger
	ctx    context.Context
	client sarama.Client
}

func (h *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	if err := h.t.setStartOffsets(sess, h.client); err != nil {
		return err
	}
	h.t.ready.Store(true)
	h.t.log.Info("joined consumer group", "group", h.t.settings.Group, "generation", sess.GenerationID(), "claims", fmt.Sprint(sess.Claims()))
	return nil
}

func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	h.t.newPartitionWorker(h.ctx, sess, claim).run()
	return nil
}

// setStartOffsets gives every claimed partition that the group has never
// committed its start offset, and commits it. Committing the start of a
// "latest" or time-based group at once matters: otherwise a rebalance before
// the first commit would start the partition again at a later "latest", and
// the messages written in between would never be delivered.
//
// "Latest" means from when the function subscribed. So a partition added to
// a topic the group already consumes, and a topic created after the trigger
// first looked for it, start at their oldest message: everything in them is
// newer than the subscription.
func (t *trigger) setStartOffsets(sess sarama.ConsumerGroupSession, client sarama.Client) error {
	start := t.settings.StartOffset
	if start.Earliest && start.At.IsZero() {
		return nil // sarama starts uncommitted partitions at the oldest offset
	}
	committed, err := t.committedOffsets(sess.Claims(), client)
	if err != nil {
		return err
	}
	reset := false
	for topic, partitions := range sess.Claims() {
		newTopic := start.At.IsZero() && (t.isLate(topic) || anyCommitted(committed[topic]))
		for _, p := range partitions {
			if committed[topic][p] >= 0 {
				continue
			}
			var offset int64
			if newTopic {
				offset, err = client.GetOffset(topic, p, sarama.OffsetOldest)
			} else {
				offset, err = startOffset(client, topic, p, start)
			}
			if err != nil {
				return fmt.Errorf("finding the start of %s/%d: %w", topic, p, err)
			}
			// With no offset committed, marking is how sarama is told
			// where the claim starts (ResetOffset only moves backwards).
			sess.MarkOffset(topic, p, offset, "")
			t.log.Info("partition starts", "topic", topic, "partition", p, "offset", offset, "initial_offset", start.String(), "new_since_subscribed", newTopic)
			reset = true
		}
	}
	if reset {
		sess.Commit()
	}
	return nil
}

// committedOffsets reads the group's committed offsets of every partition
// of the claimed topics, -1 where it has none.
func (t *trigger) committedOffsets(claims map[string][]int32, client sarama.Client) (map[string]map[int32]int64, error) {
	all := make(map[string][]int32)
	for topic := range claims {
		partitions, err := client.Partitions(topic)
		if err != nil {
			return nil, fmt.Errorf("listing the partitions of %s: %w", topic, err)
		}
		all[topic] = partitions
	}
	coordinator, err := client.Coordinator(t.settings.Group)
	if err != nil {
		return nil, fmt.Errorf("finding the coordinator of group %s: %w", t.settings.Group, err)
	}
	resp, err := coordinator.FetchOffset(sarama.NewOffsetFetchRequest(client.Config().Version, t.settings.Group, all))
	if err != nil {
		return nil, fmt.Errorf("reading the committed offsets of group %s: %w", t.settings.Group, err)
	}
	out := make(map[string]map[int32]int64)
	for topic, partitions := range all {
		out[topic] = make(map[int32]int64)
		for _, p := range partitions {
			block := resp.GetBlock(topic, p)
			if block == nil {
				return nil, fmt.Errorf("reading the committed offsets of group %s: no answer for %s/%d", t.settings.Group, topic, p)
			}
			if !errors.Is(block.Err, sarama.ErrNoError) {
				return nil, fmt.Errorf("reading the committed offset of group %s for %s/%d: %w", t.settings.Group, topic, p, block.Err)
			}
			out[topic][p] = block.Offset
		}
	}
	return out, nil
}

func anyCommitted(offsets map[int32]int64) bool {
	for _, o := range offsets {
		if o >= 0 {
			return true
		}
	}
	return false
}

func (t *trigger) isLate(topic string) bool {
	t.lateMu.Lock()
	defer t.lateMu.Unlock()
	return t.late[topic]
}

// startOffset resolves a start position to an offset of one partition.
func startOffset(client sarama.Client, topic string, partition int32, start types.StartOffset) (int64, error) {
	if !start.At.IsZero() {
		offset, err := client.GetOffset(topic, partition, start.At.UnixMilli())
		if err != nil {
			return 0, fmt.Errorf("finding the offset of %s/%d at %s: %w", topic, partition, start, err)
		}
		if offset >= 0 {
			return offset, nil
		}
		// Nothing that new: start at the end.
	}
	offset, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
	if err != nil {
		return 0, fmt.Errorf("finding the latest offset of %s/%d: %w", topic, partition, err)
	}
	return offset, nil
}

// retrier spaces out attempts at something that keeps failing.
type retrier struct {
	initial, max time.Duration
	attempt      int
}

func newRetrier(initial, max time.Duration) *retrier { return &retrier{initial: initial, max: max} }

func (r *retrier) next() time.Duration {
	r.attempt++
	return backoff(r.initial, r.max, r.attempt)
}

func (r *retrier) reset() { r.attempt = 0 }
