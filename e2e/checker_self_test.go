package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

// The checker is what every scenario's verdict rests on, so it is tested
// first against deliveries made up to break each rule.

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func madeUpLog(n int) map[tp][]*message {
	out := map[tp][]*message{}
	for p := int32(0); p < 2; p++ {
		for i := range n {
			m := &message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d-%d", p, i)}
			if i == 3 {
				m.Key = nil
				m.Value = []byte{0xff, 0x00}
			}
			out[tp{"t", p}] = append(out[tp{"t", p}], m)
		}
	}
	return out
}

// madeUpCall is a call carrying offsets first..last of p as the connector
// would encode them, answered at second sec.
func madeUpCall(produced map[tp][]*message, function string, p tp, first, last int64, ok bool, sec int) *call {
	body := []byte(types.EventStart)
	for off := first; off <= last; off++ {
		if off > first {
			body = append(body, ',')
		}
		m := produced[p][off]
		body = types.AppendRecord(body, &types.Message{Topic: p.Topic, Partition: p.Partition, Offset: off, Key: m.Key, Value: m.Value}, false)
	}
	body = append(body, types.EventEnd...)
	return bodyCall(function, p, first, last, ok, sec, body)
}

func bodyCall(function string, p tp, first, last int64, ok bool, sec int, body []byte) *call {
	c := &call{
		Function: function,
		Received: t0.Add(time.Duration(sec) * time.Second),
		Status:   200,
		OK:       ok,
		Header: http.Header{
			"X-Topic":              {p.Topic},
			"X-Kafka-Partition":    {fmt.Sprint(p.Partition)},
			"X-Kafka-First-Offset": {fmt.Sprint(first)},
			"X-Kafka-Last-Offset":  {fmt.Sprint(last)},
			"X-Delivery-Attempt":   {"1"},
		},
		Body: body,
	}
	if !ok {
		c.Status = 503
	}
	c.decodeErr = json.Unmarshal(body, &c.event)
	return c
}

func TestCheckerCatchesBrokenPromises(t *testing.T) {
	produced := madeUpLog(10)
	p0, p1 := tp{"t", 0}, tp{"t", 1}
	good := func() []*call {
		return []*call{
			madeUpCall(produced, "f", p0, 0, 4, true, 1),
			madeUpCall(produced, "f", p1, 0, 9, true, 1),
			madeUpCall(produced, "f", p0, 5, 9, false, 2),
			madeUpCall(produced, "f", p0, 5, 9, true, 3),
		}
	}
	base := expectation{
		subscriptions: map[string][]string{"f": {"t"}},
		defaultMax:    10,
		group:         func(f string) string { return "g-" + f },
	}
	tests := []struct {
		name       string
		calls      []*call
		e          func(expectation) expectation
		wantKind   string // "" for none
		duplicates int
		replays    int
	}{
		{name: "all delivered once in order", calls: good()},
		{
			name:     "a message never delivered",
			calls:    good()[:3],
			wantKind: "lost messages",
		},
		{
			name: "a later batch before an earlier one",
			calls: []*call{
				madeUpCall(produced, "f", p1, 0, 9, true, 1),
				madeUpCall(produced, "f", p0, 5, 9, true, 1),
				madeUpCall(produced, "f", p0, 0, 4, true, 2),
			},
			wantKind: "partition not started at its first message",
		},
		{
			name: "a gap filled later",
			calls: []*call{
				madeUpCall(produced, "f", p1, 0, 9, true, 1),
				madeUpCall(produced, "f", p0, 0, 2, true, 1),
				madeUpCall(produced, "f", p0, 5, 9, true, 2),
				madeUpCall(produced, "f", p0, 3, 4, true, 3),
			},
			wantKind: "skipped messages",
		},
		{
			name: "a replay from a batch boundary after a crash",
			calls: append(good(),
				madeUpCall(produced, "f", p0, 5, 9, true, 10)),
			duplicates: 5,
			replays:    1,
		},
		{
			name: "a replay from inside a delivered batch",
			calls: append(good(),
				madeUpCall(produced, "f", p0, 7, 9, true, 10)),
			wantKind: "replay from a point no commit could have left",
		},
		{
			name:  "a replay of what was committed",
			calls: append(good(), madeUpCall(produced, "f", p0, 5, 9, true, 10)),
			e: func(e expectation) expectation {
				e.floors = []floor{{At: t0.Add(5 * time.Second), Group: "g-f", Offsets: map[tp]int64{p0: 10}}}
				return e
			},
			wantKind: "redelivery of committed messages",
		},
		{
			name:     "a batch over max_messages",
			calls:    good(),
			e:        func(e expectation) expectation { e.defaultMax = 5; return e },
			wantKind: "batch larger than max_messages",
		},
		{
			name: "a record with an extra field",
			calls: []*call{
				bodyCall("f", p0, 0, 0, true, 1, []byte(`{"Records":[{"Ckafka":{"topic":"t","partition":0,"offset":0,"msgKey":"k0","msgBody":"v0-0","extra":1}}]}`)),
			},
			e:        func(e expectation) expectation { e.subscriptions = nil; return e },
			wantKind: "record has the wrong fields",
		},
		{
			name: "a body with a repeated name",
			calls: []*call{
				bodyCall("f", p0, 0, 0, true, 1, []byte(`{"Records":[{"Ckafka":{"topic":"t","partition":0,"offset":0,"msgKey":"k0","msgBody":"x","msgBody":"v0-0"}}]}`)),
			},
			e:        func(e expectation) expectation { e.subscriptions = nil; return e },
			wantKind: "body is not valid JSON",
		},
		{
			name: "bytes changed on the way",
			calls: []*call{
				bodyCall("f", p0, 3, 3, true, 1, []byte(`{"Records":[{"Ckafka":{"topic":"t","partition":0,"offset":3,"msgKey":"None","msgBody":"\ufffd\u0000"}}]}`)),
			},
			e:        func(e expectation) expectation { e.subscriptions = nil; return e },
			wantKind: "record has the wrong fields", // msgBodyEncoding missing
		},
		{
			name: "a record of another partition in the batch",
			calls: []*call{
				func() *call {
					c := madeUpCall(produced, "f", p1, 0, 1, true, 1)
					c.Header.Set("X-Kafka-Partition", "0")
					return c
				}(),
			},
			e:        func(e expectation) expectation { e.subscriptions = nil; return e },
			wantKind: "record of another partition than the batch's headers",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := base
			if tc.e != nil {
				e = tc.e(e)
			}
			v := verify(produced, tc.calls, e)
			problems := strings.Join(v.Problems(), "\n")
			if tc.wantKind == "" && problems != "" {
				t.Errorf("problems found in a correct run:\n%s", problems)
			}
			if tc.wantKind != "" && !strings.Contains(problems, tc.wantKind) {
				t.Errorf("want a problem %q, got:\n%s", tc.wantKind, problems)
			}
			if tc.wantKind == "" && (v.Duplicates != tc.duplicates || v.Replays != tc.replays) {
				t.Errorf("%d duplicates and %d replays, want %d and %d", v.Duplicates, v.Replays, tc.duplicates, tc.replays)
			}
		})
	}
}

