package connector_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// gauge reads a gauge's value off a scrape; false when the series is absent.
func gauge(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscanf(v, "%g", &f); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// TestLagAndAgeAreTrueWhenRead: a backlog's lag is never shown as 0 before
// it was measured, the age of the oldest undelivered message is its age
// when scraped, and both read 0 as soon as everything is delivered.
func TestLagAndAgeAreTrueWhenRead(t *testing.T) {
	client, gw, cfg := setup(t, "aged")
	gw.SetFunctions(fn("slowpoke", "aged"))
	cfg.InitialOffset = types.StartOffset{Earliest: true}
	cfg.RebuildInterval = 10 * time.Minute // lag looked at on a timer every 10 s
	release := make(chan struct{})
	var held atomic.Int32
	gw.Handle("slowpoke", func(c *gatewaytest.Call) (int, []byte) {
		held.Add(1)
		select {
		case <-release:
		case <-c.Context().Done():
		}
		return http.StatusOK, nil
	})
	var recs []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for range 10 {
			r := testkit.Record("aged", p, nil, []byte("x"))
			r.Timestamp = time.Now().Add(-time.Hour)
			recs = append(recs, r)
		}
	}
	client.Produce(recs...)
	r := testkit.Start(t, cfg)
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()
	series := func(name string, p int32) string {
		return fmt.Sprintf(`kafka_connector_%s{function="slowpoke",partition="%d",topic="aged"}`, name, p)
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		text := scrapeMetrics(t, srv.URL)
		measured := 0
		for p := int32(0); p < partitions; p++ {
			if lag, ok := gauge(text, series("consumer_lag_messages", p)); ok {
				if lag == 0 {
					t.Fatalf("partition %d shows a lag of 0 with a backlog of 10:\n%s", p, grep(text, "lag"))
				}
				measured++
			}
		}
		return measured == partitions && held.Load() == partitions
	}, "every partition's lag measured, and a call of each in flight")
	text := scrapeMetrics(t, srv.URL)
	for p := int32(0); p < partitions; p++ {
		if age, _ := gauge(text, series("oldest_undelivered_seconds", p)); age < 3600 {
			t.Errorf("partition %d: oldest undelivered message %gs old, want an hour: it was written an hour ago", p, age)
		}
	}
	close(release)
	testkit.Eventually(t, 20*time.Second, func() bool {
		c := client.Committed("kafka-connector-slowpoke")["aged"]
		return c[0] == 10 && c[1] == 10 && c[2] == 10
	}, "everything delivered and committed")
	text = scrapeMetrics(t, srv.URL)
	for p := int32(0); p < partitions; p++ {
		age, _ := gauge(text, series("oldest_undelivered_seconds", p))
		lag, _ := gauge(text, series("consumer_lag_messages", p))
		if age != 0 || lag != 0 {
			t.Errorf("partition %d, everything delivered: oldest undelivered %gs, lag %g; want 0 and 0", p, age, lag)
		}
	}
}

// TestNotReadyWhilePartitionsCannotStart: a trigger whose partitions do
// not start (their start offsets cannot be looked up) is not ready, even
// while it is in its group.
func TestNotReadyWhilePartitionsCannotStart(t *testing.T) {
	client, gw, cfg := setup(t, "stuck")
	gw.SetFunctions(fn("never", "stuck"))
	cfg.InitialOffset = types.StartOffset{Earliest: true}
	c := client.Cluster
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, topic := range r.Topics {
			if topic.Topic != "stuck" {
				return nil, nil, false
			}
			rt := kmsg.NewListOffsetsResponseTopic()
			rt.Topic = topic.Topic
			for _, p := range topic.Partitions {
				rp := kmsg.NewListOffsetsResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.UnknownServerError.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		// The look-up takes a while before it fails, as a broker's that
		// cannot answer does.
		c.SleepControl(func() { time.Sleep(200 * time.Millisecond) })
		refused.Add(1)
		return resp, nil, true
	})
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 30*time.Second, func() bool {
		if r.Ready() {
			t.Fatalf("ready while no partition can start:\n%s", r.Logs())
		}
		return strings.Count(r.Logs(), "cannot consume") >= 2
	}, "the trigger tries to consume twice")
}

// TestNotReadyWhileTheBrokersDoNotAnswer: brokers that stop answering the
// trigger's looks at its partitions make it not ready, said once in the
// log, and ready again, said once, when they answer.
func TestNotReadyWhileTheBrokersDoNotAnswer(t *testing.T) {
	client, gw, cfg := setup(t, "frozen")
	gw.SetFunctions(fn("patient", "frozen"))
	cfg.RebuildInterval = time.Second // looks every second; silent after 10 s
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, r.Ready, "ready")
	c := client.Cluster
	thaw := make(chan struct{})
	var frozen atomic.Bool
	frozen.Store(true)
	c.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if frozen.Load() {
			c.SleepControl(func() { <-thaw })
		}
		return nil, nil, false
	})
	testkit.Eventually(t, 40*time.Second, func() bool { return !r.Ready() }, "not ready while the brokers do not answer")
	frozen.Store(false)
	close(thaw)
	testkit.Eventually(t, 20*time.Second, r.Ready, "ready again once they answer")
	logs := r.Logs()
	if strings.Count(logs, "the brokers have not answered") != 1 || strings.Count(logs, "the brokers answer again") != 1 {
		t.Errorf("want one line each way:\n%s", grep(logs, "brokers"))
	}
}
