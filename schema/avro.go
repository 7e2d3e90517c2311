package schema

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"

	"github.com/hamba/avro/v2"
)

// The Avro mapping to JSON, chosen for what a Python or Node function reads
// most naturally (docs/schemas.md shows each with an example):
//
//   - null, boolean, int, long, float, double: JSON's own; a float or double
//     that is NaN or infinite is the string "NaN", "Infinity" or "-Infinity",
//     as protojson writes them. A long beyond 2^53 keeps every digit, which
//     JavaScript's JSON.parse rounds.
//   - string: a JSON string; bytes that are not UTF-8 become U+FFFD, as
//     encoding/json does.
//   - bytes and fixed: base64 (standard alphabet, padded), as protojson.
//   - record: an object of its fields in schema order; map: an object;
//     array: an array; enum: the symbol's name.
//   - union: the plain value of the branch written, without the branch's
//     name ({"amount": 5}, not {"amount": {"int": 5}}); null for null.
//   - decimal: a string of the exact number ("-12.50"), since a JSON number
//     would round it in most readers.
//   - date: "2024-05-01"; time-millis and time-micros: "13:45:30.250" and
//     "13:45:30.250000"; timestamp-millis and timestamp-micros: RFC 3339 in
//     UTC with 3 or 6 fraction digits ("2024-05-01T13:45:30.250Z"), which
//     JavaScript's Date and Python's datetime.fromisoformat read; the local
//     timestamps the same without the zone.
//   - uuid: the string; duration: {"months":1,"days":2,"milliseconds":3}.
//   - a logical type the decoder does not know is its underlying type.

// avroKind is what an avroNode reads.
type avroKind uint8

const (
	avroNull avroKind = iota
	avroBoolean
	avroInt
	avroLong
	avroFloat
	avroDouble
	avroBytes
	avroString
	avroRecord
	avroEnum
	avroArray
	avroMap
	avroUnion
	avroFixed
	avroDecimalBytes
	avroDecimalFixed
	avroDate
	avroTimeMillis
	avroTimeMicros
	avroTimestampMillis
	avroTimestampMicros
	avroLocalTimestampMillis
	avroLocalTimestampMicros
	avroDuration
)

// avroNode is a schema compiled for decoding: what to read, and the JSON
// text of its names, escaped once.
type avroNode struct {
	kind     avroKind
	fields   []avroField // record
	symbols  [][]byte    // enum: each symbol as a JSON string
	items    *avroNode   // array items, map values
	branches []*avroNode // union
	size     int         // fixed
	scale    int         // decimal
	// empty is a node that may take no byte of the payload: null, and a
	// record of such nodes. Arrays and maps of them are bounded otherwise
	// than by the payload's length.
	empty bool
}

type avroField struct {
	name []byte // `"name":`, escaped
	node *avroNode
}

// avroDecoder decodes the values of one Avro schema.
type avroDecoder struct {
	root *avroNode
}

// compileAvro parses an Avro schema, with the schemas it references, which
// come first in refs in an order where each comes after those it uses.
func compileAvro(text string, refs []string) (*avroDecoder, error) {
	// A cache of its own: the same name may mean another record under
	// another schema ID (two versions of one subject).
	cache := &avro.SchemaCache{}
	for _, r := range refs {
		if _, err := avro.ParseWithCache(r, "", cache); err != nil {
			return nil, fmt.Errorf("a referenced schema: %w", err)
		}
	}
	s, err := avro.ParseWithCache(text, "", cache)
	if err != nil {
		return nil, err
	}
	c := avroCompiler{named: make(map[string]*avroNode)}
	root, err := c.node(s)
	if err != nil {
		return nil, err
	}
	return &avroDecoder{root: root}, nil
}

type avroCompiler struct {
	named map[string]*avroNode // records, enums and fixed, by full name
}

