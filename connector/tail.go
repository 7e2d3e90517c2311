package connector

import (
	"encoding/binary"
	"slices"
)

// Sarama hands the application neither transaction markers nor the
// messages of aborted transactions, so after the last committed message of
// a partition has been delivered, the group's position stops short of the
// partition's end by the markers (and aborted messages) that follow it, and
// lag never reads 0. A Java consumer's position moves past them. The
// connector does the same, soundly: it reads the stretch between its
// position and the end itself, and commits the end only when nothing in
// between is a message that a read_committed consumer would deliver.

// recordBatch is what tailDeliverable needs of one record batch.
type recordBatch struct {
	first, last   int64 // offsets of its first and last record
	control       bool  // a transaction marker
	abort         bool  // for a marker: it ends an aborted transaction
	transactional bool
	producerID    int64
}

// abortedTxn is an aborted transaction as a fetch response lists it: the
// producer and the first offset of the transaction.
type abortedTxn struct {
	producerID  int64
	firstOffset int64
}

// tailDeliverable reports whether any record in [from, to) would be handed
// to a read_committed consumer, given the batches read from `from` on, in
// offset order, and the aborted transactions of the response. complete is
// false when the batches do not reach to: nothing can then be concluded.
// The rule is sarama's own: a producer's transactional batches are aborted
// from the first offset of an aborted transaction up to its abort marker.
func tailDeliverable(batches []recordBatch, aborted []abortedTxn, from, to int64) (deliverable, complete bool) {
	aborted = slices.Clone(aborted)
	slices.SortFunc(aborted, func(a, b abortedTxn) int { return int(a.firstOffset - b.firstOffset) })
	abortedBy := make(map[int64]bool)
	reached := from
	for _, b := range batches {
		for len(aborted) > 0 && aborted[0].firstOffset <= b.last {
			abortedBy[aborted[0].producerID] = true
			aborted = aborted[1:]
		}
		if b.last >= from && b.first < to {
			switch {
			case b.control:
			case b.transactional && abortedBy[b.producerID]:
			default:
				return true, true
			}
		}
		if b.control && b.abort {
			delete(abortedBy, b.producerID)
		}
		reached = max(reached, b.last+1)
	}
	return false, reached >= to
}

// controlAbort reads a control record's key: version (int16) then type
// (int16), 0 for abort and 1 for commit.
func controlAbort(key []byte) bool {
	return len(key) >= 4 && binary.BigEndian.Uint16(key[2:4]) == 0
}
