// Package config reads the connector's configuration from the environment and
// checks it, so that a bad value stops the program before it connects anywhere.
//
// Variable names are those of the OpenFaaS connectors, in lower case
// (gateway_url, broker_hosts, ...); the upper-case spelling is accepted too.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/kafka-connector/kafka-connector/gateway"
	"github.com/kafka-connector/kafka-connector/schedule"
	"github.com/kafka-connector/kafka-connector/schema"
	"github.com/kafka-connector/kafka-connector/types"
)

// Config is everything the connector can be told. The zero value is not
// useful: FromEnv fills in the defaults written in each field's tag.
type Config struct {
	// GatewayURL is the OpenFaaS-style gateway that lists and invokes functions.
	GatewayURL string `envconfig:"gateway_url" default:"http://gateway:8080" desc:"an http or https URL"`

	// Brokers are the bootstrap brokers. More than one lets the connector
	// start while one of them is down. broker_host is the older spelling.
	Brokers []string `envconfig:"broker_hosts" default:"kafka:9092" desc:"comma-separated host:port list"`

	// Topics, when not empty, is an allow-list: a function annotated with a
	// topic outside it does not consume that topic. It lets one connector
	// serve part of a cluster while another serves the rest.
	Topics []string `envconfig:"topics" desc:"comma-separated topic names"`

	// TopicDelimiter separates the topics of one `topic` annotation.
	TopicDelimiter string `envconfig:"topic_delimiter" default:"," desc:"a non-empty separator"`

	// Group prefixes every consumer-group id: a function's group is
	// "<Group>-<function>", so each function has its own offsets and a slow
	// function never holds back another one on the same topic.
	Group string `envconfig:"group" default:"kafka-connector" desc:"a non-empty consumer-group prefix"`

	// InstanceID makes every trigger a static member of its group
	// (group.instance.id, KIP-345): a replica that crashes and comes back
	// under the same id within the session timeout takes its partitions
	// back at once, without a rebalance. Unset, it is the HOSTNAME
	// variable, which Kubernetes sets to the pod name; set but empty, the
	// triggers are dynamic members. A replica that stops cleanly leaves its
	// groups all the same, so that a replica that does not come back under
	// the same name does not leave its partitions unserved.
	InstanceID string `envconfig:"instance_id" desc:"a group instance id of letters, digits, '.', '_' and '-', at most 249 characters, or nothing for dynamic membership (default: $HOSTNAME; needs kafka_version 2.3.0 or later)"`

	// Assignor is how each group shares its partitions among the replicas,
	// in order of preference. cooperative-sticky, the default, moves only
	// the partitions that must move when a replica joins or leaves, and the
	// others go on being delivered through the rebalance. sticky is the
	// eager assignor of earlier releases, for brokers older than 2.4: every
	// rebalance stops every partition of the group until the slowest
	// invocation in flight ends. Naming both is the first step of upgrading
	// a running install whose replicas speak only sticky (see docs/operating.md):
	// the group then rebalances eagerly until every member offers
	// cooperative-sticky alone.
	Assignor []string `envconfig:"assignor" desc:"cooperative-sticky, sticky, or both comma-separated by preference (default: cooperative-sticky; sticky when kafka_version is older than 2.4.0, which cooperative-sticky alone needs)"`

	// InitialOffset is where a group that has never committed starts.
	// Latest, as the CKafka trigger does: a new function is not flooded with
	// a topic's history unless asked to.
	InitialOffset types.StartOffset `envconfig:"initial_offset" default:"latest" desc:"latest, earliest (newest and oldest are accepted), an RFC 3339 time or Unix milliseconds"`

	// IsolationLevel is which messages of transactional producers are
	// delivered. read_committed, the default, delivers only committed
	// transactions, as a Java consumer of Kafka Streams, Flink or Debezium
	// output is set to; read_uncommitted delivers aborted ones too.
	IsolationLevel types.IsolationLevel `envconfig:"isolation_level" default:"read_committed" desc:"read_committed or read_uncommitted"`

	// MaxMessages is the largest batch. 100 keeps one invocation small enough
	// for any function while cutting the HTTP calls a hundredfold.
	MaxMessages int `envconfig:"max_messages" default:"100" desc:"a whole number from 1 to 10000"`

	// MaxWait is how long a batch waits for more messages after its first
	// one. It bounds the latency a batch adds when traffic is light.
	MaxWait time.Duration `envconfig:"max_wait" default:"1s" desc:"a duration from 0 to 60s, such as 10ms or 1s"`

	// MaxBytes caps the request body, as the gateway and functions limit
	// what they accept. A single message larger than this is delivered alone
	// rather than dropped.
	MaxBytes int `envconfig:"max_bytes" default:"6291456" desc:"a whole number of bytes from 1024 up"`

	// MaxBufferedBytes is how much of a partition is fetched at a time, the
	// bytes it reads ahead of its next batch. With the next max_messages
	// messages (256 at most) queued for that batch, it bounds what a
	// partition holds beyond the batch being delivered, so that memory
	// follows the configuration: sarama's own read-ahead (256 messages
	// whatever max_messages, and 1 MiB fetches) took 451 MiB for 12
	// partitions of 64 KiB messages at max_messages=10. 1 MiB is sarama's
	// own fetch size, the throughput figures' and the size of a batch of
	// most producers: a smaller fetch than a producer's batch brings one
	// partition at a time. A single message larger than this is still
	// fetched, whole.
	MaxBufferedBytes int `envconfig:"max_buffered_bytes" default:"1048576" desc:"a whole number of bytes from 1024 to 52428800"`

	// CommitInterval is how often the offsets of delivered batches are
	// flushed to Kafka. A crash (not a clean stop, which flushes) repeats
	// what was delivered since the last flush: about this long's worth of
	// deliveries, and the batches in flight. Shorter means fewer repeats
	// and more commit requests: one per trigger and interval.
	CommitInterval time.Duration `envconfig:"commit_interval" default:"1s" desc:"a duration from 10ms to 1m, such as 1s"`

	// UpstreamTimeout bounds one invocation. A function slower than this
	// counts as failed and its batch is retried.
	UpstreamTimeout time.Duration `envconfig:"upstream_timeout" default:"60s" desc:"a positive duration, such as 30s or 2m"`

	// RebuildInterval is how often the gateway is asked for its functions.
	RebuildInterval time.Duration `envconfig:"rebuild_interval" default:"30s" desc:"a duration of at least 100ms, such as 30s"`

	// RetryBackoffInitial is the delay before the first retry of a failed
	// batch; each further retry doubles it, up to RetryBackoffMax.
	RetryBackoffInitial time.Duration `envconfig:"retry_backoff_initial" default:"500ms" desc:"a positive duration, such as 500ms"`

	// RetryBackoffMax caps the retry delay, so a function that comes back is
	// found within a minute at most.
	RetryBackoffMax time.Duration `envconfig:"retry_backoff_max" default:"60s" desc:"a duration no shorter than retry_backoff_initial"`

	// MaxRetries is how many times a failed batch is retried before the
	// connector gives up on it. -1, the default, retries until success as the
	// CKafka trigger does: nothing is skipped unless the operator says so.
	MaxRetries int `envconfig:"max_retries" default:"-1" desc:"-1 (retry until success) or a whole number from 0 to 10000"`

	// Ordering is what each partition's deliveries keep in order.
	// partition, the default, is the connector's behaviour before orderings
	// existed: one batch of a partition in flight at a time. key delivers
	// the messages of one key one after another but different keys at
	// once; none keeps only at-least-once.
	Ordering string `envconfig:"ordering" default:"partition" desc:"partition, key or none"`

	// Concurrency is how many batches of one partition may be in flight
	// under ordering key or none. Unset, it is 10: enough to hide most of
	// an invocation's latency, while the window of 11 batches bounds what a
	// crash delivers again. Under ordering=partition it can only be 1.
	Concurrency int `envconfig:"concurrency" desc:"a whole number from 1 to 1000, and 1 with ordering=partition (default: 1 under partition, 10 under key and none)"`

	// MaxInflight caps the invocations in flight for one function on this
	// replica, across all its partitions: a cap that protects the function
	// however many partitions the replica is given. 0, the default, sets
	// none.
	MaxInflight int `envconfig:"max_inflight" default:"0" desc:"0 (no cap) or a whole number up to 100000"`

	// ContentType is the Content-Type of every invocation.
	ContentType string `envconfig:"content_type" default:"application/json" desc:"a media type such as application/json"`

	// DeadLetterTopic, when set, receives the messages of a batch whose
	// retries are spent, with headers saying where they came from and why;
	// only then is the batch committed. Empty: such a batch is logged and
	// committed.
	DeadLetterTopic string `envconfig:"dead_letter_topic" desc:"a Kafka topic name or nothing"`

	// ResponseTopic, when set, receives every function's successful answers
	// (see docs/results.md). Empty: answers are dropped, as they always were.
	ResponseTopic string `envconfig:"response_topic" desc:"a Kafka topic name or nothing, and nothing with asynchronous_invocation=true"`

	// ResponseDelivery is how answers reach the response topic.
	// at-least-once, the default, costs one acknowledged write per batch;
	// exactly-once writes a partition's answers and commits its offsets in
	// one transaction, which readers see with read_committed, at the cost
	// of a producer per partition and a transaction every commit_interval.
	ResponseDelivery types.ResponseDelivery `envconfig:"response_delivery" default:"at-least-once" desc:"at-least-once or exactly-once, and exactly-once only with ordering=partition"`

	// AsynchronousInvocation posts to the gateway's queue (/async-function/)
	// instead of invoking and waiting. A 202 is then success: retries belong
	// to the gateway's queue worker, and order within a partition is no
	// longer guaranteed.
	AsynchronousInvocation bool `envconfig:"asynchronous_invocation" default:"false" desc:"true or false"`

	// CallbackURL, with AsynchronousInvocation, is sent as X-Callback-Url so
	// that the gateway posts the function's answer there.
	CallbackURL string `envconfig:"callback_url" desc:"an http or https URL or nothing"`

	// RecordExtras adds each message's timestamp (Unix milliseconds) and
	// headers to its record. Off by default, so that the event is exactly
	// the CKafka trigger's.
	RecordExtras bool `envconfig:"record_extras" default:"false" desc:"true or false"`

	// ValueFormat and KeyFormat say how values and keys are read before
	// they are delivered and filtered: raw, as they are (the CKafka
	// trigger's event); json, passed on when they are JSON and treated as
	// undecodable otherwise; schema-registry, decoded from the Confluent
	// wire format through the schema registry to JSON text. A function's
	// kafka-value-format and kafka-key-format override them.
	ValueFormat string `envconfig:"value_format" default:"raw" desc:"raw, json or schema-registry (which needs schema_registry_url)"`
	KeyFormat   string `envconfig:"key_format" default:"raw" desc:"raw, json or schema-registry (which needs schema_registry_url)"`

	// SchemaRegistryURL is the Confluent-compatible Schema Registry that
	// the schema-registry format asks for schemas; several URLs are tried
	// in turn. Its credentials come from files, never from the URL: a user
	// name and password (basic authentication), or a bearer token.
	SchemaRegistryURL          []string `envconfig:"schema_registry_url" desc:"comma-separated http or https URLs of a Confluent-compatible schema registry, without credentials in them"`
	SchemaRegistryUsernameFile string   `envconfig:"schema_registry_username_file" desc:"a readable file holding the registry's user name, with schema_registry_password_file and schema_registry_url"`
	SchemaRegistryPasswordFile string   `envconfig:"schema_registry_password_file" desc:"a readable file holding the registry's password, with schema_registry_username_file and schema_registry_url"`
	SchemaRegistryTokenFile    string   `envconfig:"schema_registry_token_file" desc:"a readable file holding a bearer token for the registry, instead of a user name and password, with schema_registry_url"`
	// SchemaRegistryCAFile is the CA bundle that signs an https registry's
	// certificate, for a private CA (the system's when empty).
	SchemaRegistryCAFile string `envconfig:"schema_registry_ca_file" desc:"a readable PEM file of CA certificates, with an https schema_registry_url"`

	// BasicAuth makes the calls to the gateway's /system/* API (the
	// function list) carry the credentials read from
	// SecretMountPath/basic-auth-user and basic-auth-password. Invocations
	// never carry them unless GatewayInvokeAuth says so: the gateway
	// forwards an invocation's headers to the function.
	BasicAuth bool `envconfig:"basic_auth" default:"false" desc:"true or false"`

	// GatewayInvokeAuth sends the credentials on invocations too, for a
	// gateway behind an auth proxy that demands them there. Off by default,
	// because every function then receives the gateway's admin credentials
	// in its Authorization header.
	GatewayInvokeAuth bool `envconfig:"gateway_invoke_auth" default:"false" desc:"true or false, and true only with basic_auth=true"`

	// SecretMountPath is the folder holding the gateway credentials.
	SecretMountPath string `envconfig:"secret_mount_path" default:"/var/secrets" desc:"a folder holding basic-auth-user and basic-auth-password, as basic_auth=true asks"`

	// PrintResponse logs the status of every invocation; PrintResponseBody
	// adds the function's answer.
	PrintResponse     bool `envconfig:"print_response" default:"false" desc:"true or false"`
	PrintResponseBody bool `envconfig:"print_response_body" default:"false" desc:"true or false"`

	// TraceKeys records each message's key in the spans of its batch,
	// when tracing is on (see docs/tracing.md). Off by default: a key may
	// be personal data, which a trace backend is not meant to hold.
	TraceKeys bool `envconfig:"trace_keys" default:"false" desc:"true or false"`

	// HTTPAddr is where the connector serves /healthz and /readyz.
	HTTPAddr string `envconfig:"http_addr" default:":8081" desc:"a listen address such as :8081"`

	// ShutdownTimeout is how long a stop signal waits for the invocations in
	// flight to finish and be committed before they are abandoned.
	ShutdownTimeout time.Duration `envconfig:"shutdown_timeout" default:"30s" desc:"a duration from 0 up, such as 30s"`

	// LogFormat and LogLevel shape the log/slog output.
	LogFormat string `envconfig:"log_format" default:"text" desc:"text or json"`
	LogLevel  string `envconfig:"log_level" default:"info" desc:"debug, info, warn or error"`

	// TLS encrypts the connections to the brokers. TLSCAFile is the CA
	// bundle that signs the brokers' certificates (the system's when empty);
	// TLSCertFile and TLSKeyFile are a client certificate for mutual TLS.
	TLS         bool   `envconfig:"tls" default:"false" desc:"true or false"`
	TLSCAFile   string `envconfig:"tls_ca_file" desc:"a readable PEM file of CA certificates, with tls=true"`
	TLSCertFile string `envconfig:"tls_cert_file" desc:"a readable PEM certificate, with tls_key_file and tls=true"`
	TLSKeyFile  string `envconfig:"tls_key_file" desc:"a readable PEM key, with tls_cert_file and tls=true"`
	// TLSInsecureSkipVerify accepts any broker certificate. For testing
	// only: a warning is logged at start.
	TLSInsecureSkipVerify bool `envconfig:"tls_insecure_skip_verify" default:"false" desc:"true or false"`

	// SASLMechanism authenticates the connector to the brokers.
	SASLMechanism string `envconfig:"sasl_mechanism" desc:"PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or nothing"`
	// The SASL credentials, from files (Kubernetes secrets) or directly.
	SASLUsernameFile string `envconfig:"sasl_username_file" desc:"a readable file holding the SASL user name"`
	SASLPasswordFile string `envconfig:"sasl_password_file" desc:"a readable file holding the SASL password"`
	SASLUsername     string `envconfig:"sasl_username" desc:"the SASL user name, with sasl_mechanism"`
	SASLPassword     string `envconfig:"sasl_password" secret:"true" desc:"the SASL password, with sasl_mechanism"`

	// KafkaVersion is the protocol version the connector speaks. Brokers
	// older than it need it set to their version.
	KafkaVersion string `envconfig:"kafka_version" default:"3.6.0" desc:"a Kafka version from 0.11.0 on that sarama knows, such as 2.8.0 or 3.6.0"`

	// GatewayUser and GatewayPassword are read from SecretMountPath when
	// BasicAuth is on; they never appear in logs.
	GatewayUser     string `ignored:"true"`
	GatewayPassword string `ignored:"true"`

	// kafka is what the Kafka settings above resolve to, checked at start.
	kafka kafkaSecurity
	// registry is what the schema registry's settings resolve to.
	registry schema.Options
}

