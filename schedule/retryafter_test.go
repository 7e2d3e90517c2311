package schedule

import (
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ceiling := time.Minute
	tests := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"60", time.Minute, true},
		{"61", time.Minute, true},                      // capped
		{"86400", time.Minute, true},                   // capped
		{"99999999999999999999999", time.Minute, true}, // past int64: capped, not wrapped
		{"Mon, 30 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Monday, 30-Nov-26 12:00:30 GMT", 30 * time.Second, true}, // RFC 850
		{"Mon Nov 30 12:00:30 2026", 30 * time.Second, true},       // asctime
		{"Mon, 30 Nov 2026 13:00:00 GMT", time.Minute, true},       // capped
		{"Mon, 30 Nov 2026 11:00:00 GMT", 0, true},                 // past: no wait
		{"", 0, false},
		{"   ", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"2026-11-30T12:00:30Z", 0, false},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.value, now, ceiling)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RetryAfter(%q) = %v %v, want %v %v", tt.value, got, ok, tt.want, tt.ok)
		}
	}
	if got, _ := RetryAfter("5", now, 1500*time.Millisecond); got != 1500*time.Millisecond {
		t.Errorf("a ceiling of 1.5s let %v through", got)
	}
	if got, _ := RetryAfter("5", now, 0); got != 0 {
		t.Errorf("a ceiling of 0 let %v through", got)
	}
}

func TestBackPressure(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		status     int
		retryAfter string
		want       time.Duration
		ok         bool
	}{
		{429, "3", 3 * time.Second, true},
		{429, "", 0, true},     // slow down, by the usual backoff
		{429, "soon", 0, true}, // still slow down
		{429, "3600", 10 * time.Second, true},
		{503, "3", 3 * time.Second, true},
		{503, "0", 0, true},
		{503, "", 0, false},     // an unavailable function is a failure
		{503, "soon", 0, false}, // so is an unreadable Retry-After
		{500, "3", 0, false},
		{502, "3", 0, false},
		{200, "3", 0, false},
	}
	for _, tt := range tests {
		got, ok := BackPressure(tt.status, tt.retryAfter, now, 10*time.Second)
		if got != tt.want || ok != tt.ok {
			t.Errorf("BackPressure(%d, %q) = %v %v, want %v %v", tt.status, tt.retryAfter, got, ok, tt.want, tt.ok)
		}
	}
}
