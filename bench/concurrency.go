package main

import (
	"fmt"
	"strings"
	"time"
)

// The concurrency comparison: a function that takes concDelay a call, on
// the 12 partitions of a backlog of concKeys distinct keys, max_messages=10.
// One invocation in flight a partition delivers at most partitions x 10 /
// 20 ms messages a second (6,000 for 12 partitions), however far the
// function scales; ordering=key and none go past that.
const (
	concDelay = 20 * time.Millisecond
	concKeys  = 1000
)

// concPhases are the phases of the comparison, in the order they run.
// The last one has a function that answers at once, to compare with the
// invocations a second of max_messages=1 under ordering=partition.
var concPhases = []struct {
	name        string
	maxMessages int
	slow        time.Duration
	env         []string
}{
	{"ordering=partition, max_messages=10", 10, concDelay, []string{"ordering=partition"}},
	{"ordering=key, concurrency=16, max_messages=10", 10, concDelay, []string{"ordering=key", "concurrency=16"}},
	{"ordering=none, concurrency=16, max_messages=10", 10, concDelay, []string{"ordering=none", "concurrency=16"}},
	{"ordering=none, concurrency=16, max_messages=1", 1, concDelay, []string{"ordering=none", "concurrency=16"}},
	{"ordering=none, concurrency=16, max_messages=1, a function answering at once", 1, 0, []string{"ordering=none", "concurrency=16"}},
}

// concBound is the partition-serial bound of a phase: one call of
// concDelay at a time in each partition.
func concBound(partitions, maxMessages int) float64 {
	return float64(partitions*maxMessages) / concDelay.Seconds()
}

// concTable is the comparison's part of the report, from the first run.
func concTable(o options, runs []runResult) string {
	if len(runs) == 0 || len(runs[0].conc) != len(concPhases) {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| a function of %v a call, %d partitions, %d keys, %d messages | messages/s | invocations/s | × the partition-serial bound | peak RSS |\n|---|--:|--:|--:|--:|\n",
		concDelay, o.partitions, concKeys, o.concN)
	for i, cp := range concPhases {
		p := runs[0].conc[i]
		ratio := "–"
		if cp.slow > 0 {
			bound := concBound(o.partitions, cp.maxMessages)
			ratio = fmt.Sprintf("%.1f× (bound %.0f msg/s)", p.rate()/bound, bound)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s | %.0f MiB |\n", cp.name, p.rate(), p.invocationRate(), ratio, mib(p.peakRSS))
	}
	return b.String()
}
