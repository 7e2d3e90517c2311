// Command kafka-connector feeds OpenFaaS-style functions from Kafka topics:
// a function annotated with `topic: orders` receives every message written
// to orders, in batches, in order within each partition, retried until it
// succeeds. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/devmode"
	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/types"
)

// Stamped by the build: go build -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `usage:
  kafka-connector                 run the connector (configuration from the environment)
  kafka-connector dev [flags]     run it with an embedded Kafka broker and a demo function
  kafka-connector produce [flags] [message ...]
                                  write messages to a topic (lines of stdin when none given)
  kafka-connector version         print the version and commit
`

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // also a stop that had to abandon work
	exitUsage  = 2 // bad configuration or command line
)

// exitMargin is how long after shutdown_timeout a stop may take, beyond
// which the process exits whatever is still running: the connector itself
// gives up on its triggers a little earlier, so this is the last resort.
const exitMargin = 5 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runConnector(stderr)
	case "dev":
		return runDev(args, stdout, stderr)
	case "produce":
		return runProduce(args, stdin, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "kafka-connector %s (commit %s)\n", version, commit)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "kafka-connector: unknown command %q\n%s", cmd, usage)
		return exitUsage
	}
}

func runConnector(stderr io.Writer) int {
	cfg, log, ok := loadConfig(stderr)
	if !ok {
		return exitUsage
	}
	signals := notify()
	defer signal.Stop(signals)

	gw := gateway.New(cfg.GatewayURL)
	gw.Username, gw.Password = cfg.GatewayUser, cfg.GatewayPassword
	c := connector.New(cfg, gw, log)
	log.Info("kafka-connector starting", "version", version, "commit", commit, "config", cfg)
	if cfg.TLSInsecureSkipVerify {
		log.Warn("tls_insecure_skip_verify=true: broker certificates are not checked; use this for testing only")
	}
	metrics := promhttp.HandlerFor(c.Metrics(), promhttp.HandlerOpts{})
	return serve(signals, cfg, log, c.Ready, metrics, c.Run, c.Unfinished)
}

// notify delivers SIGINT and SIGTERM, every one of them: the first starts
// the stop, a second one ends the process at once.
func notify() chan os.Signal {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	return signals
}

func runDev(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts devmode.Options
	fs.StringVar(&opts.GatewayURL, "gateway", "", "URL of a real gateway to use instead of the built-in one")
	fs.StringVar(&opts.KafkaAddr, "kafka-addr", "127.0.0.1:9092", "where the embedded Kafka broker listens")
	fs.StringVar(&opts.GatewayAddr, "gateway-addr", "127.0.0.1:8080", "where the built-in gateway listens")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	opts.Out = stdout
	// Dev mode starts at the sample messages it writes, unless told otherwise.
	if _, set := os.LookupEnv("initial_offset"); !set {
		os.Setenv("initial_offset", "earliest")
	}
	cfg, log, ok := loadConfig(stderr)
	if !ok {
		return exitUsage
	}
	// What dev mode starts replaces the brokers and gateway configured.
	cfg.Brokers = []string{opts.KafkaAddr}
	cfg.GatewayURL = opts.GatewayURL
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = "http://" + opts.GatewayAddr
	}
	log.Info("kafka-connector starting in dev mode", "version", version, "commit", commit, "config", cfg)
	signals := notify()
	defer signal.Stop(signals)
	ready := func() bool { return true }
	work := func(ctx context.Context) error { return devmode.Run(ctx, cfg, opts, log) }
	return serve(signals, cfg, log, ready, nil, work, nil)
}

func runProduce(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	topic := fs.String("topic", devmode.DemoTopic, "topic to write to")
	key := fs.String("key", "", "key of every message (none when empty)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := types.CheckTopicName(*topic); err != nil {
		fmt.Fprintf(stderr, "kafka-connector produce: -topic=%q: %v\n", *topic, err)
		return exitUsage
	}
	var k []byte
	if *key != "" {
		k = []byte(*key)
	}
	// TLS, SASL and the protocol version come from the same variables as
	// the connector's.
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "kafka-connector produce: bad configuration: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := devmode.Produce(ctx, cfg.SaramaProducer(), strings.Split(*brokers, ","), *topic, k, fs.Args(), stdin)
	fmt.Fprintf(stdout, "%d messages written to %s\n", n, *topic)
	if err != nil {
		fmt.Fprintf(stderr, "kafka-connector produce: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// loadConfig reads the configuration, or prints the one line that says what
// is wrong with it.
func loadConfig(stderr io.Writer) (config.Config, *slog.Logger, bool) {
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "kafka-connector: bad configuration: %v\n", err)
		return cfg, nil, false
	}
	level, _ := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	if level <= slog.LevelDebug {
		// Sarama logs through a package variable; its lines help to debug
		// connections and rebalances, and are noise otherwise.
		sarama.Logger = slog.NewLogLogger(h.WithAttrs([]slog.Attr{slog.String("from", "sarama")}), slog.LevelDebug)
	}
	return cfg, slog.New(h), true
}

// serve runs work with the connector's own HTTP endpoints beside it, until
// work returns. metrics, when not nil, is served on /metrics. The first
// signal ends work's context; work then has shutdown_timeout and
// exitMargin to return, and a second signal ends the wait at once. Either
// way out leaves work's goroutine behind, for the process to exit without
// it, with a line naming what unfinished (when not nil) says is abandoned.
func serve(signals <-chan os.Signal, cfg config.Config, log *slog.Logger, ready func() bool, metrics http.Handler,
	work func(context.Context) error, unfinished func() []string) int {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		log.Error("cannot serve the health endpoints", "http_addr", cfg.HTTPAddr, "error", err)
		return exitFailed
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	finished := make(chan error, 1)
	go func() {
		err := work(ctx)
		// A scrape in progress may finish; the endpoints must not hold up
		// the exit longer than that.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			log.Error("health endpoints stopped", "error", serr)
		}
		finished <- err
	}()

	abandoned := func() string {
		if unfinished == nil {
			return "whatever was still running"
		}
		if names := unfinished(); len(names) > 0 {
			return "the triggers of " + strings.Join(names, ",") + ", with their invocations in flight uncommitted"
		}
		return "nothing: every trigger had stopped"
	}
	var deadline <-chan time.Time
	for {
		select {
		case err := <-finished:
			if err != nil {
				log.Error("kafka-connector stopped", "error", err)
				return exitFailed
			}
			log.Info("kafka-connector stopped")
			return exitOK
		case sig := <-signals:
			if ctx.Err() == nil {
				log.Info("stopping: finishing the invocations in flight; a second signal exits at once", "signal", sig.String(), "shutdown_timeout", cfg.ShutdownTimeout)
				stop()
				timer := time.NewTimer(cfg.ShutdownTimeout + exitMargin)
				defer timer.Stop()
				deadline = timer.C
				continue
			}
			log.Error("second signal: exiting at once", "signal", sig.String(), "abandoned", abandoned())
			return exitFailed
		case <-deadline:
			log.Error("the stop did not finish in time: exiting", "waited", cfg.ShutdownTimeout+exitMargin, "abandoned", abandoned())
			return exitFailed
		}
	}
}
