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
	// missing is the topics last logged as missing, so that the same
	// warning is not repeated at every check. Only run's goroutine and the
	// watcher it waits for use it, one after the other.
	missing string
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
		topics := t.availableTopics(client)
		if len(topics) == 0 {
			t.ready.Store(true)
			if !t.wait(ctx, t.checkInterval) {
				return
			}
			continue
		}
		err := t.consume(ctx, group, topics, h)
		if err == nil {
			retry.reset()
			continue
		}
		if t.stopping(ctx) {
			return
		}
		t.ready.Store(false)
		delay := retry.next()
		t.log.Warn("consumer group session failed; rejoining", "group", t.settings.Group, "brokers", strings.Join(t.brokers, ","), "error", err, "retry_in", delay)
		if !t.wait(ctx, delay) {
			return
		}
	}
}

// consume runs one group session on topics. It ends the session early,
// which makes the group rebalance, when the trigger drains or when the set
// of topics that exist changes.
func (t *trigger) consume(ctx context.Context, group sarama.ConsumerGroup, topics []string, h *groupHandler) error {
	sessCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.draining, cancel)()
	var watcher sync.WaitGroup
	defer watcher.Wait()
	defer cancel()
	watcher.Go(func() {
		tick := time.NewTicker(t.checkInterval)
		defer tick.Stop()
		for {
			select {
			case <-sessCtx.Done():
				return
			case <-tick.C:
				if !slices.Equal(t.availableTopics(h.client), topics) {
					cancel()
					return
				}
			}
		}
	})
	return group.Consume(sessCtx, topics, h)
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
func (t *trigger) availableTopics(client sarama.Client) []string {
	if err := client.RefreshMetadata(); err != nil {
		t.log.Warn("cannot read kafka metadata", "brokers", strings.Join(t.brokers, ","), "error", err)
	}
	existing, err := client.Topics()
	if err != nil {
		t.log.Warn("cannot list kafka topics", "error", err)
		return nil
	}
	var found, missing []string
	for _, topic := range t.topics {
		if slices.Contains(existing, topic) {
			found = append(found, topic)
		} else {
			missing = append(missing, topic)
		}
	}
	if m := strings.Join(missing, ","); m != t.missing {
		if m != "" {
			t.log.Warn("topics do not exist; waiting for them", "missing", m)
		} else {
			t.log.Info("every topic exists now", "topics", strings.Join(found, ","))
		}
		t.missing = m
	}
	slices.Sort(found)
	return found
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
func (t *trigger) setStartOffsets(sess sarama.ConsumerGroupSession, client sarama.Client) error {
	start := t.settings.StartOffset
	if start.Earliest && start.At.IsZero() {
		return nil // sarama starts uncommitted partitions at the oldest offset
	}
	claims := sess.Claims()
	coordinator, err := client.Coordinator(t.settings.Group)
	if err != nil {
		return fmt.Errorf("finding the coordinator of group %s: %w", t.settings.Group, err)
	}
	req := sarama.NewOffsetFetchRequest(client.Config().Version, t.settings.Group, claims)
	resp, err := coordinator.FetchOffset(req)
	if err != nil {
		return fmt.Errorf("reading the committed offsets of group %s: %w", t.settings.Group, err)
	}
	reset := false
	for topic, partitions := range claims {
		for _, p := range partitions {
			block := resp.GetBlock(topic, p)
			if block == nil {
				return fmt.Errorf("reading the committed offsets of group %s: no answer for %s/%d", t.settings.Group, topic, p)
			}
			if !errors.Is(block.Err, sarama.ErrNoError) {
				return fmt.Errorf("reading the committed offset of group %s for %s/%d: %w", t.settings.Group, topic, p, block.Err)
			}
			if block.Offset >= 0 {
				continue
			}
			offset, err := startOffset(client, topic, p, start)
			if err != nil {
				return err
			}
			// With no offset committed, marking is how sarama is told
			// where the claim starts (ResetOffset only moves backwards).
			sess.MarkOffset(topic, p, offset, "")
			t.log.Info("partition starts", "topic", topic, "partition", p, "offset", offset, "initial_offset", start.String())
			reset = true
		}
	}
	if reset {
		sess.Commit()
	}
	return nil
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
