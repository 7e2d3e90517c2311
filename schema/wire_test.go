package schema

import (
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

// The message indexes as franz-go's serde writes them, read back: a single
// zero byte for [0], zigzag varints otherwise.
func TestMessageIndexes(t *testing.T) {
	for _, index := range [][]int{{0}, {1}, {1, 0}, {0, 0}, {3, 2, 1}, {64}, {300, 70000}} {
		b, err := (&sr.ConfluentHeader{}).AppendEncode(nil, 7, index)
		if err != nil {
			t.Fatal(err)
		}
		id, payload, err := ParseHeader(append(b, 0xaa))
		if err != nil || id != 7 {
			t.Fatalf("%v: header %x: id %d, %v", index, b, id, err)
		}
		got, rest, err := messageIndexes(nil, payload)
		if err != nil || !slices.Equal(got, index) || len(rest) != 1 || rest[0] != 0xaa {
			t.Errorf("%v written as %x: read %v, rest %x, %v", index, payload, got, rest, err)
		}
	}
	for name, b := range map[string][]byte{
		"nothing":         {},
		"negative count":  {1},
		"count too large": {0xfe, 0x0f},
		"indexes missing": {4, 2},
		"negative index":  {2, 1},
		"varint too long": {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"index too large": {2, 0xfe, 0xff, 0xff, 0x0f},
	} {
		if got, _, err := messageIndexes(nil, b); err == nil {
			t.Errorf("%s: %x read as %v", name, b, got)
		}
	}
}
