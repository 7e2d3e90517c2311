package connector

import (
	"slices"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/types"
)

// batch is the event for one invocation, encoded as its messages arrive. It
// belongs to one partition worker; only its sealed body is handed on, to
// the HTTP transport, which may go on reading it after the invocation
// returned. So every batch gets a buffer of its own and never changes it
// once sealed.
type batch struct {
	maxMessages int
	maxBytes    int  // the largest body; a lone message may exceed it
	extras      bool // add timestamp and headers to every record

	buf         []byte                    // EventStart and the records so far, without EventEnd
	msgs        []*sarama.ConsumerMessage // the records, for a partial retry or the dead-letter topic
	first, last int64                     // offsets of the first and last record
	// end is the offset of the last message read for the batch, in it or
	// rejected by the filter after it: once the batch is delivered, the
	// partition is finished up to end. skipped counts the rejected ones.
	end     int64
	skipped int
}

func (b *batch) reset() {
	// The last batch's size is the best guess at this one's.
	b.buf = make([]byte, 0, max(len(b.buf), 256))
	b.buf = append(b.buf, types.EventStart...)
	clear(b.msgs) // let the messages of the last batch be collected
	b.msgs = b.msgs[:0]
	b.skipped = 0
}

func (b *batch) len() int { return len(b.msgs) }

func (b *batch) full() bool { return len(b.msgs) >= b.maxMessages }

// add appends m and reports true, or reports false and leaves the batch as
// it was when m would push the body past maxBytes. The first message of a
// batch is always taken, so that a message larger than maxBytes is delivered
// alone rather than never.
func (b *batch) add(m *sarama.ConsumerMessage) bool {
	mark := len(b.buf)
	if len(b.msgs) > 0 {
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
	if len(b.msgs) > 0 && len(b.buf)+len(types.EventEnd) > b.maxBytes {
		b.buf = b.buf[:mark]
		return false
	}
	if len(b.msgs) == 0 {
		b.first = m.Offset
	}
	b.last = m.Offset
	b.end = m.Offset
	b.msgs = append(b.msgs, m)
	return true
}

// skip records a message that the filter rejected while the batch was
// open: it is finished when the batch is. The batch's records may then
// have gaps between first and last.
func (b *batch) skip(offset int64) {
	b.end = offset
	b.skipped++
}

// keepFrom drops the records before offset and encodes the rest again: what
// is left of a batch after the function reported its first failed record.
func (b *batch) keepFrom(offset int64) {
	i := 0
	for i < len(b.msgs) && b.msgs[i].Offset < offset {
		i++
	}
	rest := slices.Clone(b.msgs[i:])
	end := b.end
	b.reset()
	for _, m := range rest {
		b.add(m)
	}
	b.end = end
	b.seal()
}

// seal ends the event. The batch takes no more messages until reset.
func (b *batch) seal() {
	b.buf = append(b.buf, types.EventEnd...)
}

// oversized reports a sealed batch of one message whose event exceeds
// maxBytes: sent alone rather than never.
func (b *batch) oversized() bool {
	return len(b.msgs) == 1 && len(b.buf) > b.maxBytes
}

// body returns the sealed event.
func (b *batch) body() []byte { return b.buf }
