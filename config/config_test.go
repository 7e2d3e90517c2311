package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/schedule"
)

// clearEnv unsets every variable the connector reads, in both spellings,
// for the duration of the test.
func clearEnv(t *testing.T) {
	for _, name := range append(Names(), "broker_host") {
		for _, n := range []string{name, strings.ToUpper(name)} {
			if v, ok := os.LookupEnv(n); ok {
				os.Unsetenv(n)
				t.Cleanup(func() { os.Setenv(n, v) })
			}
		}
	}
	// os.Setenv in FromEnv copies names up; undo that too.
	t.Cleanup(func() {
		for _, name := range append(Names(), "broker_host") {
			os.Unsetenv(strings.ToUpper(name))
		}
	})
}

func TestDefaults(t *testing.T) {
	clearEnv(t)
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.GatewayURL != "http://gateway:8080" || !slices.Equal(c.Brokers, []string{"kafka:9092"}) ||
		c.Group != "kafka-connector" || c.MaxMessages != 100 || c.MaxWait != time.Second ||
		c.MaxBytes != 6291456 || c.UpstreamTimeout != time.Minute || c.RebuildInterval != 30*time.Second ||
		c.RetryBackoffInitial != 500*time.Millisecond || c.RetryBackoffMax != time.Minute || c.MaxRetries != -1 ||
		c.ContentType != "application/json" || c.HTTPAddr != ":8081" || c.ShutdownTimeout != 30*time.Second ||
		c.InitialOffset.Earliest || !c.InitialOffset.At.IsZero() || c.TopicDelimiter != "," || len(c.Topics) != 0 ||
		c.MaxBufferedBytes != 1<<20 || c.CommitInterval != time.Second {
		t.Errorf("defaults: %+v", c)
	}
}

func TestOrderingSettings(t *testing.T) {
	tests := []struct {
		env      map[string]string
		ordering schedule.Ordering
		inFlight int // per partition
		max      int
	}{
		{map[string]string{}, schedule.OrderPartition, 1, 0},
		{map[string]string{"ordering": "partition", "concurrency": "1"}, schedule.OrderPartition, 1, 0},
		{map[string]string{"ordering": "key"}, schedule.OrderKey, 10, 0},
		{map[string]string{"ordering": "none", "concurrency": "16", "max_inflight": "50"}, schedule.OrderNone, 16, 50},
		{map[string]string{"ORDERING": "Key", "CONCURRENCY": "1000"}, schedule.OrderKey, 1000, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			s := c.Trigger()
			if s.Ordering != tc.ordering || s.InFlightPerPartition() != tc.inFlight || s.MaxInflight != tc.max {
				t.Errorf("ordering %v, %d in flight a partition, max_inflight %d; want %v, %d, %d",
					s.Ordering, s.InFlightPerPartition(), s.MaxInflight, tc.ordering, tc.inFlight, tc.max)
			}
		})
	}
}

func TestNamesInEitherCase(t *testing.T) {
	clearEnv(t)
	t.Setenv("broker_host", "a:1, b:2")
	t.Setenv("MAX_MESSAGES", "5")
	t.Setenv("topics", "orders, ,payments")
	t.Setenv("initial_offset", "oldest")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Brokers, []string{"a:1", "b:2"}) {
		t.Errorf("brokers from broker_host: %q", c.Brokers)
	}
	if c.MaxMessages != 5 {
		t.Errorf("max_messages from MAX_MESSAGES: %d", c.MaxMessages)
	}
	if !slices.Equal(c.Topics, []string{"orders", "payments"}) {
		t.Errorf("topics: %q", c.Topics)
	}
	if !c.InitialOffset.Earliest {
		t.Errorf("initial_offset=oldest gave %v", c.InitialOffset)
	}
}

