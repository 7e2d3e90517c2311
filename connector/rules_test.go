package connector

import (
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/types"
)

func TestStartForANeverCommittedPartition(t *testing.T) {
	subscribed := time.UnixMilli(1_700_000_000_000)
	asked := time.UnixMilli(1_600_000_000_000)
	three := subscription{at: subscribed, partitions: 3}      // the topic had partitions 0 to 2
	uncounted := subscription{at: subscribed, partitions: -1} // recorded by a release that did not count
	none := subscription{at: subscribed, partitions: 0}       // the topic was created after the subscription
	tests := []struct {
		name  string
		asked types.StartOffset
		h     topicHistory
		p     int32
		want  startPoint
	}{
		{"latest, first subscription", types.StartOffset{}, topicHistory{}, 0, startPoint{}},
		{"latest, another replica recorded the subscription", types.StartOffset{}, topicHistory{subscribed: three}, 2, startPoint{at: subscribed}},
		{"latest, a partition added since", types.StartOffset{}, topicHistory{subscribed: three}, 3, startPoint{oldest: true}},
		{"latest, a partition added since, and this replica thinks the topic late", types.StartOffset{}, topicHistory{subscribed: three, late: true}, 5, startPoint{oldest: true}},
		{"latest, recorded, and this replica thinks the topic late", types.StartOffset{}, topicHistory{subscribed: three, late: true}, 1, startPoint{at: subscribed}},
		{"latest, recorded without a count", types.StartOffset{}, topicHistory{subscribed: uncounted}, 7, startPoint{at: subscribed}},
		{"latest, a topic created since, recorded", types.StartOffset{}, topicHistory{subscribed: none}, 0, startPoint{oldest: true}},
		{"latest, topic created after the trigger first looked", types.StartOffset{}, topicHistory{late: true}, 0, startPoint{oldest: true}},
		{"latest, committed without a recorded time", types.StartOffset{}, topicHistory{committed: true}, 0, startPoint{oldest: true}},
		{"earliest", types.StartOffset{Earliest: true}, topicHistory{subscribed: three}, 0, startPoint{oldest: true}},
		{"a time", types.StartOffset{At: asked}, topicHistory{}, 0, startPoint{at: asked}},
		{"a time, a partition that existed", types.StartOffset{At: asked}, topicHistory{subscribed: three, committed: true}, 1, startPoint{at: asked}},
		{"a time, a partition added since", types.StartOffset{At: asked}, topicHistory{subscribed: three}, 3, startPoint{oldest: true}},
		{"a time, a topic created after the trigger first looked", types.StartOffset{At: asked}, topicHistory{late: true}, 0, startPoint{oldest: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := startFor(tt.asked, tt.h, tt.p); got != tt.want {
				t.Errorf("startFor = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSubscriptionIsRecordedOnce(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	earlier := time.UnixMilli(1_700_000_000_000)
	asked := time.UnixMilli(1_600_000_000_000)
	tests := []struct {
		name  string
		asked types.StartOffset
		h     topicHistory
		want  subscription
	}{
		{"first subscription", types.StartOffset{}, topicHistory{}, subscription{at: now, partitions: 6}},
		{"first subscription of a topic created since", types.StartOffset{}, topicHistory{late: true}, subscription{at: now, partitions: 0}},
		{"recorded before", types.StartOffset{}, topicHistory{subscribed: subscription{at: earlier, partitions: 3}}, subscription{at: earlier, partitions: 3}},
		{"recorded before without a count", types.StartOffset{}, topicHistory{subscribed: subscription{at: earlier, partitions: -1}}, subscription{at: earlier, partitions: 6}},
		{"a time", types.StartOffset{At: asked}, topicHistory{subscribed: subscription{at: earlier, partitions: 3}}, subscription{at: asked, partitions: 3}},
		{"a first time", types.StartOffset{At: asked}, topicHistory{}, subscription{at: asked, partitions: 6}},
		{"earliest needs none", types.StartOffset{Earliest: true}, topicHistory{}, subscription{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := subscriptionFor(tt.asked, tt.h, now, 6); got != tt.want {
				t.Errorf("subscriptionFor = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEarlierSubscription(t *testing.T) {
	a := time.UnixMilli(1_700_000_000_000)
	b := a.Add(time.Hour)
	tests := []struct {
		s, o, want subscription
	}{
		{subscription{}, subscription{at: a, partitions: 3}, subscription{at: a, partitions: 3}},
		{subscription{at: b, partitions: 6}, subscription{}, subscription{at: b, partitions: 6}},
		{subscription{at: b, partitions: 6}, subscription{at: a, partitions: 3}, subscription{at: a, partitions: 3}},
		{subscription{at: a, partitions: -1}, subscription{at: b, partitions: 6}, subscription{at: a, partitions: 6}},
		{subscription{at: a, partitions: 3}, subscription{at: b, partitions: -1}, subscription{at: a, partitions: 3}},
	}
	for _, tt := range tests {
		if got := tt.s.earlier(tt.o); got != tt.want {
			t.Errorf("%+v.earlier(%+v) = %+v, want %+v", tt.s, tt.o, got, tt.want)
		}
	}
}

func TestStartMetadataRoundTrips(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	for _, s := range []subscription{{at: at, partitions: 12}, {at: at, partitions: 0}, {at: at, partitions: -1}} {
		if got := parseStartMetadata(startMetadata(s)); got != s {
			t.Errorf("round trip of %+v gave %+v", s, got)
		}
	}
	// What releases that did not count partitions wrote.
	if got := parseStartMetadata(startMetaPrefix + "1700000000123"); got != (subscription{at: at, partitions: -1}) {
		t.Errorf("a record without a count reads as %+v", got)
	}
	for _, other := range []string{"", "hello", startMetaPrefix, startMetaPrefix + "x", startMetaPrefix + "-5",
		startMetaPrefix + "5" + startMetaPartitions + "x", startMetaPrefix + "5" + startMetaPartitions + "-1"} {
		if got := parseStartMetadata(other); got.known() {
			t.Errorf("parseStartMetadata(%q) = %+v, want unknown", other, got)
		}
	}
	if startMetadata(subscription{}) != "" {
		t.Error("an unknown subscription is recorded")
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
