package connector

import (
	"log/slog"
	"sync"
	"time"
)

// throttleLogEvery spaces the info lines about back-pressure: a function at
// its limit answers 429 to many calls a second, each a wait and not a
// failure, and a line for each would bury the log.
const throttleLogEvery = time.Minute

// throttleLog counts a trigger's back-pressure waits between two info
// lines. Its batches in flight share it.
type throttleLog struct {
	mu    sync.Mutex
	next  time.Time // the earliest time of the next info line
	waits int       // since the last info line
}

// throttled logs one back-pressure wait: at debug level always, and at
// info level at most once every throttleLogEvery, with how many waits
// there were since the last such line.
func (t *trigger) throttled(log *slog.Logger, attempt int, failure string, delay time.Duration, partitionLimit int) {
	log.Debug("the function asks to slow down; waiting, without counting it as a retry", "attempt", attempt,
		"failure", failure, "retry_in", delay.Round(time.Millisecond), "partition_limit", partitionLimit)
	l := &t.throttleLog
	now := time.Now()
	l.mu.Lock()
	l.waits++
	if now.Before(l.next) {
		l.mu.Unlock()
		return
	}
	waits := l.waits
	l.waits, l.next = 0, now.Add(throttleLogEvery)
	l.mu.Unlock()
	log.Info("the function asks to slow down (back-pressure); batches wait as it asks, not counted as failures or retries",
		"waits", waits, "failure", failure, "retry_in", delay.Round(time.Millisecond), "partition_limit", partitionLimit,
		"function_limit", t.inflight.Limit(), "next_line_in", throttleLogEvery)
}
