package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The concurrency comparison: a function that takes concDelay a call, on
// the 12 partitions of a backlog of keyed messages placed by Kafka's
// default partitioner (see produceKeyed), max_messages=10. One invocation
// in flight a partition delivers at most partitions x 10 / 20 ms messages a
// second (6,000 for 12 partitions), however far the function scales;
// ordering=key and none go past that.
const concDelay = 20 * time.Millisecond

// concPhase is one phase of the comparison.
type concPhase struct {
	name        string
	maxMessages int
	slow        time.Duration
	env         []string
	// keyed phases check that every key's messages arrive in their order.
	keyed bool
}

// concPhases are the phases of the comparison over the first key count of
// -concurrency-keys, in the order they run. The last one has a function
// that answers at once, to compare with the invocations a second of
// max_messages=1 under ordering=partition.
var concPhases = []concPhase{
	{"ordering=partition, max_messages=10", 10, concDelay, []string{"ordering=partition"}, true},
	concKeyPhase,
	{"ordering=none, concurrency=16, max_messages=10", 10, concDelay, []string{"ordering=none", "concurrency=16"}, false},
	{"ordering=none, concurrency=16, max_messages=1", 1, concDelay, []string{"ordering=none", "concurrency=16"}, false},
	{"ordering=none, concurrency=16, max_messages=1, a function answering at once", 1, 0, []string{"ordering=none", "concurrency=16"}, false},
}

// concKeyPhase also runs over the other key counts of -concurrency-keys: how
// ordering=key depends on the number of keys a partition holds.
var concKeyPhase = concPhase{"ordering=key, concurrency=16, max_messages=10", 10, concDelay, []string{"ordering=key", "concurrency=16"}, true}

func keyedTopic(keys int) string { return fmt.Sprintf("%s-%d", topicKeyed, keys) }

// concResult is one phase of the comparison over one key count.
type concResult struct {
	phase concPhase
	keys  int
	*phaseResult
}

// concBound is the partition-serial bound of a phase: one call of
// concDelay at a time in each partition.
func concBound(partitions, maxMessages int) float64 {
	return float64(partitions*maxMessages) / concDelay.Seconds()
}

// keysPerPartition describes how many keys the partitions hold: their mean,
// and the fewest and most.
func keysPerPartition(counts []int) string {
	if len(counts) == 0 {
		return "–"
	}
	sum := 0
	for _, c := range counts {
		sum += c
	}
	return fmt.Sprintf("%.0f (%d–%d)", float64(sum)/float64(len(counts)), slices.Min(counts), slices.Max(counts))
}

// concTable is the comparison's part of the report, from the first run.
func concTable(o options, runs []runResult, keyCounts map[int][]int) string {
	if len(runs) == 0 || len(runs[0].conc) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| a function of %v a call, %d partitions, %d messages, keys placed by murmur2 | keys | keys a partition (fewest–most) | messages/s | invocations/s | × the partition-serial bound | peak RSS |\n|---|--:|--:|--:|--:|--:|--:|\n",
		concDelay, o.partitions, o.concN)
	for _, p := range runs[0].conc {
		ratio := "–"
		if p.phase.slow > 0 {
			bound := concBound(o.partitions, p.phase.maxMessages)
			ratio = fmt.Sprintf("%.1f× (bound %.0f msg/s)", p.rate()/bound, bound)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %.0f | %.0f | %s | %.0f MiB |\n", p.phase.name, p.keys, keysPerPartition(keyCounts[p.keys]), p.rate(), p.invocationRate(), ratio, mib(p.peakRSS))
	}
	return b.String()
}
