package respond

import (
	"slices"
	"strconv"

	"github.com/IBM/sarama"
)

// Headers added to every record written to a response topic, naming the
// input it answers, so that a reader can trace a record to its batch and
// drop a batch's records written twice (at least once) by the idempotency
// key.
const (
	HeaderSourceTopic       = "x-source-topic"
	HeaderSourcePartition   = "x-source-partition"
	HeaderSourceFirstOffset = "x-source-first-offset"
	HeaderSourceLastOffset  = "x-source-last-offset"
	HeaderFunction          = "x-function"
	HeaderIdempotencyKey    = "x-idempotency-key"
)

// reserved are the headers the connector writes; a function's header of the
// same name is dropped, so that a reader finds one of each.
var reserved = []string{
	HeaderSourceTopic, HeaderSourcePartition, HeaderSourceFirstOffset,
	HeaderSourceLastOffset, HeaderFunction, HeaderIdempotencyKey,
}

// Source is the batch an answer came from.
type Source struct {
	Topic       string
	Partition   int32
	First, Last int64 // offsets of the batch as it was sent
	Function    string
	// IdempotencyKey is the batch's X-Idempotency-Key: the same on every
	// attempt at the batch, and on the batch sent again after a crash.
	IdempotencyKey string
}

func (s Source) headers() []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte(HeaderSourceTopic), Value: []byte(s.Topic)},
		{Key: []byte(HeaderSourcePartition), Value: []byte(strconv.Itoa(int(s.Partition)))},
		{Key: []byte(HeaderSourceFirstOffset), Value: []byte(strconv.FormatInt(s.First, 10))},
		{Key: []byte(HeaderSourceLastOffset), Value: []byte(strconv.FormatInt(s.Last, 10))},
		{Key: []byte(HeaderFunction), Value: []byte(s.Function)},
		{Key: []byte(HeaderIdempotencyKey), Value: []byte(s.IdempotencyKey)},
	}
}

// recordHeaders are src's headers as the writer encodes them, shared by
// every record of the answer.
func (s Source) recordHeaders() []*sarama.RecordHeader { return pointers(s.headers()) }

// ownHeaders are a record's own headers followed by the source's (see
// withSource), as the writer encodes them.
func ownHeaders(own []Header, src []*sarama.RecordHeader) []*sarama.RecordHeader {
	return append(pointers(withSource(own, nil)), src...)
}

// withSource is a record's own headers followed by src's, the function's
// header named as one of the source's dropped: a reader finds one of each.
func withSource(own []Header, src []sarama.RecordHeader) []sarama.RecordHeader {
	out := make([]sarama.RecordHeader, 0, len(own)+len(src))
	for _, h := range own {
		if !slices.Contains(reserved, h.Key) {
			out = append(out, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
	}
	return append(out, src...)
}

func pointers(hs []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out
}

// Messages makes the producer messages of records answering src, for topic.
// Each carries src's headers after the function's own, and the input
// partition for Partitioner.
func Messages(topic string, src Source, records []Record) []*sarama.ProducerMessage {
	if len(records) == 0 {
		return nil
	}
	extra := src.headers()
	out := make([]*sarama.ProducerMessage, 0, len(records))
	for _, r := range records {
		// Records without headers of their own share the source's: the
		// producer only reads them.
		headers := extra
		if len(r.Headers) > 0 {
			headers = withSource(r.Headers, extra)
		}
		// A nil key or value stays null, not empty.
		m := &sarama.ProducerMessage{Topic: topic, Headers: headers, Metadata: inputPartition(src.Partition)}
		if r.Key != nil {
			m.Key = sarama.ByteEncoder(r.Key)
		}
		if r.Value != nil {
			m.Value = sarama.ByteEncoder(r.Value)
		}
		out = append(out, m)
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
