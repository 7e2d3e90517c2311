package respond

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Writer writes records at least once: Write returns once the brokers
// acknowledged every record. One Writer serves every partition of a
// trigger, concurrently; it connects on first use.
//
// It writes a batch's answer as one produce request to each broker that
// leads one of its records' partitions, and waits for the answers: a
// function that answers a record for each message makes this the
// connector's busiest write, and sarama's producer, which takes records one
// at a time through a goroutine each for the dispatch, the partition and
// the broker, cost three times as much a record. What it gives up is the
// producer's own retries: a write that fails is retried whole by the
// caller, with backoff, and the same holds of order (see Write).
type Writer struct {
	brokers   []string
	newConfig func() *sarama.Config

	mu     sync.Mutex
	client sarama.Client
	conf   *sarama.Config
}

// NewWriter returns a writer to brokers. newConfig gives the client's
// configuration: its TLS and SASL, the acknowledgement asked
// (Producer.RequiredAcks: every in-sync replica), Producer.Timeout,
// Producer.Compression and Producer.MaxMessageBytes, the most a request
// carries for a partition.
func NewWriter(brokers []string, newConfig func() *sarama.Config) *Writer {
	return &Writer{brokers: brokers, newConfig: newConfig}
}

// Write writes the records of an answer to src to topic, each to the
// partition Partitioner gives it, and waits for the brokers'
// acknowledgement. The records of one partition are written in their
// order; and the records of a Write called after another returned are
// written after that one's, so that a caller writing one answer at a time
// (a partition's batches under ordering=partition, a key's under
// ordering=key) keeps them in order.
//
// A write that fails in part is retried whole by the caller, so a record
// may be written twice: readers that mind drop the copies by their
// idempotency key. A broker that moved a partition's leadership or lost its
// connection makes the next write look the leaders up again.
func (w *Writer) Write(topic string, src Source, records []Record) error {
	if len(records) == 0 {
		return nil
	}
	client, conf, err := w.get()
	if err != nil {
		return err
	}
	n, err := partitionCount(client, topic)
	if err != nil {
		return err
	}
	headers := src.recordHeaders()
	now := time.Now().Truncate(time.Millisecond)
	// Each broker's requests, sent one after the other. A partition's
	// records fill its batch in one request up to MaxMessageBytes, and go
	// on in the next: a request never holds records of a partition that
	// come before those of an earlier request.
	type route struct {
		reqs []*request
		at   map[int32]int // the request holding a partition's last batch
	}
	var brokers []*sarama.Broker
	routes := make(map[*sarama.Broker]*route)
	leaders := make([]*sarama.Broker, n)
	recs := make([]sarama.Record, len(records)) // one allocation, not one a record
	for i, r := range records {
		p := place(r.Key, src.Partition, n)
		b := leaders[p]
		if b == nil {
			if b, err = client.Leader(topic, p); err != nil {
				return fmt.Errorf("finding the leader of %s/%d: %w", topic, p, err)
			}
			leaders[p] = b
		}
		rt := routes[b]
		if rt == nil {
			rt = &route{at: make(map[int32]int)}
			routes[b] = rt
			brokers = append(brokers, b)
		}
		size := recordSize(r, headers)
		at, held := rt.at[p]
		if held && rt.reqs[at].parts[p].size+size > conf.Producer.MaxMessageBytes {
			at++
		}
		if at == len(rt.reqs) {
			rt.reqs = append(rt.reqs, &request{req: newProduceRequest(conf), parts: make(map[int32]*part)})
		}
		rt.at[p] = at
		rq := rt.reqs[at]
		pt := rq.parts[p]
		if pt == nil {
			pt = &part{size: recordBatchOverhead, batch: &sarama.RecordBatch{
				Version: 2, FirstTimestamp: now, MaxTimestamp: now,
				Codec: conf.Producer.Compression, CompressionLevel: conf.Producer.CompressionLevel,
				ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
			}}
			rq.parts[p] = pt
			rq.req.AddBatch(topic, p, pt.batch)
		}
		batch := pt.batch
		hs := headers
		if len(r.Headers) > 0 {
			hs = ownHeaders(r.Headers, headers)
		}
		recs[i] = sarama.Record{OffsetDelta: int64(len(batch.Records)), Key: r.Key, Value: r.Value, Headers: hs}
		batch.Records = append(batch.Records, &recs[i])
		batch.LastOffsetDelta = int32(len(batch.Records) - 1)
		pt.size += size
		rq.count++
	}
	errs := make([]error, len(brokers))
	send := func(i int) {
		for _, rq := range routes[brokers[i]].reqs {
			if errs[i] = produce(client, brokers[i], topic, rq); errs[i] != nil {
				return
			}
		}
	}
	if len(brokers) == 1 {
		send(0)
	} else {
		var wg sync.WaitGroup
		for i := range brokers {
			wg.Go(func() { send(i) })
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// request is a produce request being filled: a record batch for each
// partition it writes to, each kept within Producer.MaxMessageBytes.
type request struct {
	req   *sarama.ProduceRequest
	parts map[int32]*part
	count int // records in all its batches
}

type part struct {
	batch *sarama.RecordBatch
	size  int // bytes, counted as sarama's producer counts them
}

// recordBatchOverhead and recordOverhead bound what a batch and a record
// add to their keys, values and headers, as sarama's producer counts them.
const (
	recordBatchOverhead = 49
	recordOverhead      = 5*binary.MaxVarintLen32 + binary.MaxVarintLen64 + 1
)

func recordSize(r Record, headers []*sarama.RecordHeader) int {
	size := recordOverhead + len(r.Key) + len(r.Value)
	for _, h := range headers {
		size += len(h.Key) + len(h.Value) + 2*binary.MaxVarintLen32
	}
	for _, h := range r.Headers {
		size += len(h.Key) + len(h.Value) + 2*binary.MaxVarintLen32
	}
	return size
}

// newProduceRequest is a request as sarama's producer makes it for the
// configured Kafka version, from 0.11 on (record batches).
func newProduceRequest(conf *sarama.Config) *sarama.ProduceRequest {
	req := &sarama.ProduceRequest{RequiredAcks: conf.Producer.RequiredAcks, Timeout: int32(conf.Producer.Timeout / time.Millisecond), Version: 3}
	for _, v := range []struct {
		kafka   sarama.KafkaVersion
		version int16
	}{{sarama.V1_0_0_0, 5}, {sarama.V2_0_0_0, 6}, {sarama.V2_1_0_0, 7}, {sarama.V2_4_0_0, 8}, {sarama.V2_8_0_0, 9}, {sarama.V3_7_0_0, 10}} {
		if conf.Version.IsAtLeast(v.kafka) {
			req.Version = v.version
		}
	}
	return req
}

// produce sends one request and reads what the broker says of each
// partition. It sends with AsyncProduce, not Produce, which holds the
// broker's lock until the answer: the partitions of a trigger that write
// to the same broker then have their requests in flight together, up to
// Net.MaxOpenRequests, instead of one after the other. A connection that
// failed is closed, as sarama's producer closes it, and opened again by
// the next write; a partition whose leader moved has its metadata
// refreshed for the next write.
func produce(client sarama.Client, b *sarama.Broker, topic string, rq *request) error {
	type answer struct {
		resp *sarama.ProduceResponse
		err  error
	}
	// The callback runs on the broker's reading goroutine, which must not
	// wait: the channel holds its one answer.
	answered := make(chan answer, 1)
	err := b.AsyncProduce(rq.req, func(resp *sarama.ProduceResponse, err error) { answered <- answer{resp, err} })
	if err == nil {
		a := <-answered
		err = a.err
		if err == nil {
			return partitionErrors(client, topic, a.resp, rq)
		}
	}
	var encoding sarama.PacketEncodingError
	if !errors.As(err, &encoding) && !errors.Is(err, sarama.ErrNotConnected) {
		// Not closed yet, and not a request that cannot be encoded, which
		// says nothing of the connection.
		_ = b.Close()
	}
	_ = client.RefreshMetadata(topic)
	return fmt.Errorf("writing %d records to %s at broker %s: %w", rq.count, topic, b.Addr(), err)
}

// partitionErrors reads what a broker answered for each partition written.
func partitionErrors(client sarama.Client, topic string, resp *sarama.ProduceResponse, rq *request) error {
	var pes sarama.ProducerErrors
	failed := 0
	for p, pt := range rq.parts {
		// A partition the broker does not answer for is not written.
		err := sarama.ErrIncompleteResponse
		if block := resp.GetBlock(topic, p); block != nil {
			err = block.Err
		}
		if err != sarama.ErrNoError {
			pes = append(pes, &sarama.ProducerError{Msg: &sarama.ProducerMessage{Topic: topic, Partition: p}, Err: err})
			failed += len(pt.batch.Records)
		}
	}
	if len(pes) == 0 {
		return nil
	}
	_ = client.RefreshMetadata(topic) // a leader that moved, most often
	e := newWriteError(pes, rq.count, "records")
	e.Failed = failed
	return e
}

// partitionCount is how many partitions topic has, as last read; a topic
// the connector has not read yet is looked up.
func partitionCount(client sarama.Client, topic string) (int32, error) {
	ps, err := client.Partitions(topic)
	if err != nil {
		return 0, fmt.Errorf("reading the partitions of %s: %w", topic, err)
	}
	if len(ps) == 0 {
		return 0, fmt.Errorf("reading the partitions of %s: %w", topic, sarama.ErrUnknownTopicOrPartition)
	}
	return int32(len(ps)), nil
}

func (w *Writer) get() (sarama.Client, *sarama.Config, error) {
	w.mu.Lock()
	c, conf := w.client, w.conf
	w.mu.Unlock()
	if c != nil {
		return c, conf, nil
	}
	// Connecting happens outside the lock: the partitions that want the
	// client already there do not wait for a slow connection.
	conf = w.newConfig()
	c, err := sarama.NewClient(w.brokers, conf)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting a producer to %v: %w", w.brokers, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.client != nil {
		c.Close()
		return w.client, w.conf, nil
	}
	w.client, w.conf = c, conf
	return c, conf, nil
}

// Close closes the client, once no partition writes any more.
func (w *Writer) Close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.client != nil {
		w.client.Close()
		w.client = nil
	}
}
