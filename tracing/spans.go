package tracing

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Attributes of the connector's own, where the semantic conventions have
// none.
const (
	AttrFirstOffset = attribute.Key("kafka_connector.batch.first_offset")
	AttrLastOffset  = attribute.Key("kafka_connector.batch.last_offset")
	// AttrFiltered counts the messages of the partition that the
	// function's kafka-filter rejected since the batch before this one
	// started: they were committed without being delivered.
	AttrFiltered = attribute.Key("kafka_connector.batch.filtered_messages")
	// AttrOutcome is how the batch ended: an Outcome.
	AttrOutcome = attribute.Key("kafka_connector.batch.outcome")
	// AttrAttempt numbers an invocation of a batch, from 1.
	AttrAttempt = attribute.Key("kafka_connector.attempt")
	// AttrBackPressure marks an attempt the function answered with
	// back-pressure (429, or 503 with Retry-After).
	AttrBackPressure = attribute.Key("kafka_connector.backpressure")
	// AttrFailedFrom is, for a partial success, the offset of the first
	// record the function reported failed.
	AttrFailedFrom = attribute.Key("kafka_connector.failed_from_offset")
	// AttrFilterRejected marks the span of a message the filter rejected.
	AttrFilterRejected = attribute.Key("kafka_connector.filter.rejected")
	AttrDelay          = attribute.Key("kafka_connector.delay_ms")
	AttrPartitionLimit = attribute.Key("kafka_connector.partition_limit")
	AttrDeadLetterTo   = attribute.Key("kafka_connector.dead_letter.topic")
	AttrReason         = attribute.Key("kafka_connector.reason")
)

// Events of a batch span.
const (
	EventRetry            = "retry"
	EventBackPressure     = "back-pressure"
	EventPartialSuccess   = "partial success"
	EventGiveUp           = "give up"
	EventDeadLettered     = "dead-lettered"
	EventDeadLetterFailed = "dead-letter write failed"
)

// Outcome is how a batch ended, as its span records it.
type Outcome string

const (
	// Delivered: the function accepted every record.
	Delivered Outcome = "delivered"
	// GivenUp: the retries were spent and the batch was committed
	// without delivery, as no dead-letter topic is set.
	GivenUp Outcome = "given_up"
	// DeadLettered: the retries were spent and the records were written
	// to the dead-letter topic.
	DeadLettered Outcome = "dead_lettered"
	// Abandoned: the partition was revoked or the connector stopped
	// first; the batch is left uncommitted, to be delivered again.
	Abandoned Outcome = "abandoned"
)

// traceContext is the W3C Trace Context propagator: traceparent and
// tracestate, in the records' headers and the invocations'.
var traceContext propagation.TraceContext

// Record is what a batch span reads of one message.
type Record struct {
	Offset int64
	// Key is recorded only when the batch's Keys is set.
	Key []byte
	// Headers are where a producer put its trace context.
	Headers []*sarama.RecordHeader
}

// Batch describes a batch for its span.
type Batch struct {
	Function  string
	Topic     string
	Partition int32
	Group     string // the consumer group
	First     int64
	Last      int64
	Messages  int
	Filtered  int // see AttrFiltered
	// Keys records the messages' keys (trace_keys): off by default, as a
	// key may be personal data.
	Keys    bool
	Records iter.Seq[Record]
}

// Target is where a function's invocations go, worked out once per
// function.
type Target struct {
	name  string
	attrs []attribute.KeyValue
}

// NewTarget describes the invocations of function through the gateway at
// gatewayURL, synchronous or not. The URL is recorded without any user
// name or password it holds.
func NewTarget(gatewayURL, function string, async bool) Target {
	path := "/function/"
	if async {
		path = "/async-function/"
	}
	path += function
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodPost, semconv.FaaSInvokedName(function)}
	if u, err := url.Parse(gatewayURL); err == nil {
		u.User = nil
		u = u.JoinPath(path)
		attrs = append(attrs, semconv.URLFull(u.String()), semconv.ServerAddress(u.Hostname()))
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	return Target{name: http.MethodPost + " " + path, attrs: attrs}
}

// BatchSpan is the span of one batch in flight, and of its invocation
// attempt in progress. The zero value records nothing, at no cost: it is
// what a batch has when tracing is off. A BatchSpan belongs to the
// goroutine delivering its batch.
type BatchSpan struct {
	tracer  trace.Tracer
	span    trace.Span
	ctx     context.Context
	attempt trace.Span
	outcome Outcome
}

