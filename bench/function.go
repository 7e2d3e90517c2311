package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/types"
)

// sink is the trivial function the connector feeds: it checks that every
// event decodes, counts its records and answers 200. It says when it has
// received target records.
type sink struct {
	target int64 // records; 0 for no target
	size   int   // the length every record's body must have
	// decodeAll decodes every event into types.Event and checks every
	// record. Without it, every event is validated (json.Valid) and its
	// records counted, and one event in decodeEvery is decoded and checked
	// in full: on a machine of two cores the function shares the CPU with
	// the connector, and decoding every record with encoding/json would
	// take most of it, measuring the function more than the connector.
	decodeAll bool

	// keyOrder, when set, holds for each key number (see keyOf) the
	// highest stamp received: every event is decoded, and a record whose
	// stamp is lower than its key's counts as out of order. The stamp of a
	// keyed backlog is the offset order within a key (see produceKeyed),
	// and a record is counted before its call is answered, so before the
	// next batch of its key can start.
	keyOrder   []int64
	orderMu    sync.Mutex
	outOfOrder atomic.Int64

	records, invocations, bad atomic.Int64

	done    chan struct{}
	endOnce sync.Once
	end     time.Time // when the target was reached

	// checkpoint, when not 0, is a number of records before the target;
	// passed is closed when it is reached.
	checkpoint int64
	passed     chan struct{}
	passOnce   sync.Once

	// check, when set, is what the body of every record decoded must
	// satisfy: that a filter passed only what it should.
	check func(body string) bool

	// delay, when set, is called with the produce-to-invoke delay of each
	// record, for bodies that start with their produce time.
	delay func(producedAt, now time.Time)

	// slow is how long every call takes, as a function doing real work
	// does: the connector then reads far ahead of what it delivers.
	slow time.Duration
	// answer, when set, answers a record for each message received.
	answer bool
}

func newSink(target, size int) *sink {
	return &sink{target: int64(target), size: size, done: make(chan struct{}), passed: make(chan struct{})}
}

var recordStart = []byte(`{"Ckafka":`)

// decodeEvery is how often, without decodeAll, an event is decoded in full.
const decodeEvery = 64

func (s *sink) handle(c *gatewaytest.Call) (int, []byte) {
	if s.slow > 0 {
		select {
		case <-time.After(s.slow):
		case <-c.Context().Done():
		}
	}
	now := time.Now()
	if !s.decodeAll && s.delay == nil && s.keyOrder == nil && s.invocations.Load()%decodeEvery != 0 {
		// A quote inside a JSON string is always escaped, so in a valid
		// event this counts the records exactly.
		n := bytes.Count(c.Body, recordStart)
		if n == 0 || !json.Valid(c.Body) {
			s.bad.Add(1)
			return http.StatusOK, nil
		}
		s.count(n, now)
		return http.StatusOK, s.reply(n)
	}
	e, err := c.Event()
	if err != nil || len(e.Records) == 0 {
		s.bad.Add(1)
		return http.StatusOK, nil // counted as a failure of the run, not retried
	}
	if s.keyOrder != nil {
		s.checkKeyOrder(e.Records)
	}
	for _, r := range e.Records {
		if len(r.Ckafka.MsgBody) != s.size || r.Ckafka.MsgBodyEncoding != "" || s.check != nil && !s.check(r.Ckafka.MsgBody) {
			s.bad.Add(1)
		}
		if s.delay != nil {
			stamp, _, _ := strings.Cut(r.Ckafka.MsgBody, " ")
			if ns, err := strconv.ParseInt(stamp, 10, 64); err == nil {
				s.delay(time.Unix(0, ns), now)
			}
		}
	}
	s.count(len(e.Records), now)
	return http.StatusOK, s.reply(len(e.Records))
}

func (s *sink) checkKeyOrder(records []types.EventRecord) {
	s.orderMu.Lock()
	defer s.orderMu.Unlock()
	for _, r := range records {
		k, ok := keyNumber(r.Ckafka.MsgKey)
		stamp, _, _ := strings.Cut(r.Ckafka.MsgBody, " ")
		n, err := strconv.ParseInt(stamp, 10, 64)
		if !ok || k >= len(s.keyOrder) || err != nil {
			s.bad.Add(1)
			continue
		}
		if n < s.keyOrder[k] {
			s.outOfOrder.Add(1)
		}
		s.keyOrder[k] = max(s.keyOrder[k], n)
	}
}

// count records an invocation of n records received at now.
func (s *sink) count(n int, now time.Time) {
	s.invocations.Add(1)
	total := s.records.Add(int64(n))
	if s.checkpoint > 0 && total >= s.checkpoint {
		s.passOnce.Do(func() { close(s.passed) })
	}
	if s.target > 0 && total >= s.target {
		s.endOnce.Do(func() {
			s.end = now
			close(s.done)
		})
	}
}
