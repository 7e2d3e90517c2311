package connector

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/types"
)

// benchMessages returns n messages of one partition as sarama hands them
// over: no key, a 100-byte text value.
func benchMessages(n int) []*sarama.ConsumerMessage {
	msgs := make([]*sarama.ConsumerMessage, n)
	for i := range msgs {
		v := strconv.AppendInt(nil, int64(i), 10)
		for len(v) < 100 {
			v = append(v, 'a'+byte(len(v)%26))
		}
		msgs[i] = &sarama.ConsumerMessage{Topic: "orders", Partition: 3, Offset: int64(i), Value: v, Timestamp: time.UnixMilli(1700000000000)}
	}
	return msgs
}

// benchPolicy is the scheduling of the benchmarks' partition, whose bodies
// may take 6 MiB: batches of max messages.
func benchPolicy(max int) schedule.Policy {
	return schedule.Policy{MaxMessages: max, MaxBytes: bodyBudget(6 << 20)}
}

// BenchmarkBatch is the cost per message of gathering messages into
// batches of max_messages and producing each body.
func BenchmarkBatch(b *testing.B) {
	msgs := benchMessages(1000)
	for _, max := range []int{1, 100, 1000} {
		b.Run("max_messages="+strconv.Itoa(max), func(b *testing.B) {
			enc := newEncoder(false, benchPolicy(max))
			items := make([]schedule.Item[record], 0, max)
			b.SetBytes(100)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m := msgs[i%len(msgs)]
				items = append(items, schedule.Item[record]{Offset: m.Offset, Payload: enc.encode(m)})
				i++
				if len(items) == max {
					_, l := enc.body(items)
					l.release() // delivered: the run may be filled again
					items = items[:0]
				}
			}
		})
	}
}

// BenchmarkPartitionWorker is the cost per message of the delivery loop of
// one partition, from the claim's channel to a successful invocation and
// the mark of its offset, with an invoker that answers at once: everything
// the connector does per message but the HTTP call.
func BenchmarkPartitionWorker(b *testing.B) {
	msgs := benchMessages(1000)
	for _, max := range []int{1, 100, 1000} {
		b.Run("max_messages="+strconv.Itoa(max), func(b *testing.B) {
			b.SetBytes(100)
			b.ReportAllocs()
			inv := runWorker(b, max, b.N, msgs)
			b.ReportMetric(float64(inv)/float64(b.N), "invocations/msg")
		})
	}
}

// runWorker feeds n messages through a partition worker and returns how
// many invocations it made. The worker delivers every full batch; a last
// partial batch is left when the claim closes, as on a revocation.
func runWorker(tb testing.TB, maxMessages, n int, msgs []*sarama.ConsumerMessage) int64 {
	inv := &countingInvoker{}
	t := &trigger{
		function: "fn",
		settings: types.TriggerSettings{
			Enabled: true, MaxMessages: maxMessages, MaxWait: time.Second, MaxBytes: 6 << 20,
			MaxRetries: -1, RetryBackoffInitial: time.Millisecond, RetryBackoffMax: time.Millisecond,
			UpstreamTimeout: time.Minute, ContentType: "application/json",
		},
		gateway: inv,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics: newMetrics(),
	}
	t.inFlight = t.metrics.inFlight.WithLabelValues(t.function)
	ch := make(chan *sarama.ConsumerMessage, 256) // sarama's ChannelBufferSize
	sess := &benchSession{ctx: context.Background()}
	w := t.newPartitionWorker(context.Background(), sess, &benchClaim{msgs: ch})
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run()
	}()
	if b, ok := tb.(*testing.B); ok {
		b.ResetTimer()
	}
	for i := range n {
		// Offsets increase, as on a partition: a copy of each message, as
		// sarama allocates one per message.
		m := *msgs[i%len(msgs)]
		m.Offset = int64(i)
		ch <- &m
	}
	close(ch)
	<-done
	if want := int64(n / maxMessages); inv.calls.Load() != want {
		tb.Fatalf("%d invocations for %d messages in batches of %d, want %d", inv.calls.Load(), n, maxMessages, want)
	}
	if last := n/maxMessages*maxMessages - 1; last >= 0 {
		if want := int64(last) + 1; sess.marked.Load() != want {
			tb.Fatalf("marked offset %d, want %d", sess.marked.Load(), want)
		}
	}
	return inv.calls.Load()
}

type countingInvoker struct{ calls atomic.Int64 }

func (c *countingInvoker) Invoke(_ context.Context, r gateway.Request) (gateway.Response, error) {
	c.calls.Add(1)
	return gateway.Response{Status: 200}, nil
}

type benchSession struct {
	ctx    context.Context
	marked atomic.Int64
}

func (s *benchSession) Claims() map[string][]int32 { return map[string][]int32{"orders": {3}} }
func (s *benchSession) MemberID() string           { return "member" }
func (s *benchSession) GenerationID() int32        { return 1 }
func (s *benchSession) MarkOffset(_ string, _ int32, offset int64, _ string) {
	s.marked.Store(offset)
}
func (s *benchSession) Commit()                                                {}
func (s *benchSession) ResetOffset(string, int32, int64, string)               {}
func (s *benchSession) MarkMessage(m *sarama.ConsumerMessage, metadata string) {}
func (s *benchSession) Context() context.Context                               { return s.ctx }

type benchClaim struct{ msgs chan *sarama.ConsumerMessage }

func (c *benchClaim) Topic() string                            { return "orders" }
func (c *benchClaim) Partition() int32                         { return 3 }
func (c *benchClaim) InitialOffset() int64                     { return 0 }
func (c *benchClaim) HighWaterMarkOffset() int64               { return 1000 }
func (c *benchClaim) Messages() <-chan *sarama.ConsumerMessage { return c.msgs }

// The benchmarks' batches must be events, and their worker must deliver
// every full batch once: checked here so that the normal test run keeps
// them honest without running them.
func TestBenchmarkBatchesAreEvents(t *testing.T) {
	msgs := benchMessages(250)
	enc := newEncoder(false, benchPolicy(100))
	var items []schedule.Item[record]
	for _, m := range msgs[:100] {
		items = append(items, schedule.Item[record]{Offset: m.Offset, Payload: enc.encode(m)})
	}
	var e types.Event
	body, _ := enc.body(items)
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("batch body is not an event: %v", err)
	}
	if len(e.Records) != 100 || e.Records[99].Ckafka.Offset != 99 || len(e.Records[0].Ckafka.MsgBody) != 100 {
		t.Fatalf("decoded %d records, last offset %d", len(e.Records), e.Records[len(e.Records)-1].Ckafka.Offset)
	}
	for _, max := range []int{1, 100} {
		runWorker(t, max, 250, msgs)
	}
}