func (c *avroCompiler) node(s avro.Schema) (*avroNode, error) {
	if n, ok := s.(avro.NamedSchema); ok && s.Type() != avro.Ref {
		if done := c.named[n.FullName()]; done != nil {
			return done, nil
		}
	}
	switch s := s.(type) {
	case *avro.NullSchema:
		return &avroNode{kind: avroNull, empty: true}, nil
	case *avro.PrimitiveSchema:
		return primitiveNode(s)
	case *avro.RefSchema:
		return c.node(s.Schema())
	case *avro.RecordSchema:
		n := &avroNode{kind: avroRecord}
		// Named before its fields, which may refer to it.
		c.named[s.FullName()] = n
		n.empty = true
		for _, f := range s.Fields() {
			fn, err := c.node(f.Type())
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name(), err)
			}
			n.fields = append(n.fields, avroField{name: append(appendJSONString(nil, []byte(f.Name())), ':'), node: fn})
			n.empty = n.empty && fn.empty && fn != n
		}
		return n, nil
	case *avro.EnumSchema:
		n := &avroNode{kind: avroEnum}
		for _, sym := range s.Symbols() {
			n.symbols = append(n.symbols, appendJSONString(nil, []byte(sym)))
		}
		c.named[s.FullName()] = n
		return n, nil
	case *avro.FixedSchema:
		n := &avroNode{kind: avroFixed, size: s.Size(), empty: s.Size() == 0}
		switch l := s.Logical().(type) {
		case *avro.DecimalLogicalSchema:
			n.kind, n.scale = avroDecimalFixed, l.Scale()
		case nil:
		default:
			if l.Type() == avro.Duration && s.Size() == 12 {
				n.kind = avroDuration
			}
		}
		c.named[s.FullName()] = n
		return n, nil
	case *avro.ArraySchema:
		items, err := c.node(s.Items())
		if err != nil {
			return nil, err
		}
		return &avroNode{kind: avroArray, items: items}, nil
	case *avro.MapSchema:
		values, err := c.node(s.Values())
		if err != nil {
			return nil, err
		}
		return &avroNode{kind: avroMap, items: values}, nil
	case *avro.UnionSchema:
		n := &avroNode{kind: avroUnion}
		for _, b := range s.Types() {
			bn, err := c.node(b)
			if err != nil {
				return nil, err
			}
			n.branches = append(n.branches, bn)
		}
		return n, nil
	}
	return nil, fmt.Errorf("unsupported Avro schema %s", s.Type())
}

func primitiveNode(s *avro.PrimitiveSchema) (*avroNode, error) {
	n := &avroNode{}
	switch s.Type() {
	case avro.Null:
		n.kind, n.empty = avroNull, true
	case avro.Boolean:
		n.kind = avroBoolean
	case avro.Int:
		n.kind = avroInt
	case avro.Long:
		n.kind = avroLong
	case avro.Float:
		n.kind = avroFloat
	case avro.Double:
		n.kind = avroDouble
	case avro.Bytes:
		n.kind = avroBytes
	case avro.String:
		n.kind = avroString
	default:
		return nil, fmt.Errorf("unsupported Avro type %s", s.Type())
	}
	l := s.Logical()
	if l == nil {
		return n, nil
	}
	switch lt := l.Type(); {
	case lt == avro.Decimal && n.kind == avroBytes:
		if d, ok := l.(*avro.DecimalLogicalSchema); ok {
			n.kind, n.scale = avroDecimalBytes, d.Scale()
		}
	case lt == avro.Date && n.kind == avroInt:
		n.kind = avroDate
	case lt == avro.TimeMillis && n.kind == avroInt:
		n.kind = avroTimeMillis
	case lt == avro.TimeMicros && n.kind == avroLong:
		n.kind = avroTimeMicros
	case lt == avro.TimestampMillis && n.kind == avroLong:
		n.kind = avroTimestampMillis
	case lt == avro.TimestampMicros && n.kind == avroLong:
		n.kind = avroTimestampMicros
	case lt == avro.LocalTimestampMillis && n.kind == avroLong:
		n.kind = avroLocalTimestampMillis
	case lt == avro.LocalTimestampMicros && n.kind == avroLong:
		n.kind = avroLocalTimestampMicros
	}
	return n, nil
}

// maxAvroDepth bounds the nesting of a value: a recursive schema lets a
// payload nest as deep as it is long, and the decoder recurses.
const maxAvroDepth = 1000

// avroReader reads one payload. limit bounds the JSON it may write: a
// payload of arrays of nulls, or of blocks that claim many items, would
// otherwise write without end from a few bytes.
type avroReader struct {
	b     []byte
	limit int
}

var errAvroShort = errors.New("the payload ends before its schema does")

