package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kafka-connector/kafka-connector/types"
)

// expectation is what the checker holds a scenario's deliveries against.
type expectation struct {
	// subscriptions maps each function that must have received every
	// message of its topics to those topics. Functions not in it (removed,
	// never succeeding) are still checked for shape and order.
	subscriptions map[string][]string
	// maxMessages is the largest batch, per function; defaultMax for the
	// others.
	maxMessages map[string]int
	defaultMax  int
	// maxBytes is the largest body; a body of one record may exceed it.
	maxBytes int
	// extras: the connector runs with record_extras=true.
	extras bool
	// keyOrder: the connector runs with ordering=key, so order holds per
	// key, not per partition: the first delivery of a message must come
	// after every earlier message of its key in the partition, or behind
	// them in the same batch.
	keyOrder bool
	// floors are committed offsets seen during the run; group names the
	// consumer group of a function.
	floors []floor
	group  func(function string) string
}

// verdict is what the checker measured.
type verdict struct {
	Calls, OKCalls  int
	Records         int // records in successful calls
	Unique          int // distinct (function, partition, offset) among them
	Duplicates      int // Records - Unique
	Replays         int // restarts of a partition from an earlier offset
	MinBatch        int
	MaxBatch        int
	problems        map[string][]string
	problemCounts   map[string]int
	problemOrdering []string
}

func (v *verdict) problem(kind, format string, args ...any) {
	if v.problems == nil {
		v.problems, v.problemCounts = map[string][]string{}, map[string]int{}
	}
	if v.problemCounts[kind] == 0 {
		v.problemOrdering = append(v.problemOrdering, kind)
	}
	v.problemCounts[kind]++
	if len(v.problems[kind]) < 8 {
		v.problems[kind] = append(v.problems[kind], fmt.Sprintf(format, args...))
	}
}

// Problems lists what broke the promise, each kind with a few examples.
func (v *verdict) Problems() []string {
	var out []string
	for _, kind := range v.problemOrdering {
		out = append(out, fmt.Sprintf("%s (%d times), e.g.:\n\t%s", kind, v.problemCounts[kind], strings.Join(v.problems[kind], "\n\t")))
	}
	return out
}

func (v *verdict) String() string {
	return fmt.Sprintf("%d calls (%d successful), %d records delivered, %d distinct, %d duplicates, %d replays, batches of %d..%d",
		v.Calls, v.OKCalls, v.Records, v.Unique, v.Duplicates, v.Replays, v.MinBatch, v.MaxBatch)
}

// check runs the checker and fails the test for each kind of problem.
func check(t *testing.T, produced map[tp][]*message, calls []*call, e expectation) *verdict {
	t.Helper()
	v := verify(produced, calls, e)
	t.Logf("checker: %s", v)
	for _, p := range v.Problems() {
		t.Error(p)
	}
	return v
}