func TestBadValuesNameTheVariableAndValue(t *testing.T) {
	tests := []struct{ name, value string }{
		{"max_messages", "0"},
		{"max_messages", "10001"},
		{"max_messages", "lots"},
		{"max_wait", "61s"},
		{"max_wait", "-1s"},
		{"max_wait", "soon"},
		{"initial_offset", "beginning"},
		{"max_bytes", "10"},
		{"max_buffered_bytes", "1023"},
		{"max_buffered_bytes", "52428801"},
		{"max_buffered_bytes", "1MiB"},
		{"commit_interval", "0s"},
		{"commit_interval", "5ms"},
		{"commit_interval", "2m"},
		{"commit_interval", "often"},
		{"upstream_timeout", "0s"},
		{"rebuild_interval", "1ms"},
		{"retry_backoff_initial", "0s"},
		{"retry_backoff_max", "1ms"},
		{"max_retries", "-2"},
		{"basic_auth", "yes please"},
		{"gateway_invoke_auth", "yes please"},
		{"gateway_invoke_auth", "true"}, // without basic_auth: nothing to send
		{"log_format", "xml"},
		{"log_level", "loud"},
		{"gateway_url", "gateway:8080"},
		{"broker_hosts", "kafka"},
		{"broker_hosts", "kafka:port"},
		{"broker_hosts", " , "},
		{"topic_delimiter", ""},
		{"dead_letter_topic", "no spaces"},
		{"callback_url", "ftp://x"},
		{"shutdown_timeout", "-5s"},
		{"content_type", "application/json\r\nX-Injected: 1"},
		{"content_type", "not a type"},
		{"http_addr", "8081"},
		{"kafka_version", "0.10.2.0"},
		{"kafka_version", "latest"},
		{"ordering", "random"},
		{"concurrency", "0"},
		{"concurrency", "1001"},
		{"concurrency", "-1"},
		{"concurrency", "many"},
		{"concurrency", "16"}, // with the default ordering=partition
		{"max_inflight", "-1"},
		{"max_inflight", "100001"},
		{"max_inflight", "some"},
		{"assignor", "range"},
		{"assignor", "sticky,sticky"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tc.name, tc.value)
			_, err := FromEnv()
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a *config.Error", err)
			}
			msg := err.Error()
			if ce.Var != tc.name || !strings.Contains(msg, tc.name) || !strings.Contains(msg, strconv.Quote(tc.value)) || ce.Allowed == "" {
				t.Errorf("message %q should name %s, the value %q and what is allowed", msg, tc.name, tc.value)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q is more than one line", msg)
			}
		})
	}
}

func TestGatewaySecrets(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "basic-auth-user"), []byte("admin\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "basic-auth-password"), []byte("s3cret-value\n"), 0o600)

	clearEnv(t)
	t.Setenv("basic_auth", "true")
	t.Setenv("secret_mount_path", dir)
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.GatewayUser != "admin" || c.GatewayPassword != "s3cret-value" {
		t.Errorf("credentials %q/%q", c.GatewayUser, c.GatewayPassword)
	}
	if s := c.LogValue().String(); strings.Contains(s, "s3cret-value") {
		t.Errorf("the configuration summary shows the password: %s", s)
	}
	if gw := c.Gateway(); gw.Username != "admin" || gw.Password != "s3cret-value" || gw.InvokeAuth {
		t.Errorf("gateway client with %q/%q, invoke auth %v: want the credentials, not on invocations", gw.Username, gw.Password, gw.InvokeAuth)
	}
	t.Setenv("gateway_invoke_auth", "true")
	if c, err := FromEnv(); err != nil || !c.Gateway().InvokeAuth {
		t.Errorf("gateway_invoke_auth=true: %v, want a client that sends the credentials on invocations", err)
	}
	os.Unsetenv("gateway_invoke_auth")
	os.Unsetenv("GATEWAY_INVOKE_AUTH")

	t.Setenv("secret_mount_path", filepath.Join(dir, "missing"))
	_, err = FromEnv()
	var ce *Error
	if !errors.As(err, &ce) || ce.Var != "secret_mount_path" {
		t.Errorf("missing secrets: %v, want an error naming secret_mount_path", err)
	}
}
