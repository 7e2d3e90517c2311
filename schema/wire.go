package schema

import (
	"encoding/binary"
	"errors"
)

// HeaderSize is the length of the Confluent wire format's header: the magic
// byte and the schema ID.
const HeaderSize = 5

// ParseHeader reads the header of a value in the Confluent wire format and
// returns the schema ID and the rest of the value.
func ParseHeader(value []byte) (id int, payload []byte, err error) {
	switch {
	case len(value) == 0:
		return 0, nil, undecodable(0, "empty: not in the schema registry's wire format (no magic byte)")
	case value[0] != 0:
		return 0, nil, undecodable(0, "first byte 0x%02x: not in the schema registry's wire format (no magic byte)", value[0])
	case len(value) < HeaderSize:
		return 0, nil, undecodable(0, "%d bytes: shorter than the schema registry's 5-byte header", len(value))
	}
	return int(binary.BigEndian.Uint32(value[1:HeaderSize])), value[HeaderSize:], nil
}

// maxIndexes bounds the message indexes of a Protobuf value: the nesting
// depth of the message in its file.
const maxIndexes = 100

var errVarint = errors.New("bad varint")

// messageIndexes reads the message indexes that precede a Protobuf payload:
// a zigzag varint count, then that many zigzag varint indexes, the path of
// the message among the file's messages and their nested ones. A count of
// 0, a single zero byte, stands for the first message: [0]. The indexes are
// appended to dst.
func messageIndexes(dst []int, b []byte) ([]int, []byte, error) {
	n, w := binary.Varint(b)
	if w <= 0 {
		return nil, nil, errVarint
	}
	b = b[w:]
	if n == 0 {
		return append(dst, 0), b, nil
	}
	if n < 0 || n > maxIndexes {
		return nil, nil, errors.New("message index count out of range")
	}
	for range n {
		i, w := binary.Varint(b)
		if w <= 0 {
			return nil, nil, errVarint
		}
		if i < 0 || i > 1<<20 {
			return nil, nil, errors.New("message index out of range")
		}
		dst = append(dst, int(i))
		b = b[w:]
	}
	return dst, b, nil
}