// verify proves, from what was produced and what the gateway recorded:
// (a) every produced message reached every subscribed function in at least
// one successful invocation; (b) within each partition the successful
// deliveries to a function never go backwards, except for a replay that
// starts again at a point where a commit could have been (the start, or
// just after a delivered batch) and not below what the group had already
// committed; (c) every body is a valid event with the exact field set and
// the produced bytes; (d) batches hold 1..max records of one partition in
// offset order, within max_bytes unless alone.
func verify(produced map[tp][]*message, calls []*call, e expectation) *verdict {
	v := &verdict{MinBatch: -1}
	type fnTP struct {
		fn string
		p  tp
	}
	// What each function received successfully: offset -> times.
	got := map[fnTP]map[int64]int{}
	type cursor struct {
		next   int64          // where the partition's delivery continues
		points map[int64]bool // where a commit may have left it
		seen   bool
	}
	cursors := map[fnTP]*cursor{}
	floors := floorIndex(e.floors)
	// Under keyOrder: each key's offsets in each partition, in order, and
	// how many of them each function has received.
	type fnKey struct {
		k   fnTP
		key string
	}
	keyOffsets := map[tp]map[string][]int64{}
	keyNext := map[fnKey]int{}
	if e.keyOrder {
		for p, msgs := range produced {
			byKey := map[string][]int64{}
			for off, m := range msgs {
				byKey[string(m.Key)] = append(byKey[string(m.Key)], int64(off))
			}
			keyOffsets[p] = byKey
		}
	}

	for _, c := range calls {
		v.Calls++
		recs, ok := checkCall(v, c, produced, e)
		if !ok {
			continue
		}
		first, last := recs[0].Offset, recs[len(recs)-1].Offset
		p := tp{recs[0].Topic, recs[0].Partition}
		if e.group != nil {
			if f, at, ok := floors.at(e.group(c.Function), p, c.Received); ok && first < f {
				v.problem("redelivery of committed messages",
					"%s %s: batch %d..%d (attempt %d) sent after offset %d was committed at %s",
					c.Function, p, first, last, c.attempt(), f, at.Format("15:04:05.000"))
			}
		}
		if !c.OK {
			continue
		}
		v.OKCalls++
		n := len(recs)
		v.Records += n
		if v.MinBatch < 0 || n < v.MinBatch {
			v.MinBatch = n
		}
		v.MaxBatch = max(v.MaxBatch, n)
		if topics, ok := e.subscriptions[c.Function]; ok && !slices.Contains(topics, p.Topic) {
			v.problem("delivery of a topic the function does not subscribe to", "%s got %s", c.Function, p)
		}
		k := fnTP{c.Function, p}
		offs := got[k]
		if offs == nil {
			offs = map[int64]int{}
			got[k] = offs
		}
		for _, r := range recs {
			offs[r.Offset]++
			if !e.keyOrder || offs[r.Offset] > 1 || r.Offset >= int64(len(produced[p])) {
				continue
			}
			key := string(produced[p][r.Offset].Key)
			fk := fnKey{k, key}
			list := keyOffsets[p][key]
			next := keyNext[fk]
			for next < len(list) && offs[list[next]] > 0 && list[next] != r.Offset {
				next++
			}
			if next < len(list) && list[next] != r.Offset {
				v.problem("key order broken", "%s %s: offset %d of key %q delivered before offset %d of the same key",
					c.Function, p, r.Offset, key, list[next])
			}
			for next < len(list) && offs[list[next]] > 0 {
				next++
			}
			keyNext[fk] = next
		}
		if e.keyOrder {
			continue // batches of a partition may be in flight at once
		}
		cur := cursors[k]
		if cur == nil {
			cur = &cursor{points: map[int64]bool{0: true}}
			cursors[k] = cur
		}
		switch {
		case !cur.seen && first != 0:
			v.problem("partition not started at its first message", "%s %s: first delivery starts at %d", c.Function, p, first)
		case cur.seen && first > cur.next:
			v.problem("skipped messages", "%s %s: after %d, the next delivery starts at %d", c.Function, p, cur.next-1, first)
		case cur.seen && first < cur.next:
			v.Replays++
			if !cur.points[first] {
				v.problem("replay from a point no commit could have left",
					"%s %s: after %d, delivery starts again at %d, which is not just after a delivered batch", c.Function, p, cur.next-1, first)
			}
		}
		cur.seen = true
		cur.next = last + 1
		cur.points[last+1] = true
	}

	for _, offs := range got {
		for _, times := range offs {
			v.Unique++
			v.Duplicates += times - 1
		}
	}
	var fns []string
	for f := range e.subscriptions {
		fns = append(fns, f)
	}
	sort.Strings(fns)
	for _, f := range fns {
		for p, msgs := range produced {
			if !slices.Contains(e.subscriptions[f], p.Topic) {
				continue
			}
			offs := got[fnTP{f, p}]
			var missing []int64
			for off := range msgs {
				if offs[int64(off)] == 0 {
					missing = append(missing, int64(off))
				}
			}
			if len(missing) > 0 {
				v.problem("lost messages", "%s never received %d of the %d messages of %s: %s",
					f, len(missing), len(msgs), p, ranges(missing))
			}
		}
	}
	if v.MinBatch < 0 {
		v.MinBatch = 0
	}
	return v
}

