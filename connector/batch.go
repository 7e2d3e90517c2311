package connector

import (
	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/types"
)

// record is one message of a partition's window: the message, for a
// partial retry or the dead-letter topic, and its record of the event,
// encoded once when it is read. A batch's body is its records' encodings
// put end to end, so that the scheduler can count the bytes of a batch
// before it is built.
type record struct {
	msg *sarama.ConsumerMessage
	enc []byte
}

// recordSize is what a record adds to a body: its encoding and a comma.
// With the scheduler's MaxBytes at bodyBudget, the batches are those of a
// body of at most max_bytes.
func recordSize(r record) int { return len(r.enc) + 1 }

// bodyBudget is the scheduler's MaxBytes for max_bytes: the records of a
// body of n records take the sum of their sizes less one comma, plus the
// event's start and end.
func bodyBudget(maxBytes int) int {
	return max(1, maxBytes-len(types.EventStart)-len(types.EventEnd)+1)
}

// encoder encodes the records of one partition into shared chunks: one
// allocation for many small messages. A chunk lives as long as one of its
// records is in the window, which the window bounds.
type encoder struct {
	extras bool // add timestamp and headers to every record
	chunk  []byte
	msg    types.Message
	// used are the chunks filled since the window was last empty, and
	// spare those that no record refers to any more (see recycle).
	used, spare [][]byte
}

const chunkSize = 16 << 10

// recycle makes every chunk spare, to be filled again. It may be called
// only when no record it encoded is referred to: when the window is empty
// and no batch is in flight. Under ordering=partition that is after every
// batch, so that a busy partition encodes into the same few chunks.
func (e *encoder) recycle() {
	if e.chunk != nil {
		e.used = append(e.used, e.chunk)
		e.chunk = nil
	}
	for _, c := range e.used {
		e.spare = append(e.spare, c[:0])
	}
	clear(e.used)
	e.used = e.used[:0]
}

// release drops every chunk, for a partition with nothing to do: a
// thousand idle partitions keep no buffers. The same rule as recycle's
// applies.
func (e *encoder) release() {
	e.recycle()
	clear(e.spare)
	e.spare = e.spare[:0]
}

func (e *encoder) encode(m *sarama.ConsumerMessage) record {
	if cap(e.chunk)-len(e.chunk) < 512 {
		if e.chunk != nil {
			e.used = append(e.used, e.chunk)
		}
		if n := len(e.spare); n > 0 {
			e.chunk, e.spare = e.spare[n-1], e.spare[:n-1]
		} else {
			e.chunk = make([]byte, 0, chunkSize)
		}
	}
	e.msg = types.Message{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Timestamp: m.Timestamp,
	}
	if e.extras {
		e.msg.Headers = make([]types.Header, len(m.Headers))
		for i, h := range m.Headers {
			e.msg.Headers[i] = types.Header{Key: h.Key, Value: h.Value}
		}
	}
	start := len(e.chunk)
	e.chunk = types.AppendRecord(e.chunk, &e.msg, e.extras)
	e.msg = types.Message{} // keep no message alive
	enc := e.chunk[start:len(e.chunk):len(e.chunk)]
	if start == 0 && cap(e.chunk) > chunkSize {
		// A record larger than a chunk got a buffer of its own: the next
		// records start a new chunk, rather than pinning it, and it is
		// never filled again.
		e.chunk = nil
	}
	return record{msg: m, enc: enc}
}

// body builds the event of a batch in a buffer of its own: the HTTP
// transport may go on reading it after the invocation returned, so it is
// never changed once built.
func body(items []schedule.Item[record]) []byte {
	n := len(types.EventStart) + len(types.EventEnd)
	for _, it := range items {
		n += recordSize(it.Payload)
	}
	b := make([]byte, 0, n)
	b = append(b, types.EventStart...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.Payload.enc...)
	}
	return append(b, types.EventEnd...)
}
