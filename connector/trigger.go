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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafka-connector/kafka-connector/filter"
	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/schedule"
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
	// filter, when not nil, is settings.Filter compiled: only the messages
	// it accepts are delivered. filterFailed is set once an evaluation
	// failed, so that only the first failure is logged.
	filter       *filter.Filter
	filterFailed atomic.Bool
	// decoding, when not nil, decodes keys or values before the filter
	// and the event see them (key_format, value_format).
	decoding *triggerDecoding

	brokers           []string
	newSaramaConfig   func() *sarama.Config
	gateway           Invoker
	printResponse     bool
	printResponseBody bool
	checkInterval     time.Duration // how often missing topics are looked for
	catalog           *catalog      // which topics exist, shared by the connector's triggers
	log               *slog.Logger
	metrics           *metrics
	deadLetters       *deadLetterProducer
	answers           *answers // nil without a response topic
	// inflight caps the function's invocations in flight across its
	// partitions: max_inflight, or a limit learnt from back-pressure
	// (see functionGate). inFlight shows them.
	inflight *schedule.Gate
	inFlight prometheus.Gauge
	// tracer traces the batches; nil when tracing is off.
	tracer *triggerTracer

	health health // whether it consumes: see isReady
	// measure asks the lag watcher to look at the partitions now, for a
	// partition just claimed.
	measure chan struct{}
	// noQueue logs, once, that the gateway has no queue for asynchronous
	// invocations: every partition's every retry would say it again.
	noQueue sync.Once
	// throttleLog keeps back-pressure waits from flooding the log.
	throttleLog throttleLog
	// missing is the topics last logged as missing, so that the same
	// warning is not repeated at every check. Only run's goroutine and the
	// watcher it waits for use it, one after the other.
	missing string
	// startMu guards what the trigger knows of its subscriptions, which
	// Setup reads from sarama's goroutine and the partition workers from
	// theirs. late holds the topics that did not exist when the trigger
	// first looked (at firstLook): created while the function was
	// subscribed, all they hold is new to it. subscribed is when the
	// function subscribed to each topic, and how many partitions it had
	// then, as recorded in its commits.
	// seen is when the connector first listed the function with a topic,
	// and its topics' partitions then (zero if unknown): a subscription
	// recorded for the first time dates from then, not from when the
	// trigger could start.
	seen       sighting
	startMu    sync.Mutex
	late       map[string]bool
	firstLook  time.Time
	subscribed map[string]subscription
	// claimed are the partitions being delivered, for the lag watcher.
	claimed claims
	// draining ends when drain is called: run then stops taking new
	// batches, lets the invocations in flight finish, commits them, leaves
	// the group and returns.
	draining context.Context
	drain    context.CancelFunc
}

// run consumes until ctx ends or drain is called, and then returns nil.
// Cancelling ctx abandons the invocations in flight without committing
// them. It returns an error when it cannot go on: the brokers cannot be
// reached, or the consumer group cannot be created or was closed; the
// connector then starts it again.
func (t *trigger) run(ctx context.Context) error {
	client, err := sarama.NewClient(t.brokers, t.newSaramaConfig())
	if err != nil {
		return fmt.Errorf("cannot reach kafka brokers %s: %w", strings.Join(t.brokers, ","), err)
	}
	defer client.Close()
	defer t.deadLetters.close()
	defer t.answers.close()
	// The client reads no metadata before it needs it; the catalog's look
	// is what shows at once that the brokers can be reached.
	if _, err := t.catalog.lookup(); err != nil {
		return err
	}
	c := &coordinated{Client: client, catalog: t.catalog}
	defer c.close()
	client = c
	group, err := sarama.NewConsumerGroupFromClient(t.settings.Group, client)
	if err != nil {
		return fmt.Errorf("cannot create consumer group %s: %w", t.settings.Group, err)
	}
	var errorsDone sync.WaitGroup
	errorsDone.Go(func() {
		for err := range group.Errors() { // closed by group.Close
			t.log.Warn("kafka consumer error", "group", t.settings.Group, "error", err)
			if _, ok := errors.AsType[*sarama.ConsumerError](err); ok {
				t.health.partitionFailed.Store(true) // the session ends with it
			}
		}
	})
	defer errorsDone.Wait()
	defer func() {
		// Leaving the group hands the partitions over at once instead of
		// after the session timeout.
		if err := group.Close(); err != nil {
			t.log.Warn("leaving consumer group", "group", t.settings.Group, "error", err)
		}
		if err := leaveStatic(client, t.settings.Group); err != nil {
			t.log.Warn("leaving consumer group as a static member", "group", t.settings.Group, "error", err)
		}
		t.log.Info("trigger stopped", "group", t.settings.Group)
	}()

	h := &groupHandler{t: t, ctx: ctx, client: client}
	retry := newRetrier(time.Second, 30*time.Second)
	for !t.stopping(ctx) {
		topics, err := t.availableTopics()
		if err == nil && len(topics) == 0 {
			t.health.idle() // nothing to consume until a topic exists
			if !t.wait(ctx, t.checkInterval) {
				return nil
			}
			continue
		}
		began := time.Now()
		if err == nil {
			t.health.partitionFailed.Store(false)
			err = t.consume(ctx, group, topics, h)
		}
		switch {
		case t.stopping(ctx):
			return nil
		case errors.Is(err, sarama.ErrClosedConsumerGroup), errors.Is(err, sarama.ErrClosedClient):
			// Retrying would fail the same way for ever.
			return fmt.Errorf("consuming: %w", err)
		case errors.Is(err, errTopicsChanged):
			retry.reset()
			continue
		case err == nil && t.health.partitionFailed.Load():
			// A partition that cannot be consumed ends its session;
			// rejoining at once would make the whole group rebalance in
			// a loop.
			err = errors.New("a partition could not be consumed, which ended the group session")
		case err == nil && time.Since(began) > time.Second:
			retry.reset() // a rebalance: rejoin at once
			continue
		case err == nil:
			// As above, when the failure was not reported.
			err = errors.New("the group session ended as soon as it began")
		}
		t.health.failed()
		delay := retry.next()
		t.log.Warn("cannot consume; joining the group again", "group", t.settings.Group, "brokers", strings.Join(t.brokers, ","), "error", err, "retry_in", delay)
		if !t.wait(ctx, delay) {
			return nil
		}
	}
	return nil
}

