package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/tracing"
)

// The measured consumer runs in a process of its own, so that its memory and
// CPU are its own and not the embedded broker's or the function's. It is
// this program started again with -child: "connector" runs the connector as
// the kafka-connector command does (configuration from the environment),
// "consumer" runs a bare sarama consumer group with the connector's sarama
// settings that only counts and marks what it reads.
//
// The parent drives it through stdin, one word a line:
//
//	mark  the child answers with a snapshot of its counters; the first mark
//	      starts the CPU profile, the second stops it and writes the profiles
//	end of stdin: stop (the connector drains and leaves its group) and exit
//
// and the child writes JSON lines to stdout: the snapshots, and for the
// consumer a line when it has read its target number of messages.

// snapshot is what the child reports at a mark.
type snapshot struct {
	Mallocs    uint64 `json:"mallocs"`     // heap objects allocated since start
	TotalAlloc uint64 `json:"total_alloc"` // heap bytes allocated since start
	NumGC      uint32 `json:"num_gc"`
	// CPU is the user and system time of the process so far (getrusage:
	// the counters of /proc/<pid>/stat, to the microsecond).
	CPU time.Duration `json:"cpu"`
}

// childLine is one line a child writes to stdout.
type childLine struct {
	Mark *snapshot `json:"mark,omitempty"`
	Done bool      `json:"done,omitempty"` // the consumer read its target
	Err  string    `json:"err,omitempty"`
}

type childOptions struct {
	kind       string // connector or consumer
	topic      string // the consumer's topic
	target     int    // messages the consumer reads before it says done
	cpuProfile string // written between the first and second mark
	memProfile string // allocation profiles at the first and second mark, and the goroutines at the second
	binary     string // a built kafka-connector to run instead of this program as -child=connector
}

func runChild(o childOptions) error {
	metrics.UseNilMetrics = true // as the kafka-connector command does
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	out := &lineWriter{enc: json.NewEncoder(os.Stdout)}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer cancel() // end of stdin: stop
		marks := 0
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if in.Text() != "mark" {
				continue
			}
			marks++
			snap, err := mark(marks, o)
			line := childLine{Mark: &snap}
			if err != nil {
				line.Err = err.Error()
			}
			out.write(line)
		}
	}()

	switch o.kind {
	case "connector":
		c := connector.New(cfg, gateway.New(cfg.GatewayURL), log)
		tr, err := tracing.FromEnv(ctx, "bench")
		if err != nil {
			return err
		}
		defer tr.Shutdown(context.Background())
		c.SetTracing(tr)
		return c.Run(ctx)
	case "consumer":
		return consume(ctx, cfg, o, func() { out.write(childLine{Done: true}) })
	default:
		return fmt.Errorf("-child=%q: want connector or consumer", o.kind)
	}
}

// mark takes a snapshot; the first mark starts the CPU profile and the
// second stops it, so that the profiles cover what the parent measures.
func mark(n int, o childOptions) (snapshot, error) {
	var err error
	switch {
	case n == 1 && o.cpuProfile != "":
		var f *os.File
		if f, err = os.Create(o.cpuProfile); err == nil {
			err = pprof.StartCPUProfile(f)
		}
	case n == 2 && o.cpuProfile != "":
		pprof.StopCPUProfile()
	}
	if o.memProfile != "" && n <= 2 {
		name := o.memProfile
		if n == 1 {
			name += ".base" // go tool pprof -base <name>.base <name>
		}
		err = errors.Join(err, writeProfile("allocs", name))
		if n == 2 {
			// Who holds the goroutines and their stacks, at the end of
			// what was measured.
			err = errors.Join(err, writeProfile("goroutine", strings.TrimSuffix(o.memProfile, ".allocs.pprof")+".goroutine.pprof"))
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	err = errors.Join(err, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return snapshot{Mallocs: ms.Mallocs, TotalAlloc: ms.TotalAlloc, NumGC: ms.NumGC, CPU: cpu}, err
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup(name).WriteTo(f, 0)
	return errors.Join(err, f.Close())
}

type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *lineWriter) write(l childLine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.enc.Encode(l)
}

// consume is the limit the connector is measured against: a consumer group
// on the same sarama client and settings that does nothing with a message
// but count it and mark it.
func consume(ctx context.Context, cfg config.Config, o childOptions, done func()) error {
	group, err := sarama.NewConsumerGroup(cfg.Brokers, cfg.Group, cfg.Sarama(cfg.Trigger()))
	if err != nil {
		return err
	}
	go func() {
		for err := range group.Errors() {
			fmt.Fprintln(os.Stderr, "consumer error:", err)
		}
	}()
	h := &countingHandler{target: int64(o.target), done: done}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{o.topic}, h); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "consumer group session:", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	return group.Close()
}

type countingHandler struct {
	target int64
	done   func()
	n      atomic.Int64
}

func (h *countingHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *countingHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *countingHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		sess.MarkMessage(m, "")
		if h.n.Add(1) == h.target {
			h.done()
		}
	}
	return nil
}