// appendJSON appends the JSON of payload to dst.
func (d *avroDecoder) appendJSON(dst, payload []byte) ([]byte, error) {
	r := avroReader{b: payload, limit: len(dst) + 1<<20 + 64*len(payload)}
	out, err := r.value(dst, d.root, 0)
	if err != nil {
		return dst, err
	}
	if len(r.b) > 0 {
		return dst, fmt.Errorf("%d bytes left after the value: not written with this schema", len(r.b))
	}
	return out, nil
}

func (r *avroReader) long() (int64, error) {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		if n == 0 {
			return 0, errAvroShort
		}
		return 0, errors.New("a number longer than 64 bits")
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *avroReader) int() (int32, error) {
	v, err := r.long()
	if err == nil && (v < math.MinInt32 || v > math.MaxInt32) {
		err = fmt.Errorf("int %d out of 32-bit range", v)
	}
	return int32(v), err
}

// bytes reads a length-prefixed run of bytes.
func (r *avroReader) bytes() ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(len(r.b)) {
		return nil, fmt.Errorf("a length of %d where %d bytes are left", n, len(r.b))
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b, nil
}

func (r *avroReader) fixed(n int) ([]byte, error) {
	if n > len(r.b) {
		return nil, errAvroShort
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b, nil
}

// block reads the count of an array or map block, skipping the byte size
// that a negative count announces.
func (r *avroReader) block(items *avroNode) (int, error) {
	n, err := r.long()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, errors.New("a block count out of range")
		}
		n = -n
		if _, err := r.long(); err != nil {
			return 0, err
		}
	}
	// Every item but an empty one takes a byte at least.
	if !items.empty && n > int64(len(r.b)) || n > 1<<24 {
		return 0, fmt.Errorf("a block of %d items where %d bytes are left", n, len(r.b))
	}
	return int(n), nil
}

