package connector_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

func TestFunctionsInEveryNamespaceAreFed(t *testing.T) {
	client, gw, cfg := setup(t, "ns-topic")
	gw.SetNamespaces("openfaas-fn", "team")
	a := fn("a", "ns-topic")
	a.Namespace = "openfaas-fn"
	b := fn("b", "ns-topic")
	b.Namespace = "team"
	gw.SetFunctions(a, b)
	testkit.Start(t, cfg)

	produceSpread(client, "ns-topic", 3)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("a.openfaas-fn")).count("ns-topic") == 9 &&
			successes(t, gw.Calls("b.team")).count("ns-topic") == 9
	}, "both namespaced functions, invoked as name.namespace, get every message")
	testkit.Eventually(t, 10*time.Second, func() bool {
		return client.Committed("kafka-connector-b.team")["ns-topic"][0] == 3
	}, "group kafka-connector-b.team commits partition 0 at 3")
}

func TestBrokenGatewayKeepsTheTriggersRunning(t *testing.T) {
	client, gw, cfg := setup(t, "steady")
	gw.SetFunctions(fn("steady-fn", "steady"))
	testkit.Start(t, cfg)
	produceSpread(client, "steady", 1)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("steady-fn")).count("steady") == 3
	}, "first messages delivered")

	for _, answer := range []struct {
		name   string
		status int
		body   string
	}{
		{"server error", http.StatusInternalServerError, "oops"},
		{"malformed JSON", http.StatusOK, `[{"name": "steady-fn", "annotations": {`},
		{"wrong JSON", http.StatusOK, `{"functions": 3}`},
	} {
		t.Run(answer.name, func(t *testing.T) {
			var listed atomic.Int32
			gw.OverrideListing(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/system/functions" {
					return false
				}
				listed.Add(1)
				w.WriteHeader(answer.status)
				w.Write([]byte(answer.body))
				return true
			})
			// Two failed listings make sure at least one full refresh
			// happened with the bad answer.
			testkit.Eventually(t, 10*time.Second, func() bool { return listed.Load() >= 2 }, "the connector asks again")
			before := successes(t, gw.Calls("steady-fn")).count("steady")
			produceSpread(client, "steady", 1)
			testkit.Eventually(t, 20*time.Second, func() bool {
				return successes(t, gw.Calls("steady-fn")).count("steady") == before+3
			}, "messages keep flowing while the gateway answers %s", answer.name)
		})
	}
	gw.OverrideListing(nil)
}

func TestChangedTopicsTakeEffectAtTheNextRefresh(t *testing.T) {
	client, gw, cfg := setup(t, "old-topic", "new-topic")
	gw.SetFunctions(fn("mover", "old-topic"))
	testkit.Start(t, cfg)
	produceSpread(client, "old-topic", 2)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("mover")).count("old-topic") == 6
	}, "old-topic delivered")

	gw.SetFunctions(fn("mover", " new-topic ,, new-topic"))
	produceSpread(client, "new-topic", 2)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("mover")).count("new-topic") == 6
	}, "new-topic delivered after the annotation changed")
	produceSpread(client, "old-topic", 2)
	produceSpread(client, "new-topic", 1)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("mover")).count("new-topic") == 9
	}, "later messages of new-topic delivered")
	if n := successes(t, gw.Calls("mover")).count("old-topic"); n != 6 {
		t.Errorf("old-topic delivered %d messages after the function left it, want the first 6 only", n)
	}
}

func TestMissingTopicDoesNotHoldBackTheOthers(t *testing.T) {
	client, gw, cfg := setup(t, "exists")
	gw.SetFunctions(fn("partial", "exists,not-yet"))
	testkit.Start(t, cfg)

	produceSpread(client, "exists", 2)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("partial")).count("exists") == 6
	}, "the existing topic is consumed although the other does not exist")

	// The trigger picks up the topic once it is created.
	client.CreateTopic("not-yet", partitions)
	produceSpread(client, "not-yet", 2)
	testkit.Eventually(t, 30*time.Second, func() bool {
		return successes(t, gw.Calls("partial")).count("not-yet") == 6
	}, "the topic created later is consumed too")
}

