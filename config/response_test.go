package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/kafka-connector/kafka-connector/types"
)

func TestResponseSettings(t *testing.T) {
	tests := []struct {
		env     map[string]string
		bad     string // the variable named in the error, if any
		topic   string
		exactly bool
	}{
		{env: map[string]string{}},
		{env: map[string]string{"response_topic": "orders.enriched"}, topic: "orders.enriched"},
		{env: map[string]string{"response_topic": "out", "response_delivery": "exactly-once"}, topic: "out", exactly: true},
		{env: map[string]string{"RESPONSE_DELIVERY": " exactly-once "}, exactly: true},
		{env: map[string]string{"response_delivery": "twice"}, bad: "response_delivery"},
		{env: map[string]string{"response_delivery": ""}, bad: "response_delivery"},
		{env: map[string]string{"response_topic": "no spaces"}, bad: "response_topic"},
		{env: map[string]string{"response_delivery": "exactly-once", "ordering": "key"}, bad: "response_delivery"},
		{env: map[string]string{"response_delivery": "exactly-once", "ordering": "none"}, bad: "response_delivery"},
		{env: map[string]string{"response_topic": "out", "asynchronous_invocation": "true"}, bad: "response_topic"},
		{env: map[string]string{"response_topic": "out", "ordering": "key"}, topic: "out"},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(strconv.Quote(strings.TrimSpace(fmtEnv(tc.env))), "/", "|"), func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := FromEnv()
			if tc.bad != "" {
				var ce *Error
				if !errors.As(err, &ce) || ce.Var != tc.bad || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line naming %s", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := c.Trigger()
			if s.ResponseTopic != tc.topic || (s.ResponseDelivery == types.ExactlyOnce) != tc.exactly {
				t.Errorf("response topic %q, delivery %q", s.ResponseTopic, s.ResponseDelivery)
			}
		})
	}
}

func fmtEnv(env map[string]string) string {
	var parts []string
	for k, v := range env {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

// The response producers follow the consumer's security settings and wait
// for every in-sync replica; the transactional one is idempotent, has its
// id and a timeout longer than an invocation and a commit interval.
func TestSaramaResponse(t *testing.T) {
	clearEnv(t)
	t.Setenv("sasl_mechanism", "PLAIN")
	t.Setenv("sasl_username", "connector")
	t.Setenv("sasl_password", "secret")
	t.Setenv("upstream_timeout", "5m")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	s := c.Trigger()
	for _, id := range []string{"", "g-orders-3"} {
		sc := c.SaramaResponse(s, id)
		if !sc.Net.SASL.Enable || sc.Net.SASL.User != "connector" || sc.Net.SASL.Password != "secret" {
			t.Errorf("%q: SASL not as the consumer's", id)
		}
		if sc.Producer.RequiredAcks != sarama.WaitForAll || sc.Producer.Idempotent != (id != "") || sc.Producer.Transaction.ID != id {
			t.Errorf("%q: acks %v, idempotent %v, transactional id %q", id, sc.Producer.RequiredAcks, sc.Producer.Idempotent, sc.Producer.Transaction.ID)
		}
		if err := sc.Validate(); err != nil {
			t.Errorf("%q: sarama refuses the configuration: %v", id, err)
		}
	}
	if got := c.SaramaResponse(s, "g-orders-3").Producer.Transaction.Timeout; got <= s.UpstreamTimeout+c.CommitInterval {
		t.Errorf("transaction timeout %v: a transaction open through one invocation and a commit interval would be aborted", got)
	}
}
