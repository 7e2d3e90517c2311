package respond

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// scanner reads JSON text in one pass, checking it as it goes: each of its
// reads reports errSyntax on what encoding/json would refuse, so that a
// walk over a whole value checks it as json.Valid does, at a fraction of
// its cost, and a later walk over the same text finds no error.
//
// Objects and lists are read as loops, without callbacks (see skipObject):
// open, then for each member name and its value, then more, until more
// reports the end.
type scanner struct {
	b     []byte
	i     int
	depth int
}

var errSyntax = errors.New("not valid JSON")

// maxDepth is the nesting encoding/json accepts.
const maxDepth = 10000

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// open reads the start of an object ('{') or list ('[') and reports
// whether it is empty, read to its end then.
func (s *scanner) open(c byte) (empty bool, err error) {
	if s.peek() != c {
		return false, errSyntax
	}
	if s.depth++; s.depth > maxDepth {
		return false, errSyntax
	}
	s.i++
	s.space()
	if s.peek() == c+2 { // '}' or ']'
		s.i++
		s.depth--
		return true, nil
	}
	return false, nil
}

// more reads what follows a member or element: a comma, more follows, or
// the end of the object or list, close.
func (s *scanner) more(close byte) (bool, error) {
	s.space()
	switch s.peek() {
	case ',':
		s.i++
		s.space()
		return true, nil
	case close:
		s.i++
		s.depth--
		return false, nil
	}
	return false, errSyntax
}

// name reads a member's name and the colon after it, leaving s.i at the
// value.
func (s *scanner) name() ([]byte, error) {
	name, err := s.text()
	if err != nil {
		return nil, err
	}
	s.space()
	if s.peek() != ':' {
		return nil, errSyntax
	}
	s.i++
	s.space()
	return name, nil
}

// text reads the string at s.i and returns its text: a part of s.b when
// it has no escapes and is valid UTF-8, else a new slice decoded as
// encoding/json decodes it (invalid UTF-8 becomes U+FFFD).
func (s *scanner) text() ([]byte, error) {
	if s.peek() != '"' {
		return nil, errSyntax
	}
	start := s.i
	s.i++
	if end := bytes.IndexByte(s.b[s.i:], '"'); end >= 0 && plain(s.b[s.i:s.i+end]) {
		// No escape before the first quote: that quote ends the string.
		raw := s.b[s.i : s.i+end]
		s.i += end + 1
		if utf8.Valid(raw) {
			return raw, nil
		}
		return unquote(s.b[start:s.i]), nil
	}
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return unquote(s.b[start:s.i]), nil
		case c < 0x20:
			return nil, errSyntax
		case c == '\\':
			if err := s.escape(); err != nil {
				return nil, err
			}
		default:
			s.i++
		}
	}
	return nil, errSyntax
}

// plain reports whether a string's bytes need no decoding or checking:
// no escape and no control character.
func plain(raw []byte) bool {
	for _, c := range raw {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	return true
}

func (s *scanner) escape() error {
	if s.i+1 >= len(s.b) {
		return errSyntax
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
		if s.i+6 > len(s.b) {
			return errSyntax
		}
		for _, c := range s.b[s.i+2 : s.i+6] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return errSyntax
			}
		}
		s.i += 6
		return nil
	}
	return errSyntax
}

// unquote decodes a JSON string already checked, as encoding/json does.
func unquote(quoted []byte) []byte {
	var t string
	json.Unmarshal(quoted, &t) //nolint:errcheck // checked by text
	return []byte(t)
}

// skip reads the value at s.i, whatever it is, and returns its text.
func (s *scanner) skip() ([]byte, error) {
	start := s.i
	var err error
	switch c := s.peek(); {
	case c == '"':
		err = s.skipString()
	case c == '{':
		err = s.skipObject()
	case c == '[':
		err = s.skipList()
	case c == 't':
		err = s.literal("true")
	case c == 'f':
		err = s.literal("false")
	case c == 'n':
		err = s.literal("null")
	default:
		err = s.number()
	}
	return s.b[start:s.i], err
}

// skipString reads a string without decoding it.
func (s *scanner) skipString() error {
	s.i++
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return nil
		case c < 0x20:
			return errSyntax
		case c == '\\':
			if err := s.escape(); err != nil {
				return err
			}
		default:
			s.i++
		}
	}
	return errSyntax
}

func (s *scanner) skipObject() error {
	empty, err := s.open('{')
	if err != nil || empty {
		return err
	}
	for {
		if _, err := s.name(); err != nil {
			return err
		}
		if _, err := s.skip(); err != nil {
			return err
		}
		if more, err := s.more('}'); err != nil || !more {
			return err
		}
	}
}

func (s *scanner) skipList() error {
	_, err := s.countList()
	return err
}

// countList reads a list and returns how many elements it has.
func (s *scanner) countList() (int, error) {
	empty, err := s.open('[')
	if err != nil || empty {
		return 0, err
	}
	for n := 1; ; n++ {
		if _, err := s.skip(); err != nil {
			return n, err
		}
		if more, err := s.more(']'); err != nil || !more {
			return n, err
		}
	}
}

func (s *scanner) literal(word string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return errSyntax
	}
	s.i += len(word)
	return nil
}

// number reads a number as JSON writes it: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return errSyntax
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return errSyntax
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return errSyntax
		}
	}
	return nil
}

// digits reads one digit or more, and reports whether there was one.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}
