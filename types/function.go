package types

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Function is a function as the gateway lists it in /system/functions.
// Fields the connector does not use are ignored.
type Function struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TopicAnnotation is the annotation through which a function subscribes.
const TopicAnnotation = "topic"

// InvokeName is the name under which the gateway invokes the function:
// "name", or "name.namespace" when the gateway reports a namespace.
func (f Function) InvokeName() string {
	if f.Namespace == "" {
		return f.Name
	}
	return f.Name + "." + f.Namespace
}

// Check refuses a name or namespace that cannot be part of an invocation
// path or a consumer-group id, as a broken gateway could list.
func (f Function) Check() error {
	if f.Name == "" {
		return fmt.Errorf("the gateway listed a function without a name")
	}
	for _, s := range []string{f.Name, f.Namespace} {
		if len(s) > 253 {
			return fmt.Errorf("name or namespace longer than 253 characters")
		}
		if c, bad := illegalChar(s); bad {
			return fmt.Errorf("name %q or namespace %q has the character %q: only letters, digits, '-', '_' and '.' are allowed", f.Name, f.Namespace, c)
		}
	}
	return nil
}

// Topics returns the topics the function subscribes to through its topic
// annotation, split on delimiter, trimmed, without empties or repeats, in
// the order written.
func (f Function) Topics(delimiter string) []string {
	var topics []string
	for _, t := range strings.Split(f.Annotations[TopicAnnotation], delimiter) {
		t = strings.TrimSpace(t)
		if t != "" && !contains(topics, t) {
			topics = append(topics, t)
		}
	}
	return topics
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// StartOffset is where a consumer group that has no committed offset starts
// reading a partition. The zero value is the latest offset: only messages
// written from now on.
type StartOffset struct {
	// Earliest starts at the oldest message the partition still holds.
	Earliest bool
	// At, when not zero, starts at the first message written at or after
	// this time; a partition with nothing that new starts at its end.
	At time.Time
}

// ParseStartOffset reads "latest", "earliest" (or "newest", "oldest"), an
// RFC 3339 time, or a time in Unix milliseconds.
func ParseStartOffset(s string) (StartOffset, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "latest", "newest":
		return StartOffset{}, nil
	case "earliest", "oldest":
		return StartOffset{Earliest: true}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return StartOffset{At: t}, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return StartOffset{At: time.UnixMilli(ms)}, nil
	}
	return StartOffset{}, fmt.Errorf("start offset %q: want latest, earliest, an RFC 3339 time or Unix milliseconds", s)
}

// Decode lets envconfig read a StartOffset.
func (o *StartOffset) Decode(s string) error {
	v, err := ParseStartOffset(s)
	if err != nil {
		return err
	}
	*o = v
	return nil
}

func (o StartOffset) String() string {
	switch {
	case !o.At.IsZero():
		return o.At.UTC().Format(time.RFC3339Nano)
	case o.Earliest:
		return "earliest"
	default:
		return "latest"
	}
}
