// Package devmode runs the whole loop on one machine with nothing
// installed: an embedded Kafka broker, a small gateway with a demo function
// that prints what it receives, and the connector between them. It also
// holds the producer behind `kafka-connector produce`.
package devmode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/types"
)

// The demo function and its topic.
const (
	DemoFunction = "echo"
	DemoTopic    = "faas-request"
)

// Options say where the dev mode listens.
type Options struct {
	// KafkaAddr is where the embedded broker listens; only the port is
	// used, on 127.0.0.1. Default 127.0.0.1:9092.
	KafkaAddr string
	// GatewayAddr is where the demo gateway listens. Default 127.0.0.1:8080.
	GatewayAddr string
	// GatewayURL, when set, is a real gateway used instead of the demo one.
	GatewayURL string
	// Samples is how many sample messages are written at start. Default 3.
	Samples int
	// Out receives the events the demo function is invoked with.
	Out io.Writer
}

// Env is what dev mode runs the connector in: the embedded broker, holding
// the sample messages, and the demo gateway unless a real one was given.
type Env struct {
	// Config is the configuration given to Start, pointed at them.
	Config config.Config

	cluster *kfake.Cluster
	gateway *demoGateway // nil with a real gateway
	served  sync.WaitGroup
}

// Start starts the embedded broker and, unless opts.GatewayURL is set, the
// demo gateway, and writes the sample messages. The connector is the
// caller's to run, with Env.Config; Close stops what Start started.
func Start(ctx context.Context, cfg config.Config, opts Options, log *slog.Logger) (*Env, error) {
	if opts.KafkaAddr == "" {
		opts.KafkaAddr = "127.0.0.1:9092"
	}
	if opts.GatewayAddr == "" {
		opts.GatewayAddr = "127.0.0.1:8080"
	}
	if opts.Samples == 0 {
		opts.Samples = 3
	}
	_, portText, err := net.SplitHostPort(opts.KafkaAddr)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: %w", opts.KafkaAddr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: port is not a number", opts.KafkaAddr)
	}
	cluster, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(3),
		kfake.SeedTopics(3, DemoTopic),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the embedded kafka broker on %s: %w (use -kafka-addr to choose another)", opts.KafkaAddr, err)
	}
	e := &Env{Config: cfg, cluster: cluster}
	e.Config.Brokers = cluster.ListenAddrs()
	log.Info("embedded kafka broker started", "brokers", e.Config.Brokers, "topic", DemoTopic)

	if opts.GatewayURL == "" {
		srv, err := startDemoGateway(opts.GatewayAddr, opts.Out)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.gateway = srv
		e.served.Go(func() { srv.Serve() })
		e.Config.GatewayURL = "http://" + srv.addr
		log.Info("demo gateway started", "url", e.Config.GatewayURL, "function", DemoFunction, "topic", DemoTopic)
	} else {
		e.Config.GatewayURL = opts.GatewayURL
		log.Info("using the gateway at " + e.Config.GatewayURL + "; annotate a function with topic=" + DemoTopic + " to feed it")
	}

	samples := make([]string, opts.Samples)
	for i := range samples {
		samples[i] = fmt.Sprintf(`{"sample":%d,"message":"Hello from kafka-connector"}`, i+1)
	}
	if _, err := Produce(ctx, e.Config.SaramaProducer(), e.Config.Brokers, DemoTopic, nil, "", samples, nil); err != nil {
		e.Close()
		return nil, fmt.Errorf("writing the sample messages: %w", err)
	}
	log.Info("sample messages written; write more with: kafka-connector produce -brokers "+e.Config.Brokers[0]+" -topic "+DemoTopic+" 'hello'", "count", len(samples))
	return e, nil
}

// Close stops the demo gateway and the embedded broker.
func (e *Env) Close() {
	if e.gateway != nil {
		e.gateway.Close()
	}
	e.served.Wait()
	e.cluster.Close()
}

// Run starts the dev mode's environment and runs the connector in it until
// ctx ends.
func Run(ctx context.Context, cfg config.Config, opts Options, log *slog.Logger) error {
	e, err := Start(ctx, cfg, opts, log)
	if err != nil {
		return err
	}
	defer e.Close()
	return connector.New(e.Config, e.Config.Gateway(), log).Run(ctx)
}

type demoGateway struct {
	*http.Server
	ln   net.Listener
	addr string
}

func (d *demoGateway) Serve() { d.Server.Serve(d.ln) }

func startDemoGateway(addr string, out io.Writer) (*demoGateway, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting the demo gateway on %s: %w (use -gateway-addr to choose another)", addr, err)
	}
	var printing sync.Mutex
	gw := &gatewaytest.Gateway{NoRecord: true}
	gw.SetFunctions(types.Function{Name: DemoFunction, Annotations: map[string]string{types.TopicAnnotation: DemoTopic}})
	gw.Handle(DemoFunction, func(c *gatewaytest.Call) (int, []byte) {
		printing.Lock()
		defer printing.Unlock()
		fmt.Fprintf(out, "%s invoked (partition %s, offsets %s-%s, attempt %s):\n%s\n",
			DemoFunction, c.Header.Get("X-Kafka-Partition"), c.Header.Get("X-Kafka-First-Offset"),
			c.Header.Get("X-Kafka-Last-Offset"), c.Header.Get("X-Delivery-Attempt"), c.Body)
		return http.StatusOK, []byte("ok")
	})
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	return &demoGateway{Server: srv, ln: ln, addr: ln.Addr().String()}, nil
}

// Produce writes one message per element of messages to topic or, when
// messages is empty, one per line read from in. key nil writes messages
// without a key. A delim that is not empty splits each message at its first
// occurrence into a key and a value, as kcat's -K does; a message without
// it has no key. It returns how many were written and acknowledged. With
// sc from config.SaramaProducer, the brokers alone decide how large a
// message may be.
func Produce(ctx context.Context, sc *sarama.Config, brokers []string, topic string, key []byte, delim string, messages []string, in io.Reader) (int, error) {
	producer, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		return 0, fmt.Errorf("connecting to %v: %w", brokers, err)
	}
	defer producer.Close()
	send := func(value string) error {
		k := key
		if delim != "" {
			k = nil
			if before, after, found := strings.Cut(value, delim); found {
				k, value = []byte(before), after
			}
		}
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(value)}
		if k != nil {
			m.Key = sarama.ByteEncoder(k)
		}
		if _, _, err := producer.SendMessage(m); err != nil {
			if errors.Is(err, sarama.ErrMessageSizeTooLarge) {
				return fmt.Errorf("writing a message of %d bytes to %s: %w (the topic's max.message.bytes, or the brokers' message.max.bytes, is smaller)", len(value), topic, err)
			}
			return fmt.Errorf("writing to %s: %w", topic, err)
		}
		return nil
	}
	n := 0
	if len(messages) > 0 {
		for _, m := range messages {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			if err := send(m); err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}
	if in == nil {
		return 0, errors.New("no messages given and no input to read them from")
	}
	lines := bufio.NewScanner(in)
	lines.Buffer(make([]byte, 64<<10), 16<<20)
	for lines.Scan() {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := send(lines.Text()); err != nil {
			return n, err
		}
		n++
	}
	return n, lines.Err()
}
