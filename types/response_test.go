package types

import (
	"errors"
	"strings"
	"testing"

	"github.com/kafka-connector/kafka-connector/schedule"
)

func TestResponseAnnotations(t *testing.T) {
	base := TriggerSettings{Enabled: true, Group: "g", MaxMessages: 100, MaxRetries: -1, ResponseDelivery: AtLeastOnce}
	exactly := base
	exactly.ResponseDelivery = ExactlyOnce
	exactly.ResponseTopic = "out"
	async := base
	async.Async = true
	tests := []struct {
		base        TriggerSettings
		annotations map[string]string
		topic       string
		delivery    ResponseDelivery
		bad         string // the annotation named in the error, if any
	}{
		{base: base, annotations: map[string]string{"kafka-response-topic": " payments.ok "}, topic: "payments.ok", delivery: AtLeastOnce},
		{base: base, annotations: map[string]string{"kafka-response-topic": "out", "kafka-response-delivery": "exactly-once"}, topic: "out", delivery: ExactlyOnce},
		{base: exactly, annotations: map[string]string{"kafka-response-delivery": "at-least-once", "kafka-ordering": "key"}, topic: "out", delivery: AtLeastOnce},
		{base: base, annotations: map[string]string{"kafka-response-topic": "bad topic"}, bad: "kafka-response-topic"},
		{base: base, annotations: map[string]string{"kafka-response-delivery": "once"}, bad: "kafka-response-delivery"},
		{base: base, annotations: map[string]string{"kafka-response-topic": "out", "kafka-response-delivery": "exactly-once", "kafka-ordering": "key"}, bad: "kafka-response-delivery"},
		{base: exactly, annotations: map[string]string{"kafka-ordering": "none"}, bad: "kafka-ordering"},
		{base: async, annotations: map[string]string{"kafka-response-topic": "out"}, bad: "kafka-response-topic"},
	}
	for _, tc := range tests {
		got, err := tc.base.WithAnnotations(tc.annotations)
		if tc.bad != "" {
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Annotation != tc.bad || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%v: error %v, want one naming %s", tc.annotations, err, tc.bad)
			}
			continue
		}
		if err != nil || got.ResponseTopic != tc.topic || got.ResponseDelivery != tc.delivery {
			t.Errorf("%v: got topic %q, delivery %q, %v", tc.annotations, got.ResponseTopic, got.ResponseDelivery, err)
		}
	}
	if err := (TriggerSettings{ResponseDelivery: ExactlyOnce, Ordering: schedule.OrderKey}).CheckResponse(); err != nil {
		t.Errorf("without a response topic the delivery does not matter: %v", err)
	}
}
