package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/kafka-connector/kafka-connector/config"
)

func TestBadConfigurationExitsWithStatus2AndOneLine(t *testing.T) {
	tests := []struct{ name, value string }{
		{"max_messages", "0"},
		{"initial_offset", "beginning"},
		{"max_wait", "forever"},
		{"upstream_timeout", "10"},
		{"basic_auth", "true"}, // with no secrets to read
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range config.Names() {
				t.Setenv(n, "")
				os.Unsetenv(n)
				t.Setenv(strings.ToUpper(n), "")
				os.Unsetenv(strings.ToUpper(n))
			}
			t.Setenv("secret_mount_path", t.TempDir())
			t.Setenv(tc.name, tc.value)
			var stdout, stderr bytes.Buffer
			code := run(nil, nil, &stdout, &stderr)
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
		code := run(tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("%q: status %d, output %q; want %d and %q", tc.args, code, stdout.String()+stderr.String(), tc.code, tc.out)
		}
	}
}
