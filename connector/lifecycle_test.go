package connector_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// metricValue is the value of one series in a scrape, as written there:
// name{labels in alphabetical order}.
func metricValue(scrape, series string) (float64, bool) {
	for _, l := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestFailedTriggerIsRestarted(t *testing.T) {
	client, gw, cfg := setup(t, "phoenix")
	gw.SetFunctions(fn("phoenix-fn", "phoenix"))
	// The brokers hang up on every metadata request, so that the trigger's
	// Kafka client cannot be created and its run fails at once.
	var refusing atomic.Bool
	refusing.Store(true)
	cluster := client.Cluster
	cluster.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !refusing.Load() {
			return nil, nil, false
		}
		cluster.KeepControl()
		return nil, errors.New("hanging up"), true
	})
	r := testkit.Start(t, cfg)
	srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
	defer srv.Close()

	testkit.Eventually(t, 30*time.Second, func() bool {
		m := scrapeMetrics(t, srv.URL)
		restarts, _ := metricValue(m, `kafka_connector_trigger_restarts_total{function="phoenix-fn"}`)
		restarting, _ := metricValue(m, `kafka_connector_functions{state="restarting"}`)
		return restarts >= 2 && restarting == 1
	}, "two restarts counted, the trigger waiting to start again:\n%s", grep(scrapeMetrics(t, srv.URL), "kafka_connector_"))
	if r.Ready() {
		t.Error("ready while the only trigger cannot start")
	}
	if !strings.Contains(r.Logs(), "trigger failed; starting it again") || !strings.Contains(r.Logs(), "cannot reach kafka brokers") {
		t.Errorf("no error line saying the trigger failed and why:\n%s", r.Logs())
	}

	refusing.Store(false)
	produceSpread(client, "phoenix", 2)
	testkit.Eventually(t, 60*time.Second, func() bool {
		return successes(t, gw.Calls("phoenix-fn")).count("phoenix") == 2*partitions
	}, "the restarted trigger delivers")
	testkit.Eventually(t, 10*time.Second, r.Ready, "ready once the trigger runs")
	m := scrapeMetrics(t, srv.URL)
	if v, _ := metricValue(m, `kafka_connector_functions{state="restarting"}`); v != 0 {
		t.Errorf("functions{state=restarting} is %v once the trigger runs", v)
	}
	if v, _ := metricValue(m, `kafka_connector_functions{state="running"}`); v != 1 {
		t.Errorf("functions{state=running} is %v once the trigger runs", v)
	}
}

func TestSeriesOfAFunctionGoWithIt(t *testing.T) {
	tests := []struct {
		name          string
		before, after []types.Function
		produce       string   // the topic written to after the change
		gone, kept    []string // label pairs of series that must be gone, and kept
	}{
		{
			name:    "removed",
			before:  []types.Function{fn("leaving", "metered"), fn("staying", "metered")},
			after:   []types.Function{fn("staying", "metered")},
			produce: "metered",
			gone:    []string{`function="leaving"`},
			kept:    []string{`function="staying"`},
		},
		{
			name:    "moved to another topic",
			before:  []types.Function{fn("mover", "metered")},
			after:   []types.Function{fn("mover", "elsewhere")},
			produce: "elsewhere",
			gone:    []string{`topic="metered"`},
			kept:    []string{`function="mover"`, `topic="elsewhere"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, gw, cfg := setup(t, "metered", "elsewhere")
			gw.SetFunctions(tc.before...)
			// One failure per function, so that the failure, retry and
			// status-class series exist too.
			var mu sync.Mutex
			failed := map[string]bool{}
			for _, f := range append(tc.before, tc.after...) {
				gw.Handle(f.Name, func(*gatewaytest.Call) (int, []byte) {
					mu.Lock()
					defer mu.Unlock()
					if !failed[f.Name] {
						failed[f.Name] = true
						return http.StatusServiceUnavailable, nil
					}
					return http.StatusOK, nil
				})
			}
			r := testkit.Start(t, cfg)
			srv := httptest.NewServer(promhttp.HandlerFor(r.Metrics(), promhttp.HandlerOpts{}))
			defer srv.Close()
			produceSpread(client, "metered", 2)
			for _, f := range tc.before {
				testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls(f.Name)).count("metered") == 2*partitions },
					"%s delivered", f.Name)
			}
			testkit.Eventually(t, 10*time.Second, func() bool { return seriesWith(scrapeMetrics(t, srv.URL), tc.gone...) >= 5 },
				"series with %v before the change", tc.gone)

			gw.SetFunctions(tc.after...)
			produceSpread(client, tc.produce, 1)
			for _, f := range tc.after {
				testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls(f.Name)).count(tc.produce) >= partitions },
					"%s delivered after the change", f.Name)
			}
			testkit.Eventually(t, 20*time.Second, func() bool {
				m := scrapeMetrics(t, srv.URL)
				return seriesWith(m, tc.gone...) == 0 && seriesWith(m, tc.kept...) > 0
			}, "no series with %v left, those with %v kept:\n%s", tc.gone, tc.kept, grep(scrapeMetrics(t, srv.URL), "kafka_connector_"))
		})
	}
}

// seriesWith counts the kafka_connector series of a scrape whose labels
// hold every one of the label pairs.
func seriesWith(scrape string, pairs ...string) int {
	n := 0
next:
	for _, l := range strings.Split(scrape, "\n") {
		if !strings.HasPrefix(l, "kafka_connector_") {
			continue
		}
		for _, p := range pairs {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		n++
	}
	return n
}