// leaveStatic leaves the group by the client's instance id. Sarama does not
// leave a group it is a static member of, by KIP-345's letter: a replica
// that crashes and comes back under the same id then takes its partitions
// back without a rebalance. But a replica that stops cleanly may never come
// back under that id (a scale-down, a rollout that names pods anew), and
// its partitions would go unserved until the session timeout. So a clean
// stop leaves; only a crash keeps the membership.
func leaveStatic(client sarama.Client, group string) error {
	conf := client.Config()
	id := conf.Consumer.Group.InstanceId
	if id == "" || client.Closed() {
		return nil
	}
	if !conf.Version.IsAtLeast(sarama.V2_4_0_0) {
		return nil // leaving by instance id needs LeaveGroup v3; the session timeout hands the partitions over
	}
	req := &sarama.LeaveGroupRequest{Version: 4, GroupId: group, Members: []sarama.MemberIdentity{{GroupInstanceId: &id}}}
	if conf.Version.IsAtLeast(sarama.V3_2_0_0) {
		req.Version = 5
		reason := "the connector is stopping"
		req.Members[0].Reason = &reason
	}
	coordinator, err := client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("finding the coordinator of group %s: %w", group, err)
	}
	resp, err := coordinator.LeaveGroup(req)
	if err != nil {
		return fmt.Errorf("leaving group %s as %s: %w", group, id, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return fmt.Errorf("leaving group %s as %s: %w", group, id, resp.Err)
	}
	for _, m := range resp.Members {
		// Unknown: the member was gone already (its session timed out).
		if !errors.Is(m.Err, sarama.ErrNoError) && !errors.Is(m.Err, sarama.ErrUnknownMemberId) {
			return fmt.Errorf("leaving group %s as %s: %w", group, id, m.Err)
		}
	}
	return nil
}

// errTopicsChanged ends a session because a topic appeared or went away.
var errTopicsChanged = errors.New("the topics that exist changed")

