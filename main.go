// Command kafka-connector feeds OpenFaaS-style functions from Kafka topics:
// a function annotated with `topic: orders` receives every message written
// to orders, in batches, in order within each partition, retried until it
// succeeds. See README.md.
package main

import (
	"cmp"
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rcrowley/go-metrics"
	"go.opentelemetry.io/otel"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/devmode"
	"github.com/kafka-connector/kafka-connector/tracing"
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
	exitFailed = 1
	exitUsage  = 2 // bad configuration or command line
)

// exitMargin is how long after shutdown_timeout a stop may take, beyond
// which the process exits whatever is still running: the connector itself
// gives up on its triggers a little earlier, so this is the last resort.
const exitMargin = 5 * time.Second

func main() {
	// Sarama keeps go-metrics meters per broker and per client, ticked by a
	// goroutine of their own, and nothing reads them: with a thousand
	// triggers they cost more memory and CPU than the triggers' work. The
	// connector's own metrics are on /metrics.
	metrics.UseNilMetrics = true
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	ctx, stop := context.WithCancelCause(context.Background())
	// The first signal asks the command to stop; the next ones go to the
	// command too, which then exits at once. This goroutine ends with the
	// process.
	again := make(chan os.Signal, 1)
	go func() {
		stop(fmt.Errorf("signal %s", <-signals))
		for sig := range signals {
			select {
			case again <- sig:
			default:
			}
		}
	}()
	os.Exit(run(ctx, again, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs a command until it is done or ctx ends (a stop signal). A
// signal on again, after ctx ended, ends a stop that is still going on.
func run(ctx context.Context, again <-chan os.Signal, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runConnector(ctx, again, stderr)
	case "dev":
		return runDev(ctx, again, args, stdout, stderr)
	case "produce":
		return runProduce(ctx, args, stdin, stdout, stderr)
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

func runConnector(ctx context.Context, again <-chan os.Signal, stderr io.Writer) int {
	cfg, log, ok := loadConfig(stderr)
	if !ok {
		return exitUsage
	}
	c := connector.New(cfg, cfg.Gateway(), log)
	log.Info("kafka-connector starting", "version", version, "commit", commit, "config", cfg)
	tr, code := startTracing(ctx, log, stderr)
	if tr == nil {
		return code
	}
	defer stopTracing(tr, log)
	c.SetTracing(tr)
	if cfg.TLSInsecureSkipVerify {
		log.Warn("tls_insecure_skip_verify=true: broker certificates are not checked; use this for testing only")
	}
	// In production the probes and the scraper look for the endpoints at
	// http_addr: anywhere else they are not found.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		log.Error("cannot serve the health and metrics endpoints", "http_addr", cfg.HTTPAddr, "error", err)
		return exitFailed
	}
	return serve(ctx, again, cfg.ShutdownTimeout, ln, log, c)
}

func runDev(ctx context.Context, again <-chan os.Signal, args []string, stdout, stderr io.Writer) int {
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
	// A real gateway lists functions on other topics too: dev mode feeds
	// only those of its own topic, unless topics says otherwise.
	if opts.GatewayURL != "" && len(cfg.Topics) == 0 {
		cfg.Topics = []string{devmode.DemoTopic}
	}
	log.Info("kafka-connector starting in dev mode", "version", version, "commit", commit, "config", cfg)
	tr, code := startTracing(ctx, log, stderr)
	if tr == nil {
		return code
	}
	defer stopTracing(tr, log)
	env, err := devmode.Start(ctx, cfg, opts, log)
	if err != nil {
		log.Error("cannot start dev mode", "error", err)
		return exitFailed
	}
	defer env.Close()
	ln, err := listenOrAnyPort(cfg.HTTPAddr, log)
	if err != nil {
		log.Error("cannot serve the health and metrics endpoints", "http_addr", cfg.HTTPAddr, "error", err)
		return exitFailed
	}
	c := connector.New(env.Config, env.Config.Gateway(), log)
	c.SetTracing(tr)
	return serve(ctx, again, cfg.ShutdownTimeout, ln, log, c)
}

// startTracing starts the tracer the OTEL_* variables describe, or returns
// nil and the exit status when they cannot be used.
func startTracing(ctx context.Context, log *slog.Logger, stderr io.Writer) (*tracing.Tracing, int) {
	tr, err := tracing.FromEnv(ctx, version)
	var bad *config.Error
	switch {
	case errors.As(err, &bad):
		fmt.Fprintf(stderr, "kafka-connector: bad configuration: %v\n", err)
		return nil, exitUsage
	case err != nil:
		log.Error("cannot start tracing", "error", err)
		return nil, exitFailed
	}
	if !tr.Enabled() {
		return tr, exitOK
	}
	// The SDK reports what it cannot return, such as exports that fail,
	// to a handler of its own; once a minute is enough to say that a
	// collector is down.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(tracing.ErrorHandler(time.Minute, func(err error) {
		log.Warn("tracing: spans could not be exported (said at most once a minute)", "error", err)
	})))
	s := tr.Settings()
	log.Info("tracing on", "endpoint", s.Endpoint, "protocol", s.Protocol, "sampler", cmp.Or(s.Sampler, "parentbased_always_on"), "sampler_arg", s.SamplerArg)
	return tr, exitOK
}

