package answer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Scan reads the report of an answer from r, to its end, holding no more
// of it than the report's list (at most MaxReportBytes) and one key: the
// rest of the answer, the echo of a batch's records say, is read past.
//
// It comes to what Read comes to for a valid JSON answer. An answer that
// does not start as a JSON object reports nothing, as with Read; one that
// starts as an object and then does not parse is unreadable whether or not
// it mentions the key, since it may do so in what could not be read.
func Scan(r io.Reader) (Report, error) {
	s := streamScanner{r: bufio.NewReaderSize(r, 32<<10)}
	rep, err := s.scan()
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errSyntax) {
		return Report{}, fmt.Errorf("%w: the answer does not parse as JSON: %w", ErrUnreadable, err)
	}
	return rep, err
}

var errSyntax = errors.New("syntax error")

// streamScanner walks a JSON text byte by byte, keeping only the raw value
// of the top-level key.
type streamScanner struct {
	r   *bufio.Reader
	raw []byte // the report's list, as written
	key []byte // the top-level key being read, up to len(Key)+1 bytes
	off int64  // bytes read, for errors
}

func (s *streamScanner) scan() (Report, error) {
	if b, err := s.r.Peek(len(bom)); err == nil && bytes.Equal(b, bom) {
		s.r.Discard(len(bom))
		s.off += int64(len(bom))
	}
	c, err := s.nonSpace()
	if err == io.EOF {
		return Report{}, nil // an empty answer
	}
	if err != nil {
		return Report{}, err
	}
	if c != '{' {
		// Not an object, so no top-level key: read past it for the
		// connection's sake, without judging it.
		_, err := io.Copy(io.Discard, s.r)
		return Report{}, err
	}
	var rep Report
	if err := s.object(&rep); err != nil {
		return Report{}, err
	}
	switch c, err := s.nonSpace(); {
	case err == io.EOF:
	case err != nil:
		return Report{}, err
	default:
		return Report{}, s.syntax(c, "after the answer's object")
	}
	return rep, nil
}

// object reads the top-level object's members, its '{' already read.
func (s *streamScanner) object(rep *Report) error {
	c, err := s.nonSpace()
	if err != nil {
		return eof(err)
	}
	if c == '}' {
		return nil
	}
	for {
		if c != '"' {
			return s.syntax(c, "where a key should start")
		}
		s.key = s.key[:0]
		if err := s.str(func(b byte) {
			if len(s.key) <= len(Key) {
				s.key = append(s.key, b)
			}
		}); err != nil {
			return err
		}
		if c, err = s.nonSpace(); err != nil {
			return eof(err)
		}
		if c != ':' {
			return s.syntax(c, "after a key")
		}
		if bytes.EqualFold(s.key, []byte(Key)) {
			// A later spelling of the key replaces an earlier one, as in
			// encoding/json.
			if err := s.report(rep); err != nil {
				return err
			}
		} else if err := s.value(nil); err != nil {
			return err
		}
		if c, err = s.nonSpace(); err != nil {
			return eof(err)
		}
		switch c {
		case '}':
			return nil
		case ',':
			if c, err = s.nonSpace(); err != nil {
				return eof(err)
			}
		default:
			return s.syntax(c, "after a member")
		}
	}
}

// report keeps the key's value and reads it as the list of failures.
func (s *streamScanner) report(rep *Report) error {
	s.raw = s.raw[:0]
	tooLong := false
	err := s.value(func(b byte) {
		if len(s.raw) < MaxReportBytes {
			s.raw = append(s.raw, b)
		} else {
			tooLong = true
		}
	})
	if err != nil {
		return err
	}
	if tooLong {
		return fmt.Errorf("%w: its list is longer than %d bytes", ErrUnreadable, MaxReportBytes)
	}
	if string(bytes.TrimSpace(s.raw)) == "null" {
		*rep = Report{} // as encoding/json leaves the list unset
		return nil
	}
	r, err := parseItems(s.raw)
	if err != nil {
		return err
	}
	*rep = r
	return nil
}

// value reads one JSON value, handing each of its bytes to keep when keep
// is not nil. Numbers and literals are read as runs of the bytes they may
// hold; the report's own value is then parsed strictly.
func (s *streamScanner) value(keep func(byte)) error {
	c, err := s.nonSpace()
	if err != nil {
		return eof(err)
	}
	depth := 0
	for {
		if keep != nil {
			keep(c)
		}
		switch {
		case c == '"':
			if err := s.str(keep); err != nil {
				return err
			}
			if keep != nil {
				keep('"')
			}
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth < 0 {
				return s.syntax(c, "in a value")
			}
		case c == ',' || c == ':':
			if depth == 0 {
				return s.syntax(c, "in a value")
			}
		case isSpace(c):
		case literal(c):
			if depth == 0 {
				// A bare number or literal ends at the first byte that
				// cannot be part of it, which is left for the caller.
				for {
					b, err := s.r.ReadByte()
					if err != nil {
						return eof(err)
					}
					if !literal(b) {
						s.off++
						return s.r.UnreadByte()
					}
					s.off++
					if keep != nil {
						keep(b)
					}
				}
			}
		default:
			return s.syntax(c, "in a value")
		}
		if depth == 0 {
			return nil
		}
		if c, err = s.next(); err != nil {
			return eof(err)
		}
	}
}

// str reads a string's bytes up to its closing quote, its opening one
// already read, handing them to keep (escapes as written).
func (s *streamScanner) str(keep func(byte)) error {
	escaped := false
	for {
		b, err := s.next()
		if err != nil {
			return eof(err)
		}
		switch {
		case escaped:
			escaped = false
		case b == '\\':
			escaped = true
		case b == '"':
			return nil
		}
		if keep != nil {
			keep(b)
		}
	}
}

func (s *streamScanner) next() (byte, error) {
	b, err := s.r.ReadByte()
	if err == nil {
		s.off++
	}
	return b, err
}

func (s *streamScanner) nonSpace() (byte, error) {
	for {
		b, err := s.next()
		if err != nil || !isSpace(b) {
			return b, err
		}
	}
}

func (s *streamScanner) syntax(c byte, where string) error {
	return fmt.Errorf("%w: unexpected %q %s at byte %d", errSyntax, c, where, s.off)
}

// eof turns the end of the answer inside a value into a syntax error.
func eof(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// literal reports whether c may be part of a number, true, false or null.
func literal(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}
