package main

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kafka-connector/kafka-connector/config"
)

// The targets the connector is held to.
const (
	targetRatio1000     = 0.50 // of the limit, max_messages=1000
	targetRatio100      = 0.35 // of the limit, max_messages=100
	targetInvocations1  = 10_000
	targetLatencyMargin = 20 * time.Millisecond // p99 under max_wait plus this
	targetPeakRSS       = 150 << 20
	// The large-message phase: 64 KiB messages, a function of 200 ms.
	targetLargePeakRSS = 200 << 20
	// Memory "does not grow with the backlog": the peak over the whole
	// backlog is within this factor of the peak over a smaller one.
	targetGrowth = 1.25
)

type machine struct {
	cpu                string
	cores, procs       int
	goVersion          string
	kernel             string
	loadStart, loadEnd string
}

func (m machine) String() string {
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s, Linux %s, %s/%s; load average %s",
		m.cpu, m.cores, m.procs, m.goVersion, m.kernel, runtime.GOOS, runtime.GOARCH, m.loadStart)
}

func describeMachine() machine {
	m := machine{cpu: "unknown CPU", cores: runtime.NumCPU(), procs: runtime.GOMAXPROCS(0), goVersion: runtime.Version(), loadStart: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadAverage is the 1, 5 and 15 minute load average: how busy the
// machine was with other work.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// table renders the medians of the runs as markdown, with the targets
// checked below it.
func table(o options, m machine, runs []runResult) string {
	var w strings.Builder
	fmt.Fprintf(&w, "\nMachine: %s at the start, %s at the end.\n", m, m.loadEnd)
	function := "validates every event (json.Valid), counts its records, and decodes one in 64 into types.Event to check every record"
	if o.decodeAll {
		function = "decodes every event into types.Event with encoding/json and checks every record"
	}
	fmt.Fprintf(&w, "Backlog: %s messages of %d bytes on %d partitions of one embedded broker (kfake); max_wait=%v; the function %s; median of %d run(s), range in parentheses.\n\n",
		count(o.n), o.size, o.partitions, o.maxWait, function, len(runs))
	w.WriteString("| | messages/s | invocations/s | of the limit | produce→invoke p50 / p99 / p999 | CPU per message | × the limit's CPU per message | allocs per message | bytes allocated per message | peak RSS | broker + function CPU per message |\n")
	w.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")

	var bare []*phaseResult
	for _, r := range runs {
		bare = append(bare, r.bare...)
	}
	bareCPU := median(each(bare, func(p *phaseResult) float64 { return perMessage(p.cpu, p.messages) }))
	cpuRatio := func(cpu float64) string {
		if bareCPU == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", cpu/bareCPU)
	}
	// ofLimit compares the phase's rate with the limit's: not for a phase
	// paced by a slow function.
	row := func(label string, get func(runResult) *phaseResult, invocations, ofLimit bool) {
		ps := bare // the limit's row
		var ratios []float64
		if get != nil {
			ps = nil
			for _, r := range runs {
				if p := get(r); p != nil {
					ps = append(ps, p)
					if l := r.limit(); l > 0 && ofLimit {
						ratios = append(ratios, p.rate()/l)
					}
				}
			}
		}
		if len(ps) == 0 {
			return
		}
		of := "–"
		if len(ratios) > 0 {
			of = pct(median(ratios)) + spread(ratios, pct)
		}
		rate := count(int(median(each(ps, (*phaseResult).rate))))
		if get == nil {
			of = "100%"
			rate += spread(each(ps, (*phaseResult).rate), func(f float64) string { return count(int(f)) })
		}
		inv := "–"
		if invocations {
			inv = count(int(median(each(ps, (*phaseResult).invocationRate))))
		}
		cpu := median(each(ps, func(p *phaseResult) float64 { return perMessage(p.cpu, p.messages) }))
		ratio := "–"
		if ofLimit {
			ratio = cpuRatio(cpu)
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | – | %.2f µs | %s | %.1f | %s B | %.0f MiB | %.2f µs |\n",
			label, rate, inv, of, cpu, ratio,
			median(each(ps, func(p *phaseResult) float64 { return float64(p.mallocs) / float64(p.messages) })),
			count(int(median(each(ps, func(p *phaseResult) float64 { return float64(p.allocBytes) / float64(p.messages) })))),
			median(each(ps, func(p *phaseResult) float64 { return mib(p.peakRSS) })),
			median(each(ps, func(p *phaseResult) float64 { return perMessage(p.hostCPU, p.messages) })))
	}
	row("bare sarama consumer group: the limit", nil, false, true)
	for _, mm := range []int{1000, 100, 1} {
		label := fmt.Sprintf("connector, max_messages=%d", mm)
		if mm == 1 && o.n1 != o.n {
			label += fmt.Sprintf(" (first %s messages)", count(o.n1))
		}
		row(label, func(r runResult) *phaseResult { return r.batches[mm] }, true, true)
		if mm == filterMaxMessages {
			row(fmt.Sprintf("connector, max_messages=%d, kafka-filter passing one in ten", mm), func(r runResult) *phaseResult { return r.filtered }, true, true)
		}
		if mm == avroMaxMessages {
			row(fmt.Sprintf("connector, max_messages=%d, Avro values decoded through the schema registry", mm), func(r runResult) *phaseResult { return r.avro }, true, true)
		}
		if mm == tracingMaxMessages {
			row(fmt.Sprintf("connector, max_messages=%d, OTEL_* set without an endpoint (tracing off)", mm), func(r runResult) *phaseResult { return r.untraced }, true, true)
			row(fmt.Sprintf("connector, max_messages=%d, tracing on, every batch sampled", mm), func(r runResult) *phaseResult { return r.traced }, true, true)
		}
	}
	row(fmt.Sprintf("connector, max_messages=1, backlog of %s", count(o.n/smallerBy)), func(r runResult) *phaseResult { return r.small }, true, true)
	row(fmt.Sprintf("connector, %s messages of %s, function of %v, max_messages=%d", count(o.largeN), sizeName(o.largeSize), o.largeDelay, o.largeMaxMessages),
		func(r runResult) *phaseResult { return r.large }, true, false)

	var lats []*latencyResult
	for _, r := range runs {
		if r.latency != nil {
			lats = append(lats, r.latency)
		}
	}
	if len(lats) > 0 {
		fmt.Fprintf(&w, "| connector at a steady %s msg/s, max_messages=%d | %s | – | – | %s / %s / %s ms | %.2f µs | – | %.1f | – | %.0f MiB | %.2f µs |\n",
			count(int(o.rate)), o.latencyMaxMsgs, count(int(o.rate)),
			msf(median(eachL(lats, func(l *latencyResult) time.Duration { return l.p50 }))),
			msf(median(eachL(lats, func(l *latencyResult) time.Duration { return l.p99 }))),
			msf(median(eachL(lats, func(l *latencyResult) time.Duration { return l.p999 }))),
			median(eachL(lats, func(l *latencyResult) float64 { return perMessage(l.cpu, int64(o.rate*l.window.Seconds())) })),
			median(eachL(lats, func(l *latencyResult) float64 { return float64(l.mallocs) / (o.rate * l.window.Seconds()) })),
			median(eachL(lats, func(l *latencyResult) float64 { return mib(l.peakRSS) })),
			median(eachL(lats, func(l *latencyResult) float64 { return perMessage(l.hostCPU, int64(o.rate*l.window.Seconds())) })))
	}

	w.WriteString("\nTargets:\n\n")
	check := func(what string, ok bool, measured string) {
		mark := "met"
		if !ok {
			mark = "NOT met"
		}
		fmt.Fprintf(&w, "- %s: %s (%s)\n", what, mark, measured)
	}
	ratioOf := func(mm int) []float64 {
		var out []float64
		for _, r := range runs {
			if p := r.batches[mm]; p != nil && r.limit() > 0 {
				out = append(out, p.rate()/r.limit())
			}
		}
		return out
	}
	if rs := ratioOf(1000); len(rs) > 0 {
		check(fmt.Sprintf("max_messages=1000 at least %s of the limit", pct(targetRatio1000)), median(rs) >= targetRatio1000, pct(median(rs)))
	}
	if rs := ratioOf(100); len(rs) > 0 {
		check(fmt.Sprintf("max_messages=100 at least %s of the limit", pct(targetRatio100)), median(rs) >= targetRatio100, pct(median(rs)))
	}
	var avroRatios []float64 // against the raw phase of the same run
	for _, r := range runs {
		if a, raw := r.avro, r.batches[avroMaxMessages]; a != nil && raw != nil {
			avroRatios = append(avroRatios, a.rate()/raw.rate())
		}
	}
	if len(avroRatios) > 0 {
		check(fmt.Sprintf("Avro values at least %.1f× the rate of raw values, max_messages=%d", targetAvroRatio, avroMaxMessages),
			median(avroRatios) >= targetAvroRatio, fmt.Sprintf("%.2f×", median(avroRatios)))
	}
	var inv1 []float64
	for _, r := range runs {
		if p := r.batches[1]; p != nil {
			inv1 = append(inv1, p.invocationRate())
		}
	}
	if len(inv1) > 0 {
		check(fmt.Sprintf("max_messages=1 at least %s invocations/s on %d cores", count(targetInvocations1), m.cores), median(inv1) >= targetInvocations1, count(int(median(inv1)))+"/s")
	}
	if len(lats) > 0 {
		p99 := median(eachL(lats, func(l *latencyResult) time.Duration { return l.p99 }))
		limit := o.maxWait + targetLatencyMargin
		check(fmt.Sprintf("p99 produce→invoke at %s msg/s under max_wait + %v = %v", count(int(o.rate)), targetLatencyMargin, limit), p99 < float64(limit), ms(time.Duration(p99)).String())
	}
	var peaks []float64 // the largest of the connector's phases over the full backlog, per run
	for _, r := range runs {
		peak := 0.0
		for _, p := range r.batches {
			peak = max(peak, float64(p.peakRSS))
		}
		if peak > 0 {
			peaks = append(peaks, peak)
		}
	}
	if len(peaks) > 0 {
		check(fmt.Sprintf("peak RSS under %d MiB with a backlog of %s", targetPeakRSS>>20, count(o.n)), median(peaks) < targetPeakRSS, fmt.Sprintf("%.0f MiB", median(peaks)/(1<<20)))
	}
	var large []*phaseResult
	for _, r := range runs {
		if r.large != nil {
			large = append(large, r.large)
		}
	}
	if len(large) > 0 {
		// The function cannot take more than a batch of every partition
		// per call time: the pace the phase is measured against.
		capacity := float64(o.partitions*o.largeMaxMessages) / o.largeDelay.Seconds()
		rate := median(each(large, (*phaseResult).rate))
		peak := median(each(large, func(p *phaseResult) float64 { return float64(p.peakRSS) }))
		check(fmt.Sprintf("peak RSS under %d MiB with %s messages of %s on %d partitions, a function of %v and max_messages=%d", targetLargePeakRSS>>20,
			count(o.largeN), sizeName(o.largeSize), o.partitions, o.largeDelay, o.largeMaxMessages), peak < targetLargePeakRSS,
			fmt.Sprintf("%.0f MiB; %s msg/s, %s of the function's pace of %s msg/s", peak/(1<<20), count(int(rate)), pct(rate/capacity), count(int(capacity))))
	}
	var growth []float64
	for _, r := range runs {
		if big, small := r.batches[1], r.small; big != nil && small != nil && big.peakRSSAtCheckpoint > 0 {
			growth = append(growth, float64(big.peakRSSAtCheckpoint)/float64(small.peakRSS))
		}
	}
	// The comparison says something only if the smaller backlog is more
	// than the consumer may hold fetched: about two fetches a partition.
	fetch := o.bufferedBytes
	if fetch == 0 {
		fetch = defaultBufferedBytes()
	}
	if perPartition := o.n / smallerBy / o.partitions * o.size; len(growth) > 0 && perPartition < 2*fetch {
		fmt.Fprintf(&w, "- memory does not grow with the backlog: not judged, the smaller backlog (%s bytes a partition) does not exceed two fetches of %s bytes\n", count(perPartition), count(fetch))
	} else if len(growth) > 0 {
		check(fmt.Sprintf("memory does not grow with the backlog: peak RSS of max_messages=1 over the first %s messages of a backlog of %s within %.2f× of over a backlog of %s", count(o.n/smallerBy), count(o.n), targetGrowth, count(o.n/smallerBy)), median(growth) <= targetGrowth, fmt.Sprintf("%.2f×", median(growth)))
	}
	// The filter's cost: the backlog read with it, against the same phase
	// without it, run by run.
	var filterRatios []float64
	for _, r := range runs {
		if f, u := r.filtered, r.batches[filterMaxMessages]; f != nil && u != nil {
			filterRatios = append(filterRatios, f.rate()/u.rate())
		}
	}
	if len(filterRatios) > 0 {
		fmt.Fprintf(&w, "\nWith `kafka-filter: %s`, passing one message in ten, the connector reads the backlog at %.2f× the messages a second of the same phase without a filter%s.\n",
			oneInTen, median(filterRatios), spread(filterRatios, func(f float64) string { return fmt.Sprintf("%.2f×", f) }))
	}
	w.WriteString(tracingSummary(runs))
	if o.n < 1_000_000 {
		fmt.Fprintf(&w, "\nThe backlog is smaller than the 1,000,000 messages the targets are set for.\n")
	}
	return w.String()
}

// defaultBufferedBytes is the connector's default max_buffered_bytes, as
// its configuration declares it.
func defaultBufferedBytes() int {
	f, _ := reflect.TypeFor[config.Config]().FieldByName("MaxBufferedBytes")
	n, _ := strconv.Atoi(f.Tag.Get("default"))
	return n
}

// sizeName writes a size in bytes the short way: 64 KiB, 1 MiB, 100 B.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func each(ps []*phaseResult, f func(*phaseResult) float64) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = f(p)
	}
	return out
}

func eachL[T float64 | time.Duration](ls []*latencyResult, f func(*latencyResult) T) []float64 {
	out := make([]float64, len(ls))
	for i, l := range ls {
		out[i] = float64(f(l))
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is the range of xs in parentheses, or nothing when the runs
// agree or there was one.
func spread(xs []float64, f func(float64) string) string {
	lo, hi := f(slices.Min(xs)), f(slices.Max(xs))
	if lo == hi {
		return ""
	}
	return " (" + lo + "–" + hi + ")"
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func perMessage(d time.Duration, n int64) float64 {
	return float64(d.Microseconds()) / float64(n)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

func ms(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

func msf(ns float64) string { return fmt.Sprintf("%.1f", ns/1e6) }

// count writes n with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + count(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