// StartBatch starts the span of a batch. A batch of one record that
// carries a trace context continues that trace, as its child; any other
// batch starts a trace of its own, linked to the context of every record
// that carries one, up to OTEL_SPAN_LINK_COUNT_LIMIT (128) records: the
// first ones. (Past its limit the SDK would keep the last ones, moving
// every link it holds at each one more.)
func (t *Tracing) StartBatch(b Batch) BatchSpan {
	if !t.Enabled() {
		return BatchSpan{}
	}
	var links []trace.Link
	for r := range b.Records {
		if t.links >= 0 && len(links) >= t.links {
			break
		}
		sc := Extract(r.Headers)
		if !sc.IsValid() {
			continue
		}
		attrs := []attribute.KeyValue{semconv.MessagingKafkaOffset(int(r.Offset))}
		if b.Keys && r.Key != nil {
			attrs = append(attrs, semconv.MessagingKafkaMessageKey(keyText(r.Key)))
		}
		links = append(links, trace.Link{SpanContext: sc, Attributes: attrs})
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(b.Topic),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(b.Partition))),
		semconv.MessagingConsumerGroupName(b.Group),
		semconv.MessagingBatchMessageCount(b.Messages),
		AttrFirstOffset.Int64(b.First),
		AttrLastOffset.Int64(b.Last),
		semconv.FaaSInvokedName(b.Function),
	}
	if b.Filtered > 0 {
		attrs = append(attrs, AttrFiltered.Int(b.Filtered))
	}
	ctx := context.Background()
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if b.Messages == 1 && len(links) == 1 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, links[0].SpanContext)
		attrs = append(attrs, links[0].Attributes...)
	} else {
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(links...))
	}
	opts = append(opts, trace.WithAttributes(attrs...))
	ctx, span := t.tracer.Start(ctx, "process "+b.Topic, opts...)
	return BatchSpan{tracer: t.tracer, span: span, ctx: ctx}
}

