package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// The Avro phase: the connector with max_messages=100, as the row it is
// compared with, over a backlog of the same number of 100-byte values
// written as Avro through a schema registry (the Confluent wire format),
// with value_format=schema-registry: every value is decoded to JSON before
// it is batched.
const (
	topicAvro       = "backlog-avro"
	avroMaxMessages = 100
	avroSchema      = `{"type":"record","name":"Reading","namespace":"bench","fields":[` +
		`{"name":"id","type":"string"},{"name":"seq","type":"long"},{"name":"ok","type":"boolean"},{"name":"note","type":"string"}]}`
	// targetAvroRatio is the least rate of the Avro phase against the
	// raw phase of the same max_messages in the same run.
	targetAvroRatio = 0.6
)

// avroBacklog is the registry and the schema the Avro backlog is written with.
type avroBacklog struct {
	registry *srfake.Registry
	schema   avro.Schema
	id       int
	// jsonSize is the length of every value decoded to JSON: the values
	// are all of one length, and so are their JSON texts.
	jsonSize int
}

func startAvro() (*avroBacklog, error) {
	reg := srfake.New()
	id, _, err := reg.RegisterSchema(topicAvro+"-value", sr.Schema{Schema: avroSchema})
	if err != nil {
		reg.Close()
		return nil, err
	}
	s, err := avro.ParseWithCache(avroSchema, "", &avro.SchemaCache{})
	if err != nil {
		reg.Close()
		return nil, err
	}
	a := &avroBacklog{registry: reg, schema: s, id: id}
	a.jsonSize = len(fmt.Sprintf(`{"id":"%010d","seq":%d,"ok":true,"note":"%s"}`, 0, int64(1e9), strings.Repeat("a", avroNote)))
	return a, nil
}

// avroNote is the length of every value's note, for values of 100 bytes:
// 5 bytes of header, 11 of id, 5 of seq (under 2^34), 1 of ok and 2 of the
// note's length.
const avroNote = 100 - 5 - 11 - 5 - 1 - 2

// value encodes message i of the backlog: a fixed-width id and seq, so that
// every value and its JSON are of one length.
func (a *avroBacklog) value(i int64) ([]byte, error) {
	return sr.Encode(map[string]any{
		"id": fmt.Sprintf("%010d", i), "seq": int64(1e9) + i, "ok": true, "note": strings.Repeat("a", avroNote),
	}, &sr.ConfluentHeader{}, a.id, nil, func(v any) ([]byte, error) { return avro.Marshal(a.schema, v) })
}

func (a *avroBacklog) close() { a.registry.Close() }

// produceAvro writes n Avro values to topic as produceBacklog writes its
// values.
func produceAvro(ctx context.Context, brokers []string, topic string, partitions int32, n int, a *avroBacklog) error {
	return produceWith(ctx, brokers, topic, partitions, n, func(i int) ([]byte, error) { return a.value(int64(i)) })
}

// avroPhase runs the connector over the Avro backlog.
func (b *bench) avroPhase(r int) (*phaseResult, error) {
	return b.throughput(r, phaseSpec{name: "avro values", topic: topicAvro, maxMessages: avroMaxMessages, target: b.n, size: b.avro.jsonSize,
		env: []string{"value_format=schema-registry", "schema_registry_url=" + b.avro.registry.URL()}})
}
