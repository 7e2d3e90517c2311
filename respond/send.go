package respond

import (
	"errors"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
)

// WriteError is a write of which some records were not acknowledged.
// sarama's own error for it says only how many failed; this one says why,
// once per cause, and lets errors.Is find each cause.
type WriteError struct {
	Failed, Sent int
	// What names the records in the message: "records", "dead letters".
	What   string
	Causes []error
}

func newWriteError(pes sarama.ProducerErrors, sent int, what string) *WriteError {
	e := &WriteError{Failed: len(pes), Sent: sent, What: what}
	seen := make(map[string]bool)
	for _, pe := range pes {
		if text := pe.Err.Error(); !seen[text] {
			seen[text] = true
			e.Causes = append(e.Causes, pe.Err)
		}
	}
	return e
}

func (e *WriteError) Error() string {
	causes := make([]string, len(e.Causes))
	for i, c := range e.Causes {
		causes[i] = c.Error()
	}
	return fmt.Sprintf("%d of %d %s not written: %s", e.Failed, e.Sent, e.What, strings.Join(causes, "; "))
}

func (e *WriteError) Unwrap() []error { return e.Causes }

// Send sends msgs with p and waits for the brokers' acknowledgement; a
// send that fails in part is a *WriteError, its records named what.
func Send(p sarama.SyncProducer, msgs []*sarama.ProducerMessage, what string) error {
	err := p.SendMessages(msgs)
	var pes sarama.ProducerErrors
	if errors.As(err, &pes) {
		return newWriteError(pes, len(msgs), what)
	}
	return err
}