// consume runs one group session on topics. It ends the session early,
// which makes the group rebalance, when the trigger drains or when the
// topics that exist or their partitions change (errTopicsChanged): sarama
// itself looks for new partitions only every ten minutes.
func (t *trigger) consume(ctx context.Context, group sarama.ConsumerGroup, topics []string, h *groupHandler) error {
	sessCtx, cancel := context.WithCancel(ctx)
	redeliver := t.answers.onRedeliver(cancel)
	stopOnDrain := context.AfterFunc(t.draining, cancel)
	var changed atomic.Bool
	var watcher sync.WaitGroup
	defer func() {
		cancel() // also ends the watcher
		watcher.Wait()
		stopOnDrain()
	}()
	partitions := t.partitionCount(topics)
	h.sess = make(chan sarama.ConsumerGroupSession, 1)
	watcher.Go(func() {
		// The lag watcher needs the session, which Setup hands over.
		select {
		case sess := <-h.sess:
			t.watchLag(sessCtx.Done(), sess, h.client)
		case <-sessCtx.Done():
		}
	})
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
				now, err := t.availableTopics()
				if err == nil && (!slices.Equal(now, topics) || t.partitionCount(topics) != partitions) {
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
	if err == nil && redeliver() {
		return errRedeliver
	}
	return err
}

// partitionCount is how many partitions the topics have, as the catalog
// last said; 0 when it cannot say. Partitions can only be added, so a
// change in the sum is a change.
func (t *trigger) partitionCount(topics []string) int {
	all, err := t.catalog.lookup()
	if err != nil {
		return 0
	}
	n := 0
	for _, topic := range topics {
		n += all[topic]
	}
	return n
}

// availableTopics returns the trigger's topics that exist in the cluster,
// in a fixed order. A topic that does not exist (yet) is logged and left
// out, so that a wrong name in one annotation does not stop the others.
func (t *trigger) availableTopics() ([]string, error) {
	existing, err := t.catalog.lookup()
	if err != nil {
		return nil, err
	}
	var found, missing []string
	for _, topic := range t.topics {
		if _, ok := existing[topic]; ok {
			found = append(found, topic)
		} else {
			missing = append(missing, topic)
		}
	}
	t.startMu.Lock()
	if t.late == nil { // the first look
		t.late = make(map[string]bool)
		t.firstLook = time.Now()
		for _, topic := range missing {
			t.late[topic] = true
		}
	}
	t.startMu.Unlock()
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
	// sess hands the session of a successful Setup to the lag watcher.
	sess chan sarama.ConsumerGroupSession
	// generation is that of the last Setup. Under cooperative rebalancing
	// a session outlives its first generation, and the claims of later
	// ones are logged as they come, since no Setup lists them.
	generation atomic.Int32
}

func (h *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	if err := h.t.setStartOffsets(sess, h.client); err != nil {
		return err
	}
	select {
	case h.sess <- sess:
	default: // a session of this Consume call was handed over already
	}
	h.generation.Store(sess.GenerationID())
	claims := 0
	for _, ps := range sess.Claims() {
		claims += len(ps)
	}
	h.t.health.begin(claims, time.Now())
	h.t.log.Info("joined consumer group", "group", h.t.settings.Group, "generation", sess.GenerationID(), "claims", fmt.Sprint(sess.Claims()))
	return nil
}

func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	if g := sess.GenerationID(); g != h.generation.Load() {
		h.t.log.Info("claimed partition in a rebalance", "group", h.t.settings.Group, "generation", g,
			"topic", claim.Topic(), "partition", claim.Partition(), "offset", claim.InitialOffset())
	}
	// Under cooperative rebalancing the claims Setup listed may start in
	// a later generation already: any claim that starts counts.
	h.t.health.started()
	h.t.newPartitionWorker(h.ctx, sess, claim).run()
	return nil
}

// setStartOffsets gives every claimed partition that the group has never
// committed its start offset, and commits it before any message is
// consumed. Committing the start of a "latest" or time-based group at once
// matters: otherwise a rebalance before the first commit would start the
// partition again at a later "latest", and the messages written in between
// would never be delivered. So the commit is synchronous, and a failure ends
// the session, to be retried, rather than consuming from a start that is
// not recorded. Every start is resolved before any is marked, so that a
// failure half-way leaves nothing marked either.
//
// Where a never-committed partition starts is startFor's rule: by the time
// the function subscribed to the topic, recorded in the commit metadata.
func (t *trigger) setStartOffsets(sess sarama.ConsumerGroupSession, client sarama.Client) error {
	start := t.settings.StartOffset
	if start.Earliest && start.At.IsZero() {
		return nil // sarama starts uncommitted partitions at the oldest offset
	}
	all := make(partitions)
	for topic := range sess.Claims() {
		ps, err := client.Partitions(topic)
		if err != nil {
			return fmt.Errorf("listing the partitions of %s: %w", topic, err)
		}
		all[topic] = ps
	}
	group, err := fetchCommitted(client, t.settings.Group, all)
	if err != nil {
		return err
	}
	// What each claimed, never-committed partition starts at, by rule.
	points := make(map[string]map[int32]startPoint)
	metadata := make(map[string]string)
	for topic, claimed := range sess.Claims() {
		h := t.history(topic, group[topic])
		now := time.Now()
		if h.late {
			now = t.firstLookTime()
		}
		count := int32(len(all[topic]))
		if !t.seen.at.IsZero() && t.seen.at.Before(now) {
			now = t.seen.at
			if c, ok := t.seen.partitions[topic]; ok {
				count = min(count, c) // partitions added since were not there
			}
		}
		subscribed := t.subscribe(topic, subscriptionFor(start, h, now, count))
		metadata[topic] = startMetadata(subscribed)
		// A first subscription starts from when the function was first
		// listed with the topic, which may be before this trigger could
		// start (its annotations had to be fixed first).
		h.subscribed = subscribed
		for _, p := range claimed {
			if group[topic][p].offset >= 0 {
				continue
			}
			if points[topic] == nil {
				points[topic] = make(map[int32]startPoint)
			}
			points[topic][p] = startFor(start, h, p)
		}
	}
	if len(points) == 0 {
		return nil
	}
	resolved, err := t.resolveStarts(client, points)
	if err != nil {
		return err
	}
	for topic, ps := range resolved {
		for p, offset := range ps {
			// With no offset committed, marking is how sarama is told
			// where the claim starts (ResetOffset only moves backwards).
			sess.MarkOffset(topic, p, offset, metadata[topic])
			t.log.Info("partition starts", "topic", topic, "partition", p, "offset", offset,
				"initial_offset", start.String(), "resolved", points[topic][p].String())
		}
	}
	if err := commitSync(client, sess, t.settings.Group, resolved, metadata); err != nil {
		return fmt.Errorf("committing the start offsets: %w", err)
	}
	return nil
}

