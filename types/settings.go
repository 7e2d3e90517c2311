package types

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kafka-connector/kafka-connector/schedule"
)

// TriggerSettings are how one function is fed. The connector-wide values
// come from the configuration; a function's annotations override some of
// them for that function only (see WithAnnotations).
type TriggerSettings struct {
	// Enabled false pauses the trigger: its group keeps its offsets, and
	// consumption resumes from them when it is enabled again.
	Enabled bool
	// Group is the consumer-group id.
	Group string
	// StartOffset is where the group starts in a partition it never committed.
	StartOffset StartOffset
	// Isolation says whether messages of aborted and still-open
	// transactions are delivered.
	Isolation IsolationLevel
	// MaxMessages, MaxWait and MaxBytes bound a batch: it is sent when it
	// holds MaxMessages, when MaxWait has passed since its first message, or
	// when the next message would push the body past MaxBytes.
	MaxMessages int
	MaxWait     time.Duration
	MaxBytes    int
	// MaxBufferedBytes is how much of a partition is fetched at a time:
	// what it reads ahead of its next batch, beside the next MaxMessages
	// messages (256 at most) queued for that batch.
	MaxBufferedBytes int
	// MaxRetries is how many times a failed batch is retried before giving
	// up; -1 retries until success.
	MaxRetries                           int
	RetryBackoffInitial, RetryBackoffMax time.Duration
	// UpstreamTimeout bounds one invocation.
	UpstreamTimeout time.Duration
	// ContentType is the Content-Type of every invocation.
	ContentType string
	// DeadLetterTopic, when set, receives the messages of a batch whose
	// retries are spent, before its offsets are committed.
	DeadLetterTopic string
	// RecordExtras adds each message's timestamp and headers to the event.
	RecordExtras bool
	// Async invokes through the gateway's queue; CallbackURL, when set, is
	// sent as X-Callback-Url.
	Async       bool
	CallbackURL string
	// Filter, when set, is a CEL expression over each message: only the
	// messages it accepts are delivered, the others are committed unseen.
	// It is kept as text, compiled by the connector, so that settings stay
	// comparable.
	Filter string
	// Ordering is what a partition's deliveries keep in order: the whole
	// partition (one batch in flight), each key, or nothing.
	Ordering schedule.Ordering
	// Concurrency is how many batches of one partition may be in flight;
	// 0 means the ordering's default (see InFlightPerPartition).
	Concurrency int
	// MaxInflight caps the invocations in flight for the function on this
	// replica, across its partitions; 0 sets no cap.
	MaxInflight int
	// KeyFormat and ValueFormat say how keys and values are read before
	// they are delivered (and filtered): as they are, or decoded.
	KeyFormat, ValueFormat Format
	// ResponseTopic, when set, receives the function's answers, written as
	// ResponseDelivery says (see CheckResponse).
	ResponseTopic    string
	ResponseDelivery ResponseDelivery
}

// DefaultConcurrency is the concurrency of a function under key or none
// ordering that sets none: ten batches in flight hide most of an
// invocation's latency, while the window of eleven batches bounds what a
// crash sends again.
const DefaultConcurrency = schedule.DefaultConcurrency

// MaxConcurrency and MaxInflightCap bound concurrency and max_inflight.
const (
	MaxConcurrency = schedule.MaxConcurrency
	MaxInflightCap = 100000
)

// InFlightPerPartition is the number of batches of one partition that may
// be in flight: 1 under partition ordering, whatever else is set, and
// Concurrency, or DefaultConcurrency, under the others.
func (s TriggerSettings) InFlightPerPartition() int {
	switch {
	case s.Ordering == schedule.OrderPartition:
		return 1
	case s.Concurrency > 0:
		return s.Concurrency
	}
	return DefaultConcurrency
}

