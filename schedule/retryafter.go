package schedule

import (
	"strings"
	"time"
)

// The HTTP-date forms a Retry-After may take (RFC 9110, section 5.6.7): the
// preferred one, and the two obsolete ones that recipients must accept.
var httpDates = [...]string{
	"Mon, 02 Jan 2006 15:04:05 GMT",
	"Monday, 02-Jan-06 15:04:05 GMT",
	"Mon Jan _2 15:04:05 2006",
}

// RetryAfter reads a Retry-After value, a number of seconds or an HTTP
// date, as the time to wait from now, capped at ceiling: a server cannot
// stall a partition for longer than retry_backoff_max. A date in the past
// is no wait. It reports false for an empty or unreadable value.
func RetryAfter(value string, now time.Time, ceiling time.Duration) (time.Duration, bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, ok := delaySeconds(v); ok {
		d = ceiling
		if secs < int64(ceiling/time.Second)+1 {
			d = time.Duration(secs) * time.Second
		}
	} else {
		t, ok := parseHTTPDate(v)
		if !ok {
			return 0, false
		}
		d = max(t.Sub(now), 0)
	}
	return max(min(d, ceiling), 0), true
}

// delaySeconds reads 1*DIGIT; a value too large for int64 is as good as
// infinite.
func delaySeconds(v string) (int64, bool) {
	var n int64
	for i := range len(v) {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<62)/10 {
			n = 1 << 62
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func parseHTTPDate(v string) (time.Time, bool) {
	for _, layout := range httpDates {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// BackPressure reports whether an answer asks the caller to slow down
// rather than saying the batch is bad, and how long to wait at least: a
// 429, with or without Retry-After, or a 503 with a readable Retry-After.
// The wait is the Retry-After capped at ceiling, or 0 when there is none;
// the caller waits the longer of it and its usual backoff, lowers its
// limit (Throttled), and does not count the attempt against max_retries.
// Any other status is not back-pressure.
func BackPressure(status int, retryAfter string, now time.Time, ceiling time.Duration) (time.Duration, bool) {
	switch status {
	case 429:
		d, _ := RetryAfter(retryAfter, now, ceiling)
		return d, true
	case 503:
		return RetryAfter(retryAfter, now, ceiling)
	}
	return 0, false
}
