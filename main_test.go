package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/devmode"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// clearEnv unsets every variable the connector reads, in both spellings,
// until the test ends.
func clearEnv(t *testing.T) {
	for _, n := range config.Names() {
		for _, spelling := range []string{n, strings.ToUpper(n)} {
			t.Setenv(spelling, "")
			os.Unsetenv(spelling)
		}
	}
}

func TestBadConfigurationExitsWithStatus2AndOneLine(t *testing.T) {
	tests := []struct{ name, value string }{
		{"max_messages", "0"},
		{"initial_offset", "beginning"},
		{"max_wait", "forever"},
		{"upstream_timeout", "10"},
		{"basic_auth", "true"}, // with no secrets to read
		{"value_format", "avro"},
		{"key_format", "schema-registry"}, // with no schema_registry_url
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
		{"OTEL_TRACES_SAMPLER", "jaeger_remote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("secret_mount_path", t.TempDir())
			t.Setenv(tc.name, tc.value)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), nil, nil, nil, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Count(out, "\n") != 0 || !strings.Contains(out, tc.name) {
				t.Errorf("stderr %q: want one line naming %s", out, tc.name)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"version"}, 0, "kafka-connector dev"},
		{[]string{"help"}, 0, "usage:"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"produce", "-topic", "bad topic"}, 2, "-topic"},
		{[]string{"dev", "-no-such-flag"}, 2, "no-such-flag"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), nil, tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("%q: status %d, output %q; want %d and %q", tc.args, code, stdout.String()+stderr.String(), tc.code, tc.out)
		}
	}
}

// Dev mode serves the endpoints production serves, the metrics included,
// and says where. It runs beside local services that may hold http_addr
// (the default :8081 is the faasd provider's): then it serves them on a
// free port instead.
func TestDevModeServesTheEndpointsOfProduction(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct{ name, httpAddr string }{
		{"free http_addr", "127.0.0.1:0"},
		{"http_addr taken", taken.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("http_addr", tc.httpAddr)
			var stdout, stderr testkit.SyncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			exited := make(chan int, 1)
			go func() {
				exited <- run(ctx, nil, []string{"dev", "-kafka-addr", "127.0.0.1:0", "-gateway-addr", "127.0.0.1:0"}, nil, &stdout, &stderr)
			}()

			served := regexp.MustCompile(`msg="serving /healthz, /readyz and /metrics" url=(\S+)`)
			var url string
			testkit.Eventually(t, 30*time.Second, func() bool {
				select {
				case code := <-exited:
					t.Fatalf("dev mode exited with %d:\n%s", code, stderr.String())
				default:
				}
				if m := served.FindStringSubmatch(stderr.String()); m != nil {
					url = m[1]
				}
				return url != ""
			}, "dev mode says where it serves its endpoints:\n%s", stderr.String())
			if tc.httpAddr == taken.Addr().String() {
				if url == "http://"+taken.Addr().String() {
					t.Fatalf("dev mode says it serves on %s, the port that is taken", url)
				}
				if !strings.Contains(stderr.String(), "http_addr cannot be used") {
					t.Errorf("no warning that http_addr is taken:\n%s", stderr.String())
				}
			}
			testkit.Eventually(t, 30*time.Second, func() bool {
				resp, err := http.Get(url + "/metrics")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode == http.StatusOK && strings.Contains(string(b), `kafka_connector_batches_delivered_total{function="echo",topic="faas-request"}`)
			}, "the metrics of the demo function's deliveries at %s/metrics", url)
			resp, err := http.Get(url + "/readyz")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("/readyz: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
			cancel()
			if code := <-exited; code != 0 {
				t.Errorf("dev mode exited with %d, want 0:\n%s", code, stderr.String())
			}
		})
	}
}

// TestDevModeWithAGatewayFeedsItsTopicOnly: against a real gateway, dev
// mode feeds the functions of its own topic, not every function the
// gateway lists.
func TestDevModeWithAGatewayFeedsItsTopicOnly(t *testing.T) {
	clearEnv(t)
	t.Setenv("http_addr", "127.0.0.1:0")
	gw, url := testkit.Gateway(t)
	gw.SetFunctions(
		types.Function{Name: "fed", Annotations: map[string]string{"topic": devmode.DemoTopic}},
		types.Function{Name: "elsewhere", Annotations: map[string]string{"topic": "orders"}},
	)
	var stdout, stderr testkit.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, nil, []string{"dev", "-kafka-addr", "127.0.0.1:0", "-gateway", url}, nil, &stdout, &stderr)
	}()
	testkit.Eventually(t, 30*time.Second, func() bool { return len(gw.Calls("fed")) > 0 }, "the function of the dev topic is fed:\n%s", stderr.String())
	if strings.Contains(stderr.String(), `function=elsewhere`) {
		t.Errorf("dev mode started a trigger for a function of another topic:\n%s", stderr.String())
	}
	cancel()
	if code := <-exited; code != 0 {
		t.Errorf("dev mode exited with %d, want 0:\n%s", code, stderr.String())
	}
}
