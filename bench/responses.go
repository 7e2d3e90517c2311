package main

import (
	"bytes"
	"fmt"
	"strings"
)

// The response-topic phases: the connector with max_messages=100, as the
// row they are compared with, and a function that answers a record for
// every message it receives, written to a response topic at least once and
// exactly once.
const respondMaxMessages = 100

var respondPhases = []struct {
	name string
	env  []string
}{
	{"response topic, at-least-once", []string{"response_topic=" + topicAnswers, "response_delivery=at-least-once"}},
	{"response topic, exactly-once", []string{"response_topic=" + topicAnswers, "response_delivery=exactly-once"}},
}

// answerRecord is the record the function answers for each message: about
// as long as the messages themselves.
const answerRecord = `{"value":"the answer to one message of the benchmark's backlog, about 100 bytes long"}`

// reply is the function's answer to n messages: nothing, or a record each.
func (s *sink) reply(n int) []byte {
	if !s.answer {
		return nil
	}
	var b bytes.Buffer
	b.Grow(len(`{"records":[]}`) + n*(len(answerRecord)+1))
	b.WriteString(`{"records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(answerRecord)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// respond runs the response-topic phases, right after the plain row they
// are compared with.
func (b *bench) respond(r int, rr *runResult) error {
	for _, rp := range respondPhases {
		p, err := b.throughput(r, phaseSpec{name: rp.name, topic: topicBacklog, maxMessages: respondMaxMessages,
			target: b.n, size: b.size, env: rp.env, answer: true})
		if err != nil {
			return fmt.Errorf("connector, %s: %w", rp.name, err)
		}
		rr.answers = append(rr.answers, p)
	}
	return nil
}

// respondTable compares the response-topic phases with the plain
// max_messages=100 row of the same runs: the median of the runs' ratios.
func respondTable(o options, runs []runResult) string {
	var b strings.Builder
	for i, rp := range respondPhases {
		var ratios, rates []float64
		for _, rr := range runs {
			plain := rr.batches[respondMaxMessages]
			if i >= len(rr.answers) || plain == nil {
				continue
			}
			ratios = append(ratios, rr.answers[i].rate()/plain.rate())
			rates = append(rates, rr.answers[i].rate())
		}
		if len(ratios) == 0 {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\n| max_messages=%d, a record answered for each of %d messages | messages/s | × the plain max_messages=%d row |\n|---|--:|--:|\n",
				respondMaxMessages, o.n, respondMaxMessages)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.2f×%s |\n", rp.name, median(rates), median(ratios),
			spread(ratios, func(x float64) string { return fmt.Sprintf("%.2f×", x) }))
	}
	return b.String()
}