// The annotations a function can carry to override the connector-wide
// settings for itself.
const (
	AnnotationMaxMessages     = "kafka-max-messages"
	AnnotationMaxWait         = "kafka-max-wait"
	AnnotationInitialOffset   = "kafka-initial-offset"
	AnnotationMaxRetries      = "kafka-max-retries"
	AnnotationDeadLetterTopic = "kafka-dead-letter-topic"
	AnnotationGroup           = "kafka-group"
	AnnotationEnabled         = "kafka-enabled"
	AnnotationIsolationLevel  = "kafka-isolation-level"
	AnnotationFilter          = "kafka-filter"
	AnnotationOrdering        = "kafka-ordering"
	AnnotationConcurrency     = "kafka-concurrency"
	AnnotationMaxInflight     = "kafka-max-inflight"
)

// AnnotationKeyFormat and AnnotationValueFormat override key_format and
// value_format for the function: one function may read a topic's Avro
// values decoded while another reads them as they are.
const (
	AnnotationKeyFormat   = "kafka-key-format"
	AnnotationValueFormat = "kafka-value-format"
)

// AnnotationMaxBufferedBytes overrides max_buffered_bytes for the function:
// one with large messages or many partitions can read ahead less than the
// others.
const AnnotationMaxBufferedBytes = "kafka-max-buffered-bytes"

// MaxBufferedBytesLimit is the largest MaxBufferedBytes: the connector asks
// a broker for at most 50 MiB a response (sarama's Consumer.Fetch.MaxBytes,
// Kafka's fetch.max.bytes), so a larger fetch of one partition would not
// be honoured anyway.
const MaxBufferedBytesLimit = 50 << 20

// IsolationLevel is which messages of transactional producers a trigger
// reads, as Kafka's isolation.level.
type IsolationLevel string

const (
	// ReadCommitted delivers only the messages of committed transactions
	// (and every non-transactional message), and only once their
	// transaction is decided: what Kafka Streams, Flink and Debezium
	// consumers expect.
	ReadCommitted IsolationLevel = "read_committed"
	// ReadUncommitted delivers every message, aborted transactions included.
	ReadUncommitted IsolationLevel = "read_uncommitted"
)

// ParseIsolationLevel reads read_committed or read_uncommitted.
func ParseIsolationLevel(s string) (IsolationLevel, error) {
	switch l := IsolationLevel(strings.TrimSpace(s)); l {
	case ReadCommitted, ReadUncommitted:
		return l, nil
	}
	return "", fmt.Errorf("isolation level %q: want read_committed or read_uncommitted", s)
}

// AnnotationError is an annotation whose value cannot be used.
type AnnotationError struct {
	Annotation, Value, Allowed string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s=%q: want %s", e.Annotation, e.Value, e.Allowed)
}

