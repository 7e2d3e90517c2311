package respond

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// TransactionalID is the transactional id of the producer that writes the
// answers of one input partition for one consumer group. It is the same on
// every replica, so that whichever replica takes the partition fences the
// one that had it (see NewTransactional).
func TransactionalID(group, topic string, partition int32) string {
	return fmt.Sprintf("%s-%s-%d", group, topic, partition)
}

// Transactional writes the answers of one input partition and commits its
// offsets in Kafka transactions, exactly once for readers with
// isolation.level=read_committed. It is used by one goroutine.
//
// Fencing: every replica names the producer of a partition the same
// (TransactionalID). Starting one makes the transaction coordinator give
// the id a new epoch and abort the transaction the id had open, and from
// then on refuse the older epoch: a replica that lost the partition while
// it was paused, and comes back with a transaction open, can neither write
// in it nor commit it. This is how Kafka Streams fenced before KIP-447. Its
// cost is a producer, with its connections, per claimed partition.
type Transactional struct {
	client   sarama.Client
	producer sarama.SyncProducer
	group    string
	open     bool // a transaction was begun and not yet ended
	records  int  // records written in the open transaction
}

// NewTransactional starts the producer of a partition: conf must carry its
// TransactionalID. When it returns, the id's earlier holder is fenced and
// its transaction, if one was open, decided, so that Committed reads what
// the partition's last owner committed.
func NewTransactional(brokers []string, conf *sarama.Config, group string) (*Transactional, error) {
	conf.Producer.Partitioner = Partitioner
	client, err := sarama.NewClient(brokers, conf)
	if err != nil {
		return nil, fmt.Errorf("connecting a transactional producer to %v: %w", brokers, err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("starting transactional producer %s: %w", conf.Producer.Transaction.ID, err)
	}
	return &Transactional{client: client, producer: producer, group: group}, nil
}

// Committed reads the group's committed offset of a partition; -1 when it
// has none. Once NewTransactional has returned, no earlier owner's
// transaction is left open to move it: what it returns is where the
// partition's answers stop. Brokers from 2.5 are also asked to wait for
// transactional offsets still being written (require_stable, KIP-447).
func (t *Transactional) Committed(topic string, partition int32) (int64, error) {
	coordinator, err := t.client.Coordinator(t.group)
	if err != nil {
		return 0, fmt.Errorf("finding the coordinator of group %s: %w", t.group, err)
	}
	req := sarama.NewOffsetFetchRequest(t.client.Config().Version, t.group, map[string][]int32{topic: {partition}})
	if req.Version >= 7 {
		req.RequireStable = true
	}
	resp, err := coordinator.FetchOffset(req)
	if err != nil {
		_ = t.client.RefreshCoordinator(t.group)
		return 0, fmt.Errorf("reading the committed offset of group %s: %w", t.group, err)
	}
	if !errors.Is(resp.Err, sarama.ErrNoError) {
		return 0, fmt.Errorf("reading the committed offset of group %s: %w", t.group, resp.Err)
	}
	block := resp.GetBlock(topic, partition)
	if block == nil {
		return 0, fmt.Errorf("reading the committed offset of group %s for %s/%d: no answer", t.group, topic, partition)
	}
	if !errors.Is(block.Err, sarama.ErrNoError) {
		return 0, fmt.Errorf("reading the committed offset of group %s for %s/%d: %w", t.group, topic, partition, block.Err)
	}
	return block.Offset, nil
}

// Pending reports whether a transaction is open, and how many records were
// written in it.
func (t *Transactional) Pending() (open bool, records int) { return t.open, t.records }

// Write writes one batch's records in the open transaction, beginning one if
// none is and there are records. It returns once the brokers acknowledged them; they stay
// invisible to read_committed readers until Commit. After an error the
// transaction must be aborted: what it holds is lost.
func (t *Transactional) Write(msgs []*sarama.ProducerMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := t.begin(); err != nil {
		return err
	}
	t.records += len(msgs)
	return Send(t.producer, msgs, "records")
}

func (t *Transactional) begin() error {
	if t.open {
		return nil
	}
	if err := t.producer.BeginTxn(); err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	t.open = true
	t.records = 0
	return nil
}

// Commit commits the open transaction (beginning one if none is, for
// offsets alone) with the group's offset of the partition: next is the
// partition's next offset to consume. On an error the transaction is
// aborted: neither its records nor the offset are committed, and the
// batches it held must be delivered again.
func (t *Transactional) Commit(topic string, partition int32, next int64, metadata string) error {
	if err := t.begin(); err != nil {
		return err
	}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{
		topic: {{Partition: partition, Offset: next, Metadata: &metadata}},
	}
	if err := t.producer.AddOffsetsToTxn(offsets, t.group); err != nil {
		t.Abort()
		return fmt.Errorf("adding offset %d of %s/%d to the transaction: %w", next, topic, partition, err)
	}
	if err := t.producer.CommitTxn(); err != nil {
		t.Abort()
		return fmt.Errorf("committing the transaction: %w", err)
	}
	t.open, t.records = false, 0
	return nil
}

// Abort aborts the open transaction, if the producer can still say so; a
// fenced producer cannot, and the coordinator has aborted it already.
func (t *Transactional) Abort() {
	if t.open && t.Usable() {
		_ = t.producer.AbortTxn()
	}
	t.open, t.records = false, 0
}

// Usable reports whether the producer can go on with a new transaction:
// not after a fatal error, such as being fenced.
func (t *Transactional) Usable() bool {
	return t.producer.TxnStatus()&sarama.ProducerTxnFlagFatalError == 0
}

// Fenced reports whether err says that another producer took the
// transactional id: this replica no longer owns the partition.
func Fenced(err error) bool {
	return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
}

// Close closes the producer and its client, aborting an open transaction.
func (t *Transactional) Close() {
	if t == nil {
		return
	}
	t.Abort()
	t.producer.Close()
	t.client.Close()
}