// resolveStarts turns start points into offsets, with one request per
// leader and kind of point.
func (t *trigger) resolveStarts(client sarama.Client, points map[string]map[int32]startPoint) (offsets, error) {
	level := t.isolation()
	byKind := make(map[int64]partitions) // by the timestamp asked for
	for topic, ps := range points {
		for p, point := range ps {
			ts := sarama.OffsetNewest
			switch {
			case point.oldest:
				ts = sarama.OffsetOldest
			case !point.at.IsZero():
				ts = point.at.UnixMilli()
			}
			if byKind[ts] == nil {
				byKind[ts] = make(partitions)
			}
			byKind[ts][topic] = append(byKind[ts][topic], p)
		}
	}
	// A time that no message has reached yet starts at the end, as it
	// was before the look by time: a message written between the two
	// looks may carry a later time, and starting at an end read after it
	// would pass it by.
	var ends offsets
	for ts := range byKind {
		if ts >= 0 {
			var err error
			if ends, err = listOffsets(client, level, partitionsOf(points), sarama.OffsetNewest); err != nil {
				return nil, fmt.Errorf("finding where partitions start: %w", err)
			}
			break
		}
	}
	out := make(offsets)
	for ts, parts := range byKind {
		found, err := listOffsets(client, level, parts, ts)
		if err != nil {
			return nil, fmt.Errorf("finding where partitions start: %w", err)
		}
		for topic, ps := range found {
			for p, offset := range ps {
				if offset < 0 { // nothing that new: start at the end
					offset = ends[topic][p]
				}
				out.set(topic, p, offset)
			}
		}
	}
	return out, nil
}

func partitionsOf(points map[string]map[int32]startPoint) partitions {
	parts := make(partitions)
	for topic, ps := range points {
		for p := range ps {
			parts[topic] = append(parts[topic], p)
		}
	}
	return parts
}

// history gathers what is known of a topic for startFor: the earliest
// subscription recorded in the group's commits or remembered by the
// trigger, whether some partition was committed without one, and whether
// the topic appeared after the trigger first looked.
func (t *trigger) history(topic string, group map[int32]committed) topicHistory {
	var h topicHistory
	for _, c := range group {
		if c.offset < 0 {
			continue
		}
		if s := parseStartMetadata(c.metadata); s.known() {
			h.subscribed = h.subscribed.earlier(s)
		} else {
			h.committed = true
		}
	}
	t.startMu.Lock()
	defer t.startMu.Unlock()
	h.subscribed = h.subscribed.earlier(t.subscribed[topic])
	h.late = t.late[topic]
	return h
}

// subscribe remembers the function's subscription to topic, so that a
// retried start resolves by the same one, and returns it.
func (t *trigger) subscribe(topic string, s subscription) subscription {
	t.startMu.Lock()
	defer t.startMu.Unlock()
	if !s.known() {
		return s
	}
	if t.subscribed == nil {
		t.subscribed = make(map[string]subscription)
	}
	t.subscribed[topic] = t.subscribed[topic].earlier(s)
	return t.subscribed[topic]
}

// startMetadata is the commit metadata of the topic's offsets.
func (t *trigger) startMetadata(topic string) string {
	t.startMu.Lock()
	defer t.startMu.Unlock()
	return startMetadata(t.subscribed[topic])
}

func (t *trigger) firstLookTime() time.Time {
	t.startMu.Lock()
	defer t.startMu.Unlock()
	return t.firstLook
}

func (t *trigger) isolation() sarama.IsolationLevel {
	if t.settings.Isolation == types.ReadUncommitted {
		return sarama.ReadUncommitted
	}
	return sarama.ReadCommitted
}

func (t *trigger) brokerList() string { return strings.Join(t.brokers, ",") }

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