// stopTracing exports the spans still queued, for a few seconds at most:
// within the grace period the manifests give beyond shutdown_timeout.
func stopTracing(tr *tracing.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		log.Warn("tracing: the last spans may be lost", "error", err)
	}
}

// listenOrAnyPort listens on addr or, when that port is taken, on a free
// one of the same host. Dev mode runs beside other local services, and the
// default :8081 is also that of the faasd provider and many local
// gateways: the endpoints are worth less than the run, and their address
// is logged.
func listenOrAnyPort(addr string, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	host, _, _ := net.SplitHostPort(addr)
	ln, err2 := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return nil, err
	}
	log.Warn("http_addr cannot be used; serving the health and metrics endpoints on a free port instead", "http_addr", addr, "error", err, "url", endpointURL(ln))
	return ln, nil
}

func runProduce(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	topic := fs.String("topic", devmode.DemoTopic, "topic to write to")
	key := fs.String("key", "", "key of every message (none when empty)")
	delim := fs.String("K", "", "split each message at the first occurrence of this delimiter into its key and value, as kcat -K does (a message without it has no key)")
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
	if *key != "" && *delim != "" {
		fmt.Fprintf(stderr, "kafka-connector produce: -key and -K cannot be used together: -K reads each message's key from the message\n")
		return exitUsage
	}
	// TLS, SASL and the protocol version come from the same variables as
	// the connector's.
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "kafka-connector produce: bad configuration: %v\n", err)
		return exitUsage
	}
	n, err := devmode.Produce(ctx, cfg.SaramaProducer(), strings.Split(*brokers, ","), *topic, k, *delim, fs.Args(), stdin)
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
	if err == nil {
		_, err = tracing.Check(os.LookupEnv)
	}
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

// serve runs the connector with its own HTTP endpoints beside it, on ln,
// until it stops. When ctx ends, the connector stops: it has shutdown plus
// exitMargin to do so, and a signal on again ends the wait at once. Either
// way out leaves the connector's goroutine behind, for the process to exit
// without it, with a line naming the triggers abandoned.
func serve(ctx context.Context, again <-chan os.Signal, shutdown time.Duration, ln net.Listener, log *slog.Logger, c *connector.Connector) int {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.Metrics(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !c.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving /healthz, /readyz and /metrics", "url", endpointURL(ln))

	finished := make(chan error, 1)
	go func() {
		err := c.Run(ctx)
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
		if names := c.Unfinished(); len(names) > 0 {
			return "the triggers of " + strings.Join(names, ",") + ", with their invocations in flight uncommitted"
		}
		return "nothing: every trigger had stopped"
	}
	stopping := ctx.Done()
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
		case <-stopping:
			log.Info("stopping: finishing the invocations in flight; a second signal exits at once", "cause", context.Cause(ctx).Error(), "shutdown_timeout", shutdown)
			stopping = nil
			timer := time.NewTimer(shutdown + exitMargin)
			defer timer.Stop()
			deadline = timer.C
		case sig := <-again:
			log.Error("second signal: exiting at once", "signal", sig.String(), "abandoned", abandoned())
			return exitFailed
		case <-deadline:
			log.Error("the stop did not finish in time: exiting", "waited", shutdown+exitMargin, "abandoned", abandoned())
			return exitFailed
		}
	}
}

// endpointURL is where a local client reaches ln: a listener on every
// interface is reached on the loopback one.
func endpointURL(ln net.Listener) string {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return "http://" + ln.Addr().String()
	}
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}