// checkCall checks one call's body against the event format, its headers
// and what was produced, and returns its records when it can be used for
// order and coverage.
func checkCall(v *verdict, c *call, produced map[tp][]*message, e expectation) ([]types.Record, bool) {
	if c.Body == nil {
		// Dropped after decoding to save memory: decoding succeeded.
		return recordsOf(c), len(c.event.Records) > 0
	}
	doc, err := decodeStrict(c.Body)
	if err != nil {
		v.problem("body is not valid JSON", "%s attempt %d: %v: %.200q", c.Function, c.attempt(), err, c.Body)
		return nil, false
	}
	top, ok := doc.(map[string]any)
	if !ok || !sameKeys(top, "Records") {
		v.problem("event has the wrong fields", "%s: %.200s", c.Function, c.Body)
		return nil, false
	}
	list, ok := top["Records"].([]any)
	if !ok || len(list) == 0 {
		v.problem("Records is not a non-empty list", "%s: %.200s", c.Function, c.Body)
		return nil, false
	}
	max := e.defaultMax
	if m, ok := e.maxMessages[c.Function]; ok {
		max = m
	}
	if len(list) > max {
		v.problem("batch larger than max_messages", "%s: %d records, max %d", c.Function, len(list), max)
	}
	if len(list) > 1 && e.maxBytes > 0 && len(c.Body) > e.maxBytes {
		v.problem("batch larger than max_bytes", "%s: %d records in %d bytes, max %d", c.Function, len(list), len(c.Body), e.maxBytes)
	}
	if c.decodeErr != nil || len(c.event.Records) != len(list) {
		v.problem("event does not decode as types.Event", "%s: %v", c.Function, c.decodeErr)
		return nil, false
	}
	recs := recordsOf(c)
	hdr := c.partition()
	for i, item := range list {
		wrapper, ok := item.(map[string]any)
		if !ok || !sameKeys(wrapper, "Ckafka") {
			v.problem("record wrapper has the wrong fields", "%s: %.200v", c.Function, item)
			return nil, false
		}
		ck, ok := wrapper["Ckafka"].(map[string]any)
		if !ok {
			v.problem("Ckafka is not an object", "%s: %.200v", c.Function, wrapper)
			return nil, false
		}
		r := recs[i]
		p := tp{r.Topic, r.Partition}
		if p != hdr {
			v.problem("record of another partition than the batch's headers", "%s: record of %s in a batch of %s", c.Function, p, hdr)
		}
		switch {
		case i == 0:
		case e.keyOrder && r.Offset <= recs[i-1].Offset:
			// Under ordering=key a batch takes the messages of the keys
			// that may go, so it may skip offsets, but in order.
			v.problem("batch offsets not increasing", "%s %s: %d after %d", c.Function, p, r.Offset, recs[i-1].Offset)
		case !e.keyOrder && r.Offset != recs[i-1].Offset+1:
			v.problem("batch offsets not consecutive", "%s %s: %d after %d", c.Function, p, r.Offset, recs[i-1].Offset)
		}
		var m *message
		if list := produced[p]; r.Offset >= 0 && r.Offset < int64(len(list)) {
			m = list[r.Offset]
		}
		if m == nil {
			v.problem("record of a message never produced", "%s %s offset %d", c.Function, p, r.Offset)
			continue
		}
		checkRecord(v, c.Function, p, r, ck, m, e.extras)
	}
	first, last := recs[0].Offset, recs[len(recs)-1].Offset
	if c.Header.Get("X-Kafka-First-Offset") != fmt.Sprint(first) || c.Header.Get("X-Kafka-Last-Offset") != fmt.Sprint(last) {
		v.problem("offset headers disagree with the records", "%s %s: headers %s..%s, records %d..%d", c.Function, hdr,
			c.Header.Get("X-Kafka-First-Offset"), c.Header.Get("X-Kafka-Last-Offset"), first, last)
	}
	return recs, true
}

func recordsOf(c *call) []types.Record {
	out := make([]types.Record, len(c.event.Records))
	for i, r := range c.event.Records {
		out[i] = r.Ckafka
	}
	return out
}

// checkRecord compares one record with the message produced at its offset:
// the exact set of fields, and the key, value and headers byte for byte.
func checkRecord(v *verdict, function string, p tp, r types.Record, ck map[string]any, m *message, extras bool) {
	want := []string{"topic", "partition", "offset", "msgKey", "msgBody"}
	// A key that is the text None is base64 too: a bare "None" means no key.
	if m.Key != nil && (!utf8.Valid(m.Key) || string(m.Key) == types.NoKey) {
		want = append(want, "msgKeyEncoding")
	}
	// A null value is marked, an empty one is not.
	switch {
	case m.Value == nil:
		want = append(want, "msgBodyNull")
	case !utf8.Valid(m.Value):
		want = append(want, "msgBodyEncoding")
	}
	if extras {
		want = append(want, "timestamp", "headers")
	}
	if !sameKeys(ck, want...) {
		v.problem("record has the wrong fields", "%s %s offset %d: fields %v, want %v", function, p, r.Offset, keysOf(ck), sorted(want))
		return
	}
	for _, f := range []string{"topic", "msgKey", "msgBody", "msgKeyEncoding", "msgBodyEncoding", "msgBodyNull"} {
		if x, ok := ck[f]; ok {
			if _, isString := x.(string); !isString {
				v.problem("record field of the wrong type", "%s %s offset %d: %s is %T", function, p, r.Offset, f, x)
			}
		}
	}
	for _, f := range []string{"partition", "offset", "timestamp"} {
		if x, ok := ck[f]; ok {
			if _, isNumber := x.(json.Number); !isNumber {
				v.problem("record field of the wrong type", "%s %s offset %d: %s is %T", function, p, r.Offset, f, x)
			}
		}
	}
	key, err := r.Key()
	if err != nil || !bytes.Equal(key, m.Key) || (key == nil) != (m.Key == nil) {
		v.problem("key not delivered as produced", "%s %s offset %d: got %q (msgKey %q, encoding %q, %v), produced %q (nil: %v)",
			function, p, r.Offset, key, r.MsgKey, r.MsgKeyEncoding, err, m.Key, m.Key == nil)
	}
	body, err := r.Body()
	if err != nil || !bytes.Equal(body, m.Value) || (body == nil) != (m.Value == nil) {
		v.problem("value not delivered as produced", "%s %s offset %d: got %d bytes %.60q (nil: %v, encoding %q, %v), produced %d bytes %.60q (nil: %v)",
			function, p, r.Offset, len(body), body, body == nil, r.MsgBodyEncoding, err, len(m.Value), m.Value, m.Value == nil)
	}
	if extras {
		hs, isObject := ck["headers"].(map[string]any)
		if !isObject {
			v.problem("record field of the wrong type", "%s %s offset %d: headers is %T", function, p, r.Offset, ck["headers"])
		}
		want := map[string][]string{}
		for _, h := range m.Headers {
			name := headerText([]byte(h.Key))
			want[name] = append(want[name], headerText(h.Value))
		}
		for name, values := range want {
			// The values of a repeated name are joined, as HTTP does.
			joined := strings.Join(values, ", ")
			gotV, ok := hs[name].(string)
			switch {
			case !ok:
				v.problem("header lost", "%s %s offset %d: header %q missing from %v", function, p, r.Offset, name, keysOf(hs))
			case gotV != joined:
				v.problem("header value not delivered as produced", "%s %s offset %d: header %q is %q, want %q",
					function, p, r.Offset, name, gotV, joined)
			}
		}
		if len(hs) != len(want) {
			v.problem("headers not delivered as produced", "%s %s offset %d: %d headers, want %d", function, p, r.Offset, len(hs), len(want))
		}
	}
}