// Filtered records a message the function's filter rejected, when it
// carries a trace context: a span of its own in the producer's trace, so
// that the trace says where the message went.
func (t *Tracing) Filtered(function, topic string, partition int32, group string, keys bool, r Record) {
	if !t.Enabled() {
		return
	}
	sc := Extract(r.Headers)
	if !sc.IsValid() {
		return
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition))),
		semconv.MessagingConsumerGroupName(group),
		semconv.MessagingKafkaOffset(int(r.Offset)),
		semconv.FaaSInvokedName(function),
		AttrFilterRejected.Bool(true),
	}
	if keys && r.Key != nil {
		attrs = append(attrs, semconv.MessagingKafkaMessageKey(keyText(r.Key)))
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	_, span := t.tracer.Start(ctx, "filter "+topic, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	span.End()
}

// Attempt starts the span of invocation attempt n (from 1) as a child of
// the batch's, and writes its traceparent and tracestate into h, so that
// the function's own spans join the trace. The trace context is written
// even when the span is not sampled, with the decision in its flags.
func (b *BatchSpan) Attempt(n int, to Target, h http.Header) {
	if b.span == nil {
		return
	}
	ctx, span := b.tracer.Start(b.ctx, to.name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(to.attrs...),
		trace.WithAttributes(AttrAttempt.Int(n), semconv.HTTPRequestResendCount(n-1)))
	b.attempt = span
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
}

// Answered records the gateway's answer to the attempt in progress: its
// status, or the error that came instead (status 0).
func (b *BatchSpan) Answered(status int, err error) {
	if b.attempt == nil {
		return
	}
	switch {
	case err != nil:
		b.attempt.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		b.attempt.SetStatus(codes.Error, err.Error())
	case status < 200 || status > 299:
		b.attempt.SetAttributes(semconv.HTTPResponseStatusCode(status), semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		b.attempt.SetStatus(codes.Error, "status "+strconv.Itoa(status))
	default:
		b.attempt.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
}

// AttemptEnded ends the span of the attempt in progress. throttled is an
// answer of back-pressure; failedFrom, when not negative, the first
// record a partial success reported failed.
func (b *BatchSpan) AttemptEnded(throttled bool, failedFrom int64) {
	if b.attempt == nil {
		return
	}
	if throttled {
		b.attempt.SetAttributes(AttrBackPressure.Bool(true))
	}
	if failedFrom >= 0 {
		b.attempt.SetAttributes(AttrFailedFrom.Int64(failedFrom))
		b.attempt.SetStatus(codes.Error, "the function reported a failure from offset "+strconv.FormatInt(failedFrom, 10))
	}
	b.attempt.End()
	b.attempt = nil
}

// Retry records the wait before the next attempt after attempt failed.
func (b *BatchSpan) Retry(attempt int, delay time.Duration) {
	if b.span == nil {
		return
	}
	b.span.AddEvent(EventRetry, trace.WithAttributes(AttrAttempt.Int(attempt), AttrDelay.Int64(delay.Milliseconds())))
}

// BackPressure records a wait the function asked for after attempt, not
// counted as a retry, and the limit of the partition's batches in flight
// it lowered.
func (b *BatchSpan) BackPressure(attempt int, delay time.Duration, limit int) {
	if b.span == nil {
		return
	}
	b.span.AddEvent(EventBackPressure, trace.WithAttributes(AttrAttempt.Int(attempt), AttrDelay.Int64(delay.Milliseconds()),
		AttrPartitionLimit.Int(limit)))
}

// Partial records that the records before offset were delivered, and the
// batch goes on with the rest.
func (b *BatchSpan) Partial(offset int64) {
	if b.span == nil {
		return
	}
	b.span.AddEvent(EventPartialSuccess, trace.WithAttributes(AttrFailedFrom.Int64(offset)))
}

// GiveUp records that the retries are spent after attempts.
func (b *BatchSpan) GiveUp(attempts int) {
	if b.span == nil {
		return
	}
	b.outcome = GivenUp
	b.span.AddEvent(EventGiveUp, trace.WithAttributes(AttrAttempt.Int(attempts)))
}

// DeadLettered records that the batch's messages were written to topic.
func (b *BatchSpan) DeadLettered(topic string, messages int) {
	if b.span == nil {
		return
	}
	b.outcome = DeadLettered
	b.span.AddEvent(EventDeadLettered, trace.WithAttributes(AttrDeadLetterTo.String(topic), semconv.MessagingBatchMessageCount(messages)))
}

// DeadLetterFailed records a write to the dead-letter topic that failed,
// and why (see the metric dead_letter_errors_total).
func (b *BatchSpan) DeadLetterFailed(topic, reason string) {
	if b.span == nil {
		return
	}
	b.span.AddEvent(EventDeadLetterFailed, trace.WithAttributes(AttrDeadLetterTo.String(topic), AttrReason.String(reason)))
}

// End ends the batch's span: delivered, given up on or dead-lettered as
// recorded, or abandoned.
func (b *BatchSpan) End(abandoned bool) {
	if b.span == nil {
		return
	}
	if b.attempt != nil {
		b.AttemptEnded(false, -1)
	}
	switch {
	case abandoned:
		b.outcome = Abandoned
	case b.outcome == "":
		b.outcome = Delivered
	}
	b.span.SetAttributes(AttrOutcome.String(string(b.outcome)))
	switch b.outcome {
	case GivenUp:
		b.span.SetStatus(codes.Error, "retries spent; committed without delivery")
	case DeadLettered:
		b.span.SetStatus(codes.Error, "retries spent; written to the dead-letter topic")
	}
	b.span.End()
	b.span = nil
}

// Extract returns the trace context a producer wrote in a record's
// headers, traceparent and tracestate, or an invalid one if it wrote none
// that can be read.
func Extract(headers []*sarama.RecordHeader) trace.SpanContext {
	if len(headers) == 0 {
		return trace.SpanContext{}
	}
	ctx := traceContext.Extract(context.Background(), recordHeaders(headers))
	return trace.SpanContextFromContext(ctx)
}

// recordHeaders reads a record's headers as a propagation carrier. Names
// are matched regardless of case; the first of a repeated name counts.
type recordHeaders []*sarama.RecordHeader

func (h recordHeaders) Get(key string) string {
	for _, x := range h {
		if x != nil && bytes.EqualFold(x.Key, []byte(key)) {
			return string(x.Value)
		}
	}
	return ""
}

// Set does nothing: a record's headers are only read.
func (recordHeaders) Set(string, string) {}

func (h recordHeaders) Keys() []string {
	keys := make([]string, 0, len(h))
	for _, x := range h {
		if x != nil {
			keys = append(keys, string(x.Key))
		}
	}
	return keys
}

// keyText writes a key as text: as it is when it is UTF-8, as the
// record's headers are in the event, and "base64:" followed by its base64
// form otherwise.
func keyText(key []byte) string {
	if utf8.Valid(key) {
		return string(key)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(key)
}

// errorType names an invocation error for error.type: timeout, or the
// error's Go type.
func errorType(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return semconv.ErrorType(err).Value.AsString()
}