func (r *avroReader) value(dst []byte, n *avroNode, depth int) ([]byte, error) {
	if depth > maxAvroDepth {
		return dst, fmt.Errorf("nested deeper than %d levels", maxAvroDepth)
	}
	switch n.kind {
	case avroNull:
		return append(dst, "null"...), nil
	case avroBoolean:
		b, err := r.fixed(1)
		if err != nil {
			return dst, err
		}
		switch b[0] {
		case 0:
			return append(dst, "false"...), nil
		case 1:
			return append(dst, "true"...), nil
		}
		return dst, fmt.Errorf("boolean byte 0x%02x", b[0])
	case avroInt:
		v, err := r.int()
		return strconv.AppendInt(dst, int64(v), 10), err
	case avroLong:
		v, err := r.long()
		return strconv.AppendInt(dst, v, 10), err
	case avroFloat:
		b, err := r.fixed(4)
		if err != nil {
			return dst, err
		}
		return appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 32), nil
	case avroDouble:
		b, err := r.fixed(8)
		if err != nil {
			return dst, err
		}
		return appendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(b)), 64), nil
	case avroBytes:
		b, err := r.bytes()
		return appendBase64(dst, b), err
	case avroString:
		b, err := r.bytes()
		return appendJSONString(dst, b), err
	case avroFixed:
		b, err := r.fixed(n.size)
		return appendBase64(dst, b), err
	case avroRecord:
		dst = append(dst, '{')
		for i, f := range n.fields {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, f.name...)
			var err error
			if dst, err = r.value(dst, f.node, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case avroEnum:
		i, err := r.int()
		if err != nil {
			return dst, err
		}
		if i < 0 || int(i) >= len(n.symbols) {
			return dst, fmt.Errorf("enum index %d of %d symbols", i, len(n.symbols))
		}
		return append(dst, n.symbols[i]...), nil
	case avroUnion:
		i, err := r.long()
		if err != nil {
			return dst, err
		}
		if i < 0 || i >= int64(len(n.branches)) {
			return dst, fmt.Errorf("union branch %d of %d", i, len(n.branches))
		}
		return r.value(dst, n.branches[i], depth+1)
	case avroArray, avroMap:
		// Both are blocks of items; a map's items are each a key and a
		// value, written as an object's members.
		open, end := byte('['), byte(']')
		if n.kind == avroMap {
			open, end = '{', '}'
		}
		dst = append(dst, open)
		first := true
		for {
			count, err := r.block(n.items)
			if err != nil {
				return dst, err
			}
			if count == 0 {
				return append(dst, end), nil
			}
			for range count {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				if n.kind == avroMap {
					k, err := r.bytes()
					if err != nil {
						return dst, err
					}
					dst = append(appendJSONString(dst, k), ':')
				}
				if dst, err = r.value(dst, n.items, depth+1); err != nil {
					return dst, err
				}
				if len(dst) > r.limit {
					return dst, errors.New("decodes to far more JSON than its payload: not written with this schema")
				}
			}
		}
	case avroDecimalBytes:
		b, err := r.bytes()
		return appendDecimal(dst, b, n.scale), err
	case avroDecimalFixed:
		b, err := r.fixed(n.size)
		return appendDecimal(dst, b, n.scale), err
	case avroDate:
		v, err := r.int()
		if err != nil {
			return dst, err
		}
		return appendTime(dst, time.Unix(int64(v)*86400, 0).UTC(), "2006-01-02"), nil
	case avroTimeMillis:
		v, err := r.int()
		if err != nil {
			return dst, err
		}
		return appendTime(dst, time.UnixMilli(int64(v)).UTC(), "15:04:05.000"), nil
	case avroTimeMicros:
		v, err := r.long()
		if err != nil {
			return dst, err
		}
		return appendTime(dst, time.UnixMicro(v).UTC(), "15:04:05.000000"), nil
	case avroTimestampMillis, avroLocalTimestampMillis:
		v, err := r.long()
		if err != nil {
			return dst, err
		}
		layout := "2006-01-02T15:04:05.000Z"
		if n.kind == avroLocalTimestampMillis {
			layout = "2006-01-02T15:04:05.000"
		}
		return appendTime(dst, time.UnixMilli(v).UTC(), layout), nil
	case avroTimestampMicros, avroLocalTimestampMicros:
		v, err := r.long()
		if err != nil {
			return dst, err
		}
		layout := "2006-01-02T15:04:05.000000Z"
		if n.kind == avroLocalTimestampMicros {
			layout = "2006-01-02T15:04:05.000000"
		}
		return appendTime(dst, time.UnixMicro(v).UTC(), layout), nil
	case avroDuration:
		b, err := r.fixed(12)
		if err != nil {
			return dst, err
		}
		dst = append(dst, `{"months":`...)
		dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(b)), 10)
		dst = append(dst, `,"days":`...)
		dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(b[4:])), 10)
		dst = append(dst, `,"milliseconds":`...)
		dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(b[8:])), 10)
		return append(dst, '}'), nil
	}
	return dst, fmt.Errorf("unknown node kind %d", n.kind)
}

// appendTime appends t as a JSON string in layout. A year outside 0 to 9999
// has no RFC 3339 form: such an instant is written as Go formats it, which
// a reader refuses rather than misreads.
func appendTime(dst []byte, t time.Time, layout string) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, layout)
	return append(dst, '"')
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

func appendBase64(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// appendDecimal appends the decimal whose unscaled value is the two's
// complement big-endian integer b, as a JSON string: "-12.50" for -1250
// at scale 2.
func appendDecimal(dst, b []byte, scale int) []byte {
	var digits []byte
	negative := len(b) > 0 && b[0]&0x80 != 0
	if len(b) <= 8 {
		var v int64
		if negative {
			v = -1
		}
		for _, c := range b {
			v = v<<8 | int64(c)
		}
		if negative {
			digits = strconv.AppendUint(nil, uint64(-v), 10) // -MinInt64 wraps to itself, read unsigned
		} else {
			digits = strconv.AppendInt(nil, v, 10)
		}
	} else {
		u := new(big.Int).SetBytes(b)
		if negative {
			u.Sub(u, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
			u.Neg(u)
		}
		digits = u.Append(nil, 10)
	}
	dst = append(dst, '"')
	if negative {
		dst = append(dst, '-')
	}
	if scale <= 0 {
		dst = append(dst, digits...)
		return append(dst, '"')
	}
	if len(digits) <= scale {
		dst = append(dst, '0', '.')
		for range scale - len(digits) {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
		return append(dst, '"')
	}
	dst = append(dst, digits[:len(digits)-scale]...)
	dst = append(dst, '.')
	dst = append(dst, digits[len(digits)-scale:]...)
	return append(dst, '"')
}