// Error is a configuration value that cannot be used. Its message names the
// variable, the value and what is allowed, and is meant to be shown as is.
type Error struct {
	Var     string // the variable, as the operator spells it
	Value   string
	Allowed string
	Err     error // the underlying cause, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s=%q: want %s", e.Var, e.Value, e.Allowed)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// FromEnv reads the configuration from the process environment, fills in the
// defaults and checks every value.
func FromEnv() (Config, error) {
	// envconfig looks variables up in upper case only, while the OpenFaaS
	// connectors are configured in lower case; copying the lower-case
	// spellings up first lets both work, the lower case winning.
	for _, name := range append(Names(), "broker_host") {
		if v, ok := os.LookupEnv(name); ok {
			os.Setenv(strings.ToUpper(name), v)
		}
	}
	if _, ok := os.LookupEnv("BROKER_HOSTS"); !ok {
		if v, ok := os.LookupEnv("BROKER_HOST"); ok {
			os.Setenv("BROKER_HOSTS", v)
		}
	}

	var c Config
	if err := envconfig.Process("", &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			// What is allowed says all there is to say; the parser's own
			// words would repeat it.
			return Config{}, fieldError(pe.FieldName, pe.Value, nil)
		}
		return Config{}, err
	}
	c.Brokers = cleanList(c.Brokers)
	c.Topics = cleanList(c.Topics)
	c.Assignor = cleanList(c.Assignor)
	c.SchemaRegistryURL = cleanList(c.SchemaRegistryURL)
	if len(c.Assignor) == 0 {
		c.Assignor = c.assignors() // the default, shown in the start line
	}
	if _, set := os.LookupEnv("CONCURRENCY"); set && c.Concurrency == 0 {
		// Unset means the ordering's default; a 0 written out is a mistake.
		return Config{}, fieldError("Concurrency", "0", nil)
	}
	if _, set := os.LookupEnv("INSTANCE_ID"); !set {
		c.InstanceID = defaultInstanceID(c.KafkaVersion)
	}
	if err := c.Validate(); err != nil {
		// Show the value as the operator wrote it, not as it was parsed.
		var ce *Error
		if errors.As(err, &ce) {
			// A registry URL with credentials is shown without them.
			if raw, ok := os.LookupEnv(strings.ToUpper(ce.Var)); ok && ce.Var != "schema_registry_url" {
				ce.Value = raw
			}
		}
		return Config{}, err
	}
	if err := c.LoadSecrets(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks the values that parse but are out of range.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return fieldError("Brokers", "", nil)
	case c.TopicDelimiter == "":
		return fieldError("TopicDelimiter", c.TopicDelimiter, nil)
	case strings.TrimSpace(c.Group) == "":
		return fieldError("Group", c.Group, nil)
	case c.MaxMessages < 1 || c.MaxMessages > 10000:
		return fieldError("MaxMessages", strconv.Itoa(c.MaxMessages), nil)
	case c.MaxWait < 0 || c.MaxWait > time.Minute:
		return fieldError("MaxWait", c.MaxWait.String(), nil)
	case c.MaxBytes < 1024:
		return fieldError("MaxBytes", strconv.Itoa(c.MaxBytes), nil)
	case c.MaxBufferedBytes < 1024 || c.MaxBufferedBytes > types.MaxBufferedBytesLimit:
		return fieldError("MaxBufferedBytes", strconv.Itoa(c.MaxBufferedBytes), nil)
	case c.CommitInterval < 10*time.Millisecond || c.CommitInterval > time.Minute:
		return fieldError("CommitInterval", c.CommitInterval.String(), nil)
	case c.UpstreamTimeout <= 0:
		return fieldError("UpstreamTimeout", c.UpstreamTimeout.String(), nil)
	case c.RebuildInterval < 100*time.Millisecond:
		return fieldError("RebuildInterval", c.RebuildInterval.String(), nil)
	case c.RetryBackoffInitial <= 0:
		return fieldError("RetryBackoffInitial", c.RetryBackoffInitial.String(), nil)
	case c.RetryBackoffMax < c.RetryBackoffInitial:
		return fieldError("RetryBackoffMax", c.RetryBackoffMax.String(), nil)
	case c.MaxRetries < -1 || c.MaxRetries > 10000:
		return fieldError("MaxRetries", strconv.Itoa(c.MaxRetries), nil)
	case c.ShutdownTimeout < 0:
		return fieldError("ShutdownTimeout", c.ShutdownTimeout.String(), nil)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fieldError("LogFormat", c.LogFormat, nil)
	case c.MaxInflight < 0 || c.MaxInflight > types.MaxInflightCap:
		return fieldError("MaxInflight", strconv.Itoa(c.MaxInflight), nil)
	}
	ordering, err := schedule.ParseOrdering(c.Ordering)
	if err != nil {
		return fieldError("Ordering", c.Ordering, nil)
	}
	if c.Concurrency < 0 || c.Concurrency > types.MaxConcurrency || ordering == schedule.OrderPartition && c.Concurrency > 1 {
		return fieldError("Concurrency", strconv.Itoa(c.Concurrency), nil)
	}
	if _, err := types.ParseIsolationLevel(string(c.IsolationLevel)); err != nil {
		return fieldError("IsolationLevel", string(c.IsolationLevel), nil)
	}
	if _, _, err := mime.ParseMediaType(c.ContentType); err != nil || strings.ContainsAny(c.ContentType, "\r\n") {
		return fieldError("ContentType", c.ContentType, err)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fieldError("HTTPAddr", c.HTTPAddr, err)
	}
	if c.DeadLetterTopic != "" {
		if err := types.CheckTopicName(c.DeadLetterTopic); err != nil {
			return fieldError("DeadLetterTopic", c.DeadLetterTopic, err)
		}
	}
	if err := c.checkResponse(ordering); err != nil {
		return err
	}
	if c.GatewayInvokeAuth && !c.BasicAuth {
		return fieldError("GatewayInvokeAuth", "true", nil)
	}
	if c.CallbackURL != "" {
		if err := checkURL(c.CallbackURL); err != nil {
			return fieldError("CallbackURL", c.CallbackURL, err)
		}
	}
	if err := c.checkKafkaSecurity(); err != nil {
		return err
	}
	if err := c.checkSchemaRegistry(); err != nil {
		return err
	}
	if err := c.checkInstanceID(); err != nil {
		return err
	}
	if err := c.checkAssignor(); err != nil {
		return err
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return fieldError("LogLevel", c.LogLevel, nil)
	}
	if err := checkURL(c.GatewayURL); err != nil {
		return fieldError("GatewayURL", c.GatewayURL, err)
	}
	for _, b := range c.Brokers {
		if err := checkHostPort(b); err != nil {
			return fieldError("Brokers", strings.Join(c.Brokers, ","), err)
		}
	}
	return nil
}

