package connector

import (
	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/types"
)

// batch is the event for one invocation, encoded as its messages arrive into
// a buffer that is reused from one batch to the next. It belongs to one
// partition worker and is never shared.
type batch struct {
	maxMessages int
	maxBytes    int  // the largest body; a lone message may exceed it
	extras      bool // add timestamp and headers to every record

	buf         []byte // EventStart and the records so far, without EventEnd
	n           int
	first, last int64 // offsets of the first and last record
	bytes       int   // sum of key and value sizes, for the metrics
}

func (b *batch) reset() {
	if b.buf == nil {
		b.buf = make([]byte, 0, 64<<10)
	}
	b.buf = append(b.buf[:0], types.EventStart...)
	b.n = 0
	b.bytes = 0
}

func (b *batch) full() bool { return b.n >= b.maxMessages }

func (b *batch) empty() bool { return b.n == 0 }

// add appends m and reports true, or reports false and leaves the batch as
// it was when m would push the body past maxBytes. The first message of a
// batch is always taken, so that a message larger than maxBytes is delivered
// alone rather than never.
func (b *batch) add(m *sarama.ConsumerMessage) bool {
	mark := len(b.buf)
	if b.n > 0 {
		b.buf = append(b.buf, ',')
	}
	msg := types.Message{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Timestamp: m.Timestamp,
	}
	if b.extras {
		msg.Headers = make([]types.Header, len(m.Headers))
		for i, h := range m.Headers {
			msg.Headers[i] = types.Header{Key: h.Key, Value: h.Value}
		}
	}
	b.buf = types.AppendRecord(b.buf, &msg, b.extras)
	if b.n > 0 && len(b.buf)+len(types.EventEnd) > b.maxBytes {
		b.buf = b.buf[:mark]
		return false
	}
	if b.n == 0 {
		b.first = m.Offset
	}
	b.last = m.Offset
	b.n++
	b.bytes += len(m.Key) + len(m.Value)
	return true
}

// body returns the event. It is valid until the next reset or add.
func (b *batch) body() []byte {
	return append(b.buf, types.EventEnd...)
}