func TestDupBoundCountsWhatWasDeliveredBeforeEachKill(t *testing.T) {
	produced := madeUpLog(10)
	calls := []*call{
		madeUpCall(produced, "f", tp{"t", 0}, 0, 4, true, 1),
		madeUpCall(produced, "f", tp{"t", 0}, 5, 9, true, 5),
		madeUpCall(produced, "f", tp{"t", 1}, 0, 9, false, 5),
	}
	if got := dupBound(calls, []time.Time{t0.Add(6 * time.Second)}, 3*time.Second); got != 5 {
		t.Errorf("bound %d, want the 5 records delivered in the 3 s before the kill", got)
	}
}

// Under ordering=key the checker holds order per key: offsets of other keys
// may come in any order, a key's own may not.
func TestCheckerHoldsKeyOrder(t *testing.T) {
	produced := map[tp][]*message{}
	p := tp{"t", 0}
	for i := range 4 { // keys a, b, a, b
		produced[p] = append(produced[p], &message{Key: []byte{"ab"[i%2]}, Value: fmt.Appendf(nil, "v%d", i)})
	}
	e := expectation{subscriptions: map[string][]string{"f": {"t"}}, defaultMax: 100, maxBytes: 1 << 20, keyOrder: true}
	interleaved := []*call{ // b's offset 1, then a's 0 and 2, then b's 3
		madeUpCall(produced, "f", p, 1, 1, true, 1),
		madeUpCall(produced, "f", p, 0, 0, true, 2),
		madeUpCall(produced, "f", p, 2, 3, true, 3),
	}
	if v := verify(produced, interleaved, e); len(v.Problems()) > 0 {
		t.Errorf("keys interleaved in order: %v", v.Problems())
	}
	broken := []*call{ // a's offset 2 before its offset 0
		madeUpCall(produced, "f", p, 1, 2, true, 1),
		madeUpCall(produced, "f", p, 0, 0, true, 2),
		madeUpCall(produced, "f", p, 3, 3, true, 3),
	}
	v := verify(produced, broken, e)
	if !strings.Contains(strings.Join(v.Problems(), "\n"), "key order broken") {
		t.Errorf("a key delivered out of order was not noticed: %v", v.Problems())
	}
}