func (c *Config) readGatewaySecrets() error {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(c.SecretMountPath, name))
		if err != nil {
			return "", fieldError("SecretMountPath", c.SecretMountPath, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fieldError("SecretMountPath", c.SecretMountPath, fmt.Errorf("%s is empty", name))
		}
		return s, nil
	}
	var err error
	if c.GatewayUser, err = read("basic-auth-user"); err != nil {
		return err
	}
	c.GatewayPassword, err = read("basic-auth-password")
	return err
}

// Gateway returns the client of the configured gateway, with the
// credentials where the configuration wants them.
func (c *Config) Gateway() *gateway.Client {
	gw := gateway.New(c.GatewayURL)
	gw.Username, gw.Password = c.GatewayUser, c.GatewayPassword
	gw.InvokeAuth = c.GatewayInvokeAuth
	return gw
}

// Trigger returns the connector-wide trigger settings, which a function's
// annotations may override. Group is the prefix; the connector completes it
// with each function's name.
func (c *Config) Trigger() types.TriggerSettings {
	ordering, _ := schedule.ParseOrdering(c.Ordering) // checked by Validate
	return types.TriggerSettings{
		Enabled:             true,
		Group:               c.Group,
		StartOffset:         c.InitialOffset,
		Isolation:           c.IsolationLevel,
		MaxMessages:         c.MaxMessages,
		MaxWait:             c.MaxWait,
		MaxBytes:            c.MaxBytes,
		MaxBufferedBytes:    c.MaxBufferedBytes,
		MaxRetries:          c.MaxRetries,
		RetryBackoffInitial: c.RetryBackoffInitial,
		RetryBackoffMax:     c.RetryBackoffMax,
		UpstreamTimeout:     c.UpstreamTimeout,
		ContentType:         c.ContentType,
		DeadLetterTopic:     c.DeadLetterTopic,
		RecordExtras:        c.RecordExtras,
		Async:               c.AsynchronousInvocation,
		CallbackURL:         c.CallbackURL,
		Ordering:            ordering,
		Concurrency:         c.Concurrency,
		MaxInflight:         c.MaxInflight,
		KeyFormat:           format(c.KeyFormat),
		ValueFormat:         format(c.ValueFormat),
		ResponseTopic:       c.ResponseTopic,
		ResponseDelivery:    c.ResponseDelivery,
	}
}

