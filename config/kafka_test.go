package config

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

// The read-ahead of a trigger's client follows its own batch size and
// budget, and its offsets are flushed at the commit interval.
func TestSaramaReadAheadFollowsTheTrigger(t *testing.T) {
	tests := []struct {
		maxMessages, bufferedBytes int
		commit                     time.Duration
	}{
		{100, 1 << 20, time.Second},
		{10, 256 << 10, 100 * time.Millisecond},
		{1, 1024, 10 * time.Millisecond},
		{10000, types.MaxBufferedBytesLimit, time.Minute},
	}
	for _, tc := range tests {
		c := &Config{CommitInterval: tc.commit, KafkaVersion: "3.6.0"}
		sc := c.Sarama(types.TriggerSettings{MaxMessages: tc.maxMessages, MaxBufferedBytes: tc.bufferedBytes, UpstreamTimeout: time.Minute})
		if err := sc.Validate(); err != nil {
			t.Errorf("%+v: sarama refuses the configuration: %v", tc, err)
		}
		if want := min(tc.maxMessages, 256); sc.ChannelBufferSize != want {
			t.Errorf("%+v: sarama queues %d messages a partition, want %d: max_messages, 256 at most", tc, sc.ChannelBufferSize, want)
		}
		if int(sc.Consumer.Fetch.Default) != tc.bufferedBytes {
			t.Errorf("%+v: fetches of %d bytes, want max_buffered_bytes", tc, sc.Consumer.Fetch.Default)
		}
		// A limit would make sarama skip a message larger than it.
		if sc.Consumer.Fetch.Max != 0 {
			t.Errorf("%+v: Consumer.Fetch.Max %d, want 0 (no limit)", tc, sc.Consumer.Fetch.Max)
		}
		if sc.Consumer.Fetch.MaxBytes < sc.Consumer.Fetch.Default {
			t.Errorf("%+v: responses of at most %d bytes, less than one fetch of %d", tc, sc.Consumer.Fetch.MaxBytes, sc.Consumer.Fetch.Default)
		}
		if sc.Consumer.Offsets.AutoCommit.Interval != tc.commit {
			t.Errorf("%+v: offsets flushed every %v, want commit_interval", tc, sc.Consumer.Offsets.AutoCommit.Interval)
		}
	}
}

// Groups rebalance cooperatively by default, eagerly where the brokers are
// too old for it, and eagerly while a list offers both assignors, which is
// the first step of an upgrade.
func TestAssignorSettings(t *testing.T) {
	tests := []struct {
		env         map[string]string
		strategies  []string // as sarama names them, by preference
		cooperative bool
		badVar      string // when the settings are refused
	}{
		{env: map[string]string{}, strategies: []string{"cooperative-sticky"}, cooperative: true},
		{env: map[string]string{"kafka_version": "2.3.0"}, strategies: []string{"sticky"}},
		{env: map[string]string{"assignor": "sticky"}, strategies: []string{"sticky"}},
		{env: map[string]string{"assignor": "cooperative-sticky, sticky"}, strategies: []string{"cooperative-sticky", "sticky"}},
		{env: map[string]string{"assignor": "sticky,cooperative-sticky", "kafka_version": "2.1.0"}, strategies: []string{"sticky", "cooperative-sticky"}},
		{env: map[string]string{"assignor": "cooperative-sticky", "kafka_version": "2.3.0"}, badVar: "assignor"},
		{env: map[string]string{"assignor": "eager"}, badVar: "assignor"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := FromEnv()
			if tc.badVar != "" {
				var ce *Error
				if !errors.As(err, &ce) || ce.Var != tc.badVar {
					t.Fatalf("error %v, want one naming %s", err, tc.badVar)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sc := c.Sarama(c.Trigger())
			if err := sc.Validate(); err != nil {
				t.Fatalf("sarama refuses the configuration: %v", err)
			}
			var names []string
			for _, s := range sc.Consumer.Group.Rebalance.GroupStrategies {
				names = append(names, s.Name())
			}
			if !slices.Equal(names, tc.strategies) || c.cooperative() != tc.cooperative {
				t.Errorf("assignors %q, cooperative %v; want %q, %v", names, c.cooperative(), tc.strategies, tc.cooperative)
			}
		})
	}
}
