package connector

import (
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

func TestStartForANeverCommittedPartition(t *testing.T) {
	subscribed := time.UnixMilli(1_700_000_000_000)
	asked := time.UnixMilli(1_600_000_000_000)
	tests := []struct {
		name  string
		asked types.StartOffset
		h     topicHistory
		want  startPoint
	}{
		{"latest, first subscription", types.StartOffset{}, topicHistory{}, startPoint{}},
		{"latest, another replica recorded the subscription", types.StartOffset{}, topicHistory{subscribed: subscribed}, startPoint{at: subscribed}},
		{"latest, recorded and late", types.StartOffset{}, topicHistory{subscribed: subscribed, late: true}, startPoint{at: subscribed}},
		{"latest, topic created after the trigger first looked", types.StartOffset{}, topicHistory{late: true}, startPoint{oldest: true}},
		{"latest, committed without a recorded time", types.StartOffset{}, topicHistory{committed: true}, startPoint{oldest: true}},
		{"earliest", types.StartOffset{Earliest: true}, topicHistory{subscribed: subscribed}, startPoint{oldest: true}},
		{"a time", types.StartOffset{At: asked}, topicHistory{}, startPoint{at: asked}},
		{"a time, whatever is recorded", types.StartOffset{At: asked}, topicHistory{subscribed: subscribed, late: true, committed: true}, startPoint{at: asked}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := startFor(tt.asked, tt.h); got != tt.want {
				t.Errorf("startFor = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSubscriptionTimeIsRecordedOnce(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	earlier := time.UnixMilli(1_700_000_000_000)
	asked := time.UnixMilli(1_600_000_000_000)
	tests := []struct {
		name  string
		asked types.StartOffset
		h     topicHistory
		want  time.Time
	}{
		{"first subscription", types.StartOffset{}, topicHistory{}, now},
		{"recorded before", types.StartOffset{}, topicHistory{subscribed: earlier}, earlier},
		{"a time", types.StartOffset{At: asked}, topicHistory{subscribed: earlier}, asked},
		{"earliest needs none", types.StartOffset{Earliest: true}, topicHistory{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := subscriptionTime(tt.asked, tt.h, now); !got.Equal(tt.want) {
				t.Errorf("subscriptionTime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStartMetadataRoundTrips(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	if got := parseStartMetadata(startMetadata(at)); !got.Equal(at) {
		t.Errorf("round trip of %v gave %v", at, got)
	}
	for _, other := range []string{"", "hello", startMetaPrefix, startMetaPrefix + "x", startMetaPrefix + "-5"} {
		if got := parseStartMetadata(other); !got.IsZero() {
			t.Errorf("parseStartMetadata(%q) = %v, want zero", other, got)
		}
	}
	if startMetadata(time.Time{}) != "" {
		t.Error("a zero time is recorded")
	}
}

func TestTailDeliverable(t *testing.T) {
	const pid, other = 7, 8
	commitMarker := func(at int64, p int64) recordBatch {
		return recordBatch{first: at, last: at, control: true, transactional: true, producerID: p}
	}
	abortMarker := func(at int64, p int64) recordBatch {
		b := commitMarker(at, p)
		b.abort = true
		return b
	}
	txn := func(first, last int64, p int64) recordBatch {
		return recordBatch{first: first, last: last, transactional: true, producerID: p}
	}
	tests := []struct {
		name                  string
		batches               []recordBatch
		aborted               []abortedTxn
		from, to              int64
		deliverable, complete bool
	}{
		{"a commit marker alone", []recordBatch{commitMarker(10, pid)}, nil, 10, 11, false, true},
		{"an aborted transaction and its marker", []recordBatch{txn(10, 12, pid), abortMarker(13, pid)}, []abortedTxn{{pid, 10}}, 10, 14, false, true},
		{"a committed transaction", []recordBatch{txn(10, 12, pid), commitMarker(13, pid)}, nil, 10, 14, true, true},
		{"a plain message", []recordBatch{{first: 10, last: 10}}, nil, 10, 11, true, true},
		{"aborted, then committed by the same producer", []recordBatch{txn(10, 11, pid), abortMarker(12, pid), txn(13, 13, pid), commitMarker(14, pid)}, []abortedTxn{{pid, 10}}, 10, 15, true, true},
		{"another producer's committed batch inside an aborted one", []recordBatch{txn(10, 10, pid), txn(11, 11, other), abortMarker(12, pid), commitMarker(13, other)}, []abortedTxn{{pid, 10}}, 10, 14, true, true},
		{"delivered records before from are not counted", []recordBatch{{first: 5, last: 9}, commitMarker(10, pid)}, nil, 10, 11, false, true},
		{"records past the end are not counted", []recordBatch{commitMarker(10, pid), {first: 11, last: 11}}, nil, 10, 11, false, true},
		{"a look that stops short", []recordBatch{commitMarker(10, pid)}, nil, 10, 12, false, false},
		{"nothing read", nil, nil, 10, 12, false, false},
		{"aborted transactions listed out of order", []recordBatch{txn(10, 10, other), txn(11, 11, pid), abortMarker(12, pid), abortMarker(13, other)}, []abortedTxn{{pid, 11}, {other, 10}}, 10, 14, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, c := tailDeliverable(tt.batches, tt.aborted, tt.from, tt.to)
			if d != tt.deliverable || c != tt.complete {
				t.Errorf("tailDeliverable = (deliverable %v, complete %v), want (%v, %v)", d, c, tt.deliverable, tt.complete)
			}
		})
	}
}

func TestControlRecordKey(t *testing.T) {
	if !controlAbort([]byte{0, 0, 0, 0}) || controlAbort([]byte{0, 0, 0, 1}) || controlAbort([]byte{0}) {
		t.Error("control record keys misread")
	}
}