// checkResponse checks the response settings, alone and with the ordering
// and the invocation mode they depend on.
func (c *Config) checkResponse(ordering schedule.Ordering) error {
	d, err := types.ParseResponseDelivery(string(c.ResponseDelivery))
	if err != nil {
		return fieldError("ResponseDelivery", string(c.ResponseDelivery), nil)
	}
	c.ResponseDelivery = d
	if c.ResponseDelivery == types.ExactlyOnce && ordering != schedule.OrderPartition {
		return fieldError("ResponseDelivery", string(c.ResponseDelivery), fmt.Errorf("ordering is %s", c.Ordering))
	}
	if c.ResponseTopic == "" {
		return nil
	}
	if err := types.CheckTopicName(c.ResponseTopic); err != nil {
		return fieldError("ResponseTopic", c.ResponseTopic, err)
	}
	if c.AsynchronousInvocation {
		return fieldError("ResponseTopic", c.ResponseTopic, errors.New("asynchronous_invocation is true: the answer is then the gateway's receipt"))
	}
	return nil
}

// LogValue is the configuration summary logged at start: every setting but
// the secrets.
func (c Config) LogValue() slog.Value {
	var attrs []slog.Attr
	v := reflect.ValueOf(c)
	for _, f := range reflect.VisibleFields(v.Type()) {
		name := f.Tag.Get("envconfig")
		switch {
		case name == "":
		case f.Tag.Get("secret") == "true":
			if !v.FieldByIndex(f.Index).IsZero() {
				attrs = append(attrs, slog.String(name, "(set)"))
			}
		default:
			// Durations and start offsets read as the operator writes them.
			value := v.FieldByIndex(f.Index).Interface()
			if s, ok := value.(fmt.Stringer); ok {
				value = s.String()
			}
			attrs = append(attrs, slog.Any(name, value))
		}
	}
	return slog.GroupValue(attrs...)
}

// Names lists every variable the connector reads, in lower case.
func Names() []string {
	var names []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Config]()) {
		if name := f.Tag.Get("envconfig"); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// ParseLevel turns a log_level word into a slog level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// fieldError builds the Error for a Config field, taking the variable name
// and what is allowed from the field's tags so that they are written once.
func fieldError(field, value string, err error) error {
	f, ok := reflect.TypeFor[Config]().FieldByName(field)
	if !ok {
		panic("config: no field " + field)
	}
	return &Error{Var: f.Tag.Get("envconfig"), Value: value, Allowed: f.Tag.Get("desc"), Err: err}
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("not an http or https URL with a host")
	}
	return nil
}

func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

func cleanList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