// headerText is how the event spells a header name or value: as is when
// it is UTF-8, base64 behind a marker when not.
func headerText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// decodeStrict decodes JSON into maps, lists, strings, json.Number, bools
// and nils, refusing what encoding/json lets through silently: an object
// with the same name twice and data after the value.
func decodeStrict(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("data after the event")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			obj := map[string]any{}
			for dec.More() {
				nameTok, err := dec.Token()
				if err != nil {
					return nil, err
				}
				name := nameTok.(string)
				if _, dup := obj[name]; dup {
					return nil, fmt.Errorf("the object has the name %q twice", name)
				}
				if obj[name], err = decodeValue(dec); err != nil {
					return nil, err
				}
			}
			_, err := dec.Token() // '}'
			return obj, err
		case '[':
			list := []any{}
			for dec.More() {
				x, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, x)
			}
			_, err := dec.Token() // ']'
			return list, err
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	default:
		return tok, nil
	}
}

func sameKeys(m map[string]any, want ...string) bool {
	if len(m) != len(want) {
		return false
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// ranges writes offsets as "1-5, 9, 12-20", cut short when long.
func ranges(offs []int64) string {
	slices.Sort(offs)
	var parts []string
	for i := 0; i < len(offs); {
		j := i
		for j+1 < len(offs) && offs[j+1] == offs[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(offs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", offs[i], offs[j]))
		}
		i = j + 1
		if len(parts) == 10 {
			parts = append(parts, "...")
			break
		}
	}
	return strings.Join(parts, ", ")
}

// floorIndex answers, for a group, partition and moment, the highest
// offset the group was seen to have committed before that moment.
type floorIndexT map[string][]floor

func floorIndex(floors []floor) floorIndexT {
	idx := floorIndexT{}
	best := map[string]map[tp]int64{}
	for _, f := range floors {
		// Carry the highest offset seen so far, in case a later read saw
		// less (a broker that lost its last commits would be a bug of its
		// own, not the connector's).
		cur := best[f.Group]
		if cur == nil {
			cur = map[tp]int64{}
			best[f.Group] = cur
		}
		for p, off := range f.Offsets {
			if off > cur[p] {
				cur[p] = off
			}
		}
		snap := make(map[tp]int64, len(cur))
		for p, off := range cur {
			snap[p] = off
		}
		idx[f.Group] = append(idx[f.Group], floor{At: f.At, Group: f.Group, Offsets: snap})
	}
	return idx
}

func (idx floorIndexT) at(group string, p tp, t time.Time) (int64, time.Time, bool) {
	list := idx[group]
	i := sort.Search(len(list), func(i int) bool { return !list[i].At.Before(t) })
	if i == 0 {
		return 0, time.Time{}, false
	}
	f := list[i-1]
	off, ok := f.Offsets[p]
	return off, f.At, ok && off > 0
}

// dupBound is the most duplicates a run may have when the connector was
// killed at the given moments: a replay only covers what was delivered
// after the last flush of offsets (every second) or was in flight, so at
// most what the function received successfully in the window before each
// kill.
func dupBound(calls []*call, kills []time.Time, window time.Duration) int {
	n := 0
	for _, k := range kills {
		for _, c := range calls {
			if c.OK && !c.Received.Before(k.Add(-window)) && !c.Received.After(k) {
				n += len(c.event.Records)
			}
		}
	}
	return n
}