// WithAnnotations returns s with the overrides that the annotations carry.
// A value that cannot be used is an *AnnotationError, and the settings
// returned with it must not be used.
func (s TriggerSettings) WithAnnotations(annotations map[string]string) (TriggerSettings, error) {
	for _, name := range []string{
		AnnotationEnabled, AnnotationGroup, AnnotationInitialOffset, AnnotationMaxMessages,
		AnnotationMaxWait, AnnotationMaxRetries, AnnotationDeadLetterTopic, AnnotationIsolationLevel, AnnotationFilter,
		AnnotationMaxBufferedBytes,
		AnnotationOrdering, AnnotationConcurrency, AnnotationMaxInflight,
		AnnotationKeyFormat, AnnotationValueFormat,
		AnnotationResponseTopic, AnnotationResponseDelivery,
	} {
		raw, ok := annotations[name]
		if !ok {
			continue
		}
		v := strings.TrimSpace(raw)
		bad := func(allowed string) (TriggerSettings, error) {
			return TriggerSettings{}, &AnnotationError{Annotation: name, Value: raw, Allowed: allowed}
		}
		switch name {
		case AnnotationEnabled:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("true or false")
			}
			s.Enabled = b
		case AnnotationGroup:
			if v == "" || len(v) > 255 {
				return bad("a consumer-group id of 1 to 255 characters")
			}
			s.Group = v
		case AnnotationInitialOffset:
			o, err := ParseStartOffset(v)
			if err != nil {
				return bad("latest, earliest, an RFC 3339 time or Unix milliseconds")
			}
			s.StartOffset = o
		case AnnotationMaxMessages:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				return bad("a whole number from 1 to 10000")
			}
			s.MaxMessages = n
		case AnnotationMaxWait:
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Minute {
				return bad("a duration from 0 to 60s, such as 100ms")
			}
			s.MaxWait = d
		case AnnotationMaxRetries:
			n, err := strconv.Atoi(v)
			if err != nil || n < -1 || n > 10000 {
				return bad("-1 (retry until success) or a whole number from 0 to 10000")
			}
			s.MaxRetries = n
		case AnnotationDeadLetterTopic:
			if err := CheckTopicName(v); err != nil {
				return bad("a Kafka topic name: " + err.Error())
			}
			s.DeadLetterTopic = v
		case AnnotationMaxBufferedBytes:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1024 || n > MaxBufferedBytesLimit {
				return bad("a whole number of bytes from 1024 to 52428800")
			}
			s.MaxBufferedBytes = n
		case AnnotationIsolationLevel:
			l, err := ParseIsolationLevel(v)
			if err != nil {
				return bad("read_committed or read_uncommitted")
			}
			s.Isolation = l
		case AnnotationFilter:
			// Whether it compiles is the connector's to check.
			if v == "" {
				return bad("a CEL expression returning a bool, such as key.startsWith(\"eu-\")")
			}
			s.Filter = v
		case AnnotationOrdering:
			o, err := schedule.ParseOrdering(v)
			if err != nil {
				return bad("partition, key or none")
			}
			s.Ordering = o
		case AnnotationConcurrency:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxConcurrency {
				return bad(fmt.Sprintf("a whole number from 1 to %d, and 1 under kafka-ordering=partition", MaxConcurrency))
			}
			s.Concurrency = n
		case AnnotationMaxInflight:
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > MaxInflightCap {
				return bad(fmt.Sprintf("0 (no cap) or a whole number up to %d", MaxInflightCap))
			}
			s.MaxInflight = n
		case AnnotationKeyFormat, AnnotationValueFormat:
			f, err := ParseFormat(v)
			if err != nil {
				return bad(FormatsAllowed)
			}
			if name == AnnotationKeyFormat {
				s.KeyFormat = f
			} else {
				s.ValueFormat = f
			}
		case AnnotationResponseTopic:
			if err := CheckTopicName(v); err != nil {
				return bad("a Kafka topic name: " + err.Error())
			}
			s.ResponseTopic = v
		case AnnotationResponseDelivery:
			d, err := ParseResponseDelivery(v)
			if err != nil {
				return bad("at-least-once or exactly-once")
			}
			s.ResponseDelivery = d
		}
	}
	if err := s.CheckResponse(); err != nil {
		// Blame the annotation that made the combination, the first set.
		for _, name := range []string{AnnotationResponseDelivery, AnnotationOrdering, AnnotationResponseTopic} {
			if raw, set := annotations[name]; set {
				return TriggerSettings{}, &AnnotationError{Annotation: name, Value: raw, Allowed: "a value that works with the others: " + err.Error()}
			}
		}
		return TriggerSettings{}, err
	}
	if raw, set := annotations[AnnotationConcurrency]; set && s.Ordering == schedule.OrderPartition && s.Concurrency != 1 {
		return TriggerSettings{}, &AnnotationError{Annotation: AnnotationConcurrency, Value: raw,
			Allowed: "1 under partition ordering (set kafka-ordering=key or none for more)"}
	}
	return s, nil
}

// CheckTopicName reports whether name is a legal Kafka topic name.
func CheckTopicName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%q is not a topic name", name)
	}
	if len(name) > 249 {
		return fmt.Errorf("longer than 249 characters")
	}
	if c, bad := illegalChar(name); bad {
		return fmt.Errorf("character %q not allowed: only letters, digits, '.', '_' and '-'", c)
	}
	return nil
}

// illegalChar returns the first character of s that is not a letter, a
// digit, '.', '_' or '-': what topic names, function names and namespaces
// are all made of.
func illegalChar(s string) (rune, bool) {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return c, true
		}
	}
	return 0, false
}
