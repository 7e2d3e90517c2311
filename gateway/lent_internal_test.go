package gateway

import (
	"errors"
	"io"
	"testing"
)

// TestLentBodyCallsBackAfterItsLastReference runs the orders in which
// Invoke and the transport may let go of a lent body: back comes once,
// after the last, and nothing reads the body or opens a reader after it.
func TestLentBodyCallsBackAfterItsLastReference(t *testing.T) {
	// Each step: "o" opens a reader, "cN" closes reader N, "rN" reads
	// from reader N, "u" lets go of Invoke's reference.
	for _, tc := range []struct {
		name  string
		steps []string
		backs int // expected calls of back after all steps
	}{
		{"the transport closes before Invoke returns", []string{"o", "r0", "c0", "u"}, 1},
		{"the transport closes after Invoke returned", []string{"o", "u", "r0", "c0"}, 1},
		{"a replay opens a reader after the first was closed", []string{"o", "c0", "o", "r1", "u", "c1"}, 1},
		{"a reader still open holds the body", []string{"o", "o", "c0", "u"}, 0},
		{"a second close counts once", []string{"o", "c0", "c0", "u"}, 1},
		{"no reader", []string{"u"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backs := 0
			l := lend([]byte("body"), func() { backs++ })
			var readers []io.ReadCloser
			for _, s := range tc.steps {
				switch s[0] {
				case 'o':
					r, err := l.open()
					if err != nil {
						t.Fatalf("%s: %v", s, err)
					}
					readers = append(readers, r)
				case 'c':
					readers[s[1]-'0'].Close()
				case 'r':
					if b, err := io.ReadAll(readers[s[1]-'0']); err != nil || string(b) != "body" {
						t.Fatalf("%s: %q, %v", s, b, err)
					}
				case 'u':
					l.unref()
				}
			}
			if backs != tc.backs {
				t.Fatalf("back called %d times, want %d", backs, tc.backs)
			}
			if backs == 0 {
				return
			}
			if _, err := l.open(); !errors.Is(err, errBodyClosed) {
				t.Errorf("open after back: %v, want %v", err, errBodyClosed)
			}
			for i, r := range readers {
				if _, err := r.Read(make([]byte, 8)); !errors.Is(err, errBodyClosed) {
					t.Errorf("read of reader %d after back: %v, want %v", i, err, errBodyClosed)
				}
			}
		})
	}
}