func TestAllowListLimitsTheTopics(t *testing.T) {
	client, gw, cfg := setup(t, "allowed", "denied")
	gw.SetFunctions(fn("picky", "allowed,denied"), types.Function{Name: "nothing-allowed", Annotations: map[string]string{"topic": "denied"}})
	cfg.Topics = []string{"allowed"}
	testkit.Start(t, cfg)

	produceSpread(client, "denied", 2)
	produceSpread(client, "allowed", 2)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return successes(t, gw.Calls("picky")).count("allowed") == 6
	}, "the allowed topic is delivered")
	if n := successes(t, gw.Calls("")).count("denied"); n != 0 {
		t.Errorf("%d messages of a topic outside the allow-list delivered", n)
	}
}

func TestNotReadyWhileTheBrokersAreGone(t *testing.T) {
	client, gw, cfg := setup(t, "fragile-cluster")
	gw.SetFunctions(fn("orphan", "fragile-cluster"))
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, r.Ready, "ready once the group is joined")

	client.Cluster.Close()
	testkit.Eventually(t, 60*time.Second, func() bool { return !r.Ready() }, "not ready once the brokers are gone")
}

// TestSubscribedFromFirstSight: a function first listed with a topic and an
// annotation that cannot be used, then fixed, has subscribed since it was
// first listed: what was written in between is delivered to it. The stop of
// a trigger whose update broke its annotations says so.
func TestSubscribedFromFirstSight(t *testing.T) {
	client, gw, cfg := setup(t, "fixes")
	broken := fn("fixed", "fixes")
	broken.Annotations["kafka-filter"] = `value.startsWith(`
	gw.SetFunctions(broken)
	cfg.InitialOffset = types.StartOffset{} // latest
	produceSpread(client, "fixes", 1)       // before the function was listed: not for it
	r := testkit.Start(t, cfg)
	testkit.Eventually(t, 20*time.Second, func() bool { return strings.Contains(r.Logs(), "does not compile") }, "the bad filter refused")
	produceSpread(client, "fixes", 2) // after it was listed, before it was fixed
	// A partition added meanwhile, its first message stamped before the
	// function was listed (as a mirror writes it): all it holds is new.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Admin.CreatePartitions(ctx, 1, "fixes"); err != nil {
		t.Fatal(err)
	}
	mirrored := testkit.Record("fixes", partitions, nil, []byte("mirrored"))
	mirrored.Timestamp = time.Now().Add(-time.Hour)
	testkit.NewClient(t, client.Cluster).Produce(mirrored)
	gw.SetFunctions(fn("fixed", "fixes"))
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("fixed")).count("fixes") == 2*partitions+1 },
		"the messages written while the annotation was broken")
	produceSpread(client, "fixes", 1)
	testkit.Eventually(t, 20*time.Second, func() bool { return successes(t, gw.Calls("fixed")).count("fixes") == 3*partitions+1 }, "and what follows")
	for p, offs := range successes(t, gw.Calls("fixed")).offsets["fixes"] {
		want := int64(1)
		if p == partitions {
			want = 0
		}
		if len(offs) == 0 || offs[0] != want {
			t.Errorf("partition %d delivered offsets %v, want %d on", p, offs, want)
		}
	}

	// Broken again by an update: the trigger stops, and says why.
	gw.SetFunctions(broken)
	testkit.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(r.Logs(), "its annotations cannot be used")
	}, "the stop says the annotations cannot be used:\n%s", grep(r.Logs(), "stopping trigger"))
}

// TestUnauthorizedListingSaysWhatToSet: a gateway that asks for
// credentials the connector does not send gets a hint naming the settings,
// and one that refuses those sent, a hint naming where they were read.
func TestUnauthorizedListingSaysWhatToSet(t *testing.T) {
	for _, tt := range []struct {
		name      string
		basicAuth bool
		want      string
	}{
		{"no credentials sent", false, "set basic_auth=true, and secret_mount_path"},
		{"wrong credentials", true, "are not the gateway's"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, gw, cfg := setup(t, "guarded")
			gw.Username, gw.Password = "admin", "right"
			if tt.basicAuth {
				cfg.BasicAuth, cfg.GatewayUser, cfg.GatewayPassword = true, "admin", "wrong"
			}
			r := testkit.Start(t, cfg)
			testkit.Eventually(t, 20*time.Second, func() bool { return strings.Contains(r.Logs(), "cannot list functions") }, "a failed listing")
			if logs := r.Logs(); !strings.Contains(logs, tt.want) || !strings.Contains(logs, "401") || strings.Contains(logs, "wrong") && tt.basicAuth {
				t.Errorf("want a hint %q, and no password:\n%s", tt.want, grep(logs, "cannot list"))
			}
		})
	}
}
