package schema

import (
	"bytes"
	"unicode/utf8"

	"github.com/kafka-connector/kafka-connector/types"
)

// appendJSONString appends s as a JSON string: quote, backslash and control
// characters escaped as the event escapes them, and bytes that are not UTF-8
// replaced by U+FFFD, as encoding/json does, so that the output is valid
// JSON whatever s holds.
func appendJSONString(dst, s []byte) []byte {
	if !utf8.Valid(s) {
		s = bytes.ToValidUTF8(s, []byte("\uFFFD"))
	}
	return types.AppendJSONString(dst, s)
}
