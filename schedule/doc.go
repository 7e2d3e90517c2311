// Package schedule holds the rules by which one partition's messages become
// invocations, when more than one may be in flight: which message may go
// next, what may be committed, when the partition must stop reading. It is
// pure logic, with no Kafka, no HTTP and no clock of its own, so that the
// rules can be tested exhaustively; the partition worker owns the timers,
// the invocations and the retries.
//
// # The model
//
// A Scheduler holds a partition's window: the messages from the committed
// offset on, in offset order. Each message is queued (read, not yet in a
// batch), open (in a batch in flight) or finished (succeeded, given up on,
// dead-lettered, or skipped by a filter). The worker
//
//   - reads a message only while !Full, and hands it to Add (or to Skip,
//     when it needs no invocation);
//   - starts every batch that Next(false) returns; while Ready holds and
//     Next(false) returns nothing, it runs its max_wait timer, and when that
//     fires it starts what Next(true) returns;
//   - retries a batch with the same records, for as long as it likes: the
//     batch stays open, and so do its keys. A partial success (the
//     function's batchItemFailures) is Partial(id, firstFailed): the
//     records before it are finished, the batch keeps its ID and the rest;
//   - reports Done(id) when the batch succeeded or was given up on;
//   - marks Committable for commit after Skip, Done or Partial.
//
// A batch takes eligible messages while it holds fewer than MaxMessages and
// the sum of their Size stays within MaxBytes; its first message is always
// taken, so that an oversized message goes alone. Under OrderPartition and
// OrderNone it takes them in offset order; under OrderKey, key by key (see
// below). It stops at the first eligible message that does not fit, so
// that no message is overtaken by a later one of the same ordering, and it
// holds its messages in offset order. Next(false)
// returns only a batch that could not get fuller by waiting: it is full,
// or the window is. At most Concurrency batches are open at once, and at
// most Limit, which back-pressure lowers (see AIMD and SetLimit).
//
// # Orderings
//
// Which queued messages are eligible depends on the ordering:
//
//   - OrderPartition: all of them, with a concurrency of 1. This is the
//     same code as OrderNone, and one batch in flight at a time is what
//     makes its batches contiguous runs of offsets in offset order: the
//     connector's behaviour before orderings existed, batch for batch.
//   - OrderKey: the messages of the keys that have nothing open. A batch
//     takes whole keys: the key of the oldest eligible message with all its
//     queued messages, then the key of the oldest one left, and so on, so
//     that a key's messages travel together behind its first instead of
//     one a batch (with ten keys a partition, batches of one message of
//     each key would hold every key for one invocation a message). Once a
//     batch holds a message of a key, no message of the key may go in
//     another batch until the batch is finished with the key: Done, or a
//     Partial that finishes all its messages of that key. So a message is first
//     sent only after every earlier message of its key finished, or in the
//     same batch behind them, and two open batches never share a key. A key
//     in flight or retrying holds back its own messages only; the others go
//     on, up to the window.
//   - OrderNone: all of them.
//
// Messages without a key (nil or empty; Kafka's null key and empty key
// alike) all share one key under OrderKey. It is the safe choice: a topic
// whose producers set no key is often one whose order matters as a whole,
// and spreading its messages would reorder them without a word. They wait
// only on each other, never on keyed messages. Keys are told apart by a
// 64-bit hash of their bytes; two keys whose hashes collide would be
// ordered as one, which is slower, never out of order.
//
// # Commits
//
// Committable is the lowest offset not finished, or the offset after the
// last message when all are finished: whatever order batches finish in,
// the committed offset never passes a message that has not finished, and
// it never goes back. Finished messages after an unfinished one stay in
// the window, without their payload, until the commit passes them.
//
// # The window bound, memory and redelivery
//
// The window holds at most Window messages (finished ones included), and
// its unfinished ones hold less than WindowBytes of Size before the last
// message read: Full reports either bound reached, Add then refuses a
// message, and the worker stops reading the partition until its oldest
// work finishes. (The worker has no way to know a message's size before
// reading it, hence the one message more.) By default Window is (Concurrency+1) ×
// MaxMessages and WindowBytes (Concurrency+1) × MaxBytes: every batch in
// flight full, and the next one filling. The worker may lower either to
// fit a memory budget; below MaxMessages, batches are smaller.
//
// So memory per partition is bounded by WindowBytes of messages (and one
// more) plus at most about 100 bytes of bookkeeping per message of the
// window (its slot, twice over as the buffer doubles, and its key's state),
// whatever happens: a
// key that retries for ever holds the commit back, the window fills behind
// it, and the partition stops reading. And since everything after the
// committed offset is delivered again after a crash or a rebalance, a crash
// re-delivers at most Window messages of a partition (at-least-once).
//
// # Cost
//
// Add, Skip, Done and Partial cost O(1) a message, and so does Next without
// keys (OrderPartition, OrderNone): the queued messages are then always the
// window's tail, read from a cursor. Under OrderKey, Next takes the eligible
// keys from a heap ordered by their oldest message, O(log k) a key for k
// eligible keys, follows each key's queue, O(1) a message, and sorts the
// batch by offset when it took more than one key; never a scan of the
// window. Add and Done cost O(log k) when they make a key eligible. A busy
// partition's batches reuse the items of the last batch done.
//
// # Limits and back-pressure
//
// AIMD is a pure in-flight limit, halved by back-pressure and raised by one
// for every round of successes. Gate applies one to goroutines: for the
// function-wide max_inflight, shared by every partition of a function on a
// replica, and for the attempts of one partition's batches. BackPressure
// and RetryAfter read a 429 or 503 into how long to wait at least.
//
// A partition worker would then: acquire a permit of its partition's Gate
// (ceiling Concurrency) and of its function's (ceiling max_inflight, nil
// when 0) around every attempt, retries included, and release each with
// the attempt's Outcome; on back-pressure, wait at least the Retry-After
// without counting the attempt against max_retries; and call
// SetLimit(partitionGate.Limit()) so that batches are not opened only to
// wait for a permit. A revoked or draining partition calls Stop: nothing
// new starts, batches in flight finish (and their contiguous prefix is
// committed) or are abandoned uncommitted with the scheduler.
package schedule
