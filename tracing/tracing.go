// Package tracing follows messages through the connector with OpenTelemetry
// traces: a span per batch, continuing the trace its producer wrote into
// the records' W3C traceparent header, and a span per invocation attempt,
// whose traceparent the function receives.
//
// It is configured by the standard OTEL_* environment variables, read by
// the OpenTelemetry SDK itself. Without an endpoint there is no tracer:
// FromEnv returns a Tracing that is off, no exporter is started, and the
// connector skips every call into this package.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/kafka-connector/kafka-connector/config"
)

// ServiceName is the service.name of the connector's spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name another.
const ServiceName = "kafka-connector"

// scope names the instrumentation in every span.
const scope = "github.com/kafka-connector/kafka-connector"

// The protocols of OTEL_EXPORTER_OTLP_PROTOCOL the Go exporters speak.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Tracing is the connector's tracer, or nothing when tracing is off. The
// zero value is off.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	settings Settings
	// links is how many links a span keeps (OTEL_SPAN_LINK_COUNT_LIMIT),
	// negative for no limit: a batch links that many records at most.
	links int
}

// Settings is what the OTEL_* variables ask for, as far as the connector
// checks them; the SDK reads the rest (headers, timeouts, certificates,
// batching, limits) itself.
type Settings struct {
	// On is whether spans are exported: an endpoint is set, and neither
	// OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none turns them off.
	On bool
	// Endpoint is where spans go, without any user name or password it
	// holds, for the logs.
	Endpoint string
	Protocol string // ProtocolHTTP or ProtocolGRPC
	// Sampler is OTEL_TRACES_SAMPLER, empty for the SDK's default,
	// parentbased_always_on.
	Sampler    string
	SamplerArg string
}

// samplers are the values of OTEL_TRACES_SAMPLER the Go SDK knows, and
// whether they take a ratio as OTEL_TRACES_SAMPLER_ARG.
var samplers = map[string]bool{
	"always_on":                false,
	"always_off":               false,
	"traceidratio":             true,
	"parentbased_always_on":    false,
	"parentbased_always_off":   false,
	"parentbased_traceidratio": true,
}

// Check reads the variables the connector checks before it starts,
// through lookup (os.LookupEnv). A value the SDK would ignore with a
// warning, or read otherwise than meant, is an error naming the variable,
// its value and what is allowed.
func Check(lookup func(string) (string, bool)) (Settings, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var s Settings
	if v := get("OTEL_SDK_DISABLED"); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return s, &config.Error{Var: "OTEL_SDK_DISABLED", Value: v, Allowed: "true or false"}
		}
		if disabled {
			return s, nil
		}
	}
	switch v := get("OTEL_TRACES_EXPORTER"); v {
	case "", "otlp":
	case "none":
		return s, nil
	default:
		return s, &config.Error{Var: "OTEL_TRACES_EXPORTER", Value: v, Allowed: "otlp or none"}
	}

	s.Protocol = ProtocolHTTP
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		v := get(name)
		if v == "" {
			continue
		}
		if v != ProtocolHTTP && v != ProtocolGRPC {
			return s, &config.Error{Var: name, Value: v, Allowed: "http/protobuf or grpc"}
		}
		s.Protocol = v
		break
	}

	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		v := get(name)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
			err = errors.New("not an http or https URL with a host")
		}
		if err != nil {
			return s, &config.Error{Var: name, Value: v, Allowed: "an http or https URL, such as http://otel-collector:4318", Err: err}
		}
		s.On = true
		u.User = nil
		s.Endpoint = u.String()
		break
	}

	s.Sampler = strings.ToLower(get("OTEL_TRACES_SAMPLER"))
	s.SamplerArg = get("OTEL_TRACES_SAMPLER_ARG")
	ratio, known := samplers[s.Sampler]
	switch {
	case s.Sampler == "":
	case !known:
		return s, &config.Error{Var: "OTEL_TRACES_SAMPLER", Value: s.Sampler,
			Allowed: "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"}
	case ratio && s.SamplerArg != "":
		if r, err := strconv.ParseFloat(s.SamplerArg, 64); err != nil || r < 0 || r > 1 {
			return s, &config.Error{Var: "OTEL_TRACES_SAMPLER_ARG", Value: s.SamplerArg, Allowed: "a ratio from 0 to 1, such as 0.1"}
		}
	}
	if !s.On {
		return Settings{}, nil
	}
	return s, nil
}

// FromEnv builds the tracer the OTEL_* variables describe, or one that is
// off when they name no endpoint. version is the connector's, recorded as
// service.version. Nothing is sent until a span ends; an endpoint that
// cannot be reached costs a warning from the SDK, not the connector's
// work.
func FromEnv(ctx context.Context, version string) (*Tracing, error) {
	s, err := Check(os.LookupEnv)
	if err != nil || !s.On {
		return &Tracing{}, err
	}
	var exporter sdktrace.SpanExporter
	switch s.Protocol {
	case ProtocolGRPC:
		exporter, err = otlptracegrpc.New(ctx)
	default:
		exporter, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return &Tracing{}, fmt.Errorf("starting the OTLP trace exporter to %s: %w", s.Endpoint, err)
	}
	// The environment's resource, merged last, wins over the defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return &Tracing{}, &config.Error{Var: "OTEL_RESOURCE_ATTRIBUTES", Value: os.Getenv("OTEL_RESOURCE_ATTRIBUTES"),
			Allowed: "comma-separated key=value pairs, values percent-encoded", Err: err}
	}
	// The sampler is the SDK's reading of OTEL_TRACES_SAMPLER, checked
	// above; by default parent-based, so that a producer's decision holds.
	p := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &Tracing{
		provider: p,
		tracer:   p.Tracer(scope, trace.WithInstrumentationVersion(version)),
		settings: s,
		links:    sdktrace.NewSpanLimits().LinkCountLimit,
	}, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// Settings returns what the variables asked for, for the start line.
func (t *Tracing) Settings() Settings {
	if t == nil {
		return Settings{}
	}
	return t.settings
}

// Shutdown exports the spans still queued, waiting at most until ctx
// ends, and stops the exporter. It does nothing when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("flushing the last spans to %s: %w", t.settings.Endpoint, err)
	}
	return nil
}

// ReadsVariable reports whether name is a variable of the OpenTelemetry
// SDK, which the connector passes on to it: every OTEL_* variable.
func ReadsVariable(name string) bool { return strings.HasPrefix(name, "OTEL_") }

// ErrorHandler returns what the SDK calls with the errors it cannot
// return, such as an export that failed: they are handed to report at
// most once every interval, so that a collector that is down fills no
// log.
func ErrorHandler(interval time.Duration, report func(error)) func(error) {
	var mu sync.Mutex
	var last time.Time
	return func(err error) {
		mu.Lock()
		now := time.Now()
		due := last.IsZero() || now.Sub(last) >= interval
		if due {
			last = now
		}
		mu.Unlock()
		if due {
			report(err)
		}
	}
}
