package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-connector/kafka-connector/gateway/gatewaytest"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/types"
)

// Scenario 8: hostile input from every side. Messages of random bytes,
// empty and null values, 1 MiB values, a value over max_bytes, headers
// with odd names; a gateway whose function list is malformed or huge and
// that has no namespaces; functions answering huge or malformed bodies;
// annotations with blanks, repeats, unknown topics and very long names.
// Nothing crashes, nothing is lost, and each case has a clear log line.
func TestHostileInputIsSurvived(t *testing.T) {
	const partitions = 3
	e := newEnv(t, map[string]int32{"hostile": partitions})
	n := scale(12000, 100000)
	const maxBytes = 256 << 10
	longName := "long-" + strings.Repeat("n", 248) // 253: the longest allowed
	tooLong := strings.Repeat("x", 300)
	longTopic := strings.Repeat("t", 300)
	fns := []types.Function{
		fn("plain", "hostile"),
		fn("blanks", "  hostile ,  , ,"),
		fn("repeats", "hostile,hostile, hostile "),
		fn("unknown", "hostile,no-such-topic"),
		fn(longName, "hostile"),
		fn("chatty", "hostile"),
		fn("liar", "hostile"),
		fn(tooLong, "hostile"),
		fn("longtopic", longTopic),
		fn("odd/name", "hostile"),
		{Name: "badsetting", Annotations: map[string]string{"topic": "hostile", types.AnnotationMaxMessages: "many"}},
		{Name: "nothing", Annotations: map[string]string{"topic": " , ,"}},
		{Name: "noannotations"},
	}
	subs := map[string][]string{}
	for _, f := range []string{"plain", "blanks", "repeats", "unknown", longName, "chatty", "liar"} {
		subs[f] = []string{"hostile"}
	}
	e.gw.SetFunctions(fns...)
	huge := bytes.Repeat([]byte("A"), 20<<20)
	e.gw.Behave("chatty", func(*gatewaytest.Call, int64) (int, []byte) { return http.StatusOK, huge })
	e.gw.Behave("liar", func(*gatewaytest.Call, int64) (int, []byte) { return http.StatusOK, []byte(`{"status": "ok", "oops`) })

	s := e.settings().with("max_bytes", fmt.Sprint(maxBytes), "max_messages", "50", "record_extras", "true")
	p := startConnector(t, "connector", s)
	p.waitReady(60 * time.Second)

	records, oversized := hostileRecords(n, partitions, maxBytes)
	e.client.mustProduce(records[:len(records)/2])

	// The gateway has no namespaces (its /system/namespaces is a 404)
	// from the start. Then the function list goes bad in three ways while
	// messages keep coming; the triggers must stay as they are.
	phases := []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request) bool
		logged string
	}{
		{"malformed JSON", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/system/functions" {
				return false
			}
			io.WriteString(w, `[{"name": "plain", "annotations": {"topic": "hostile"`)
			return true
		}, "not the expected JSON"},
		{"a body over the list limit", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/system/functions" {
				return false
			}
			w.Write([]byte("["))
			chunk := bytes.Repeat([]byte(" "), 1<<20)
			for range 40 {
				if _, err := w.Write(chunk); err != nil {
					return true
				}
			}
			w.Write([]byte("]"))
			return true
		}, "larger than"},
		{"namespaces that are not JSON", func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/system/namespaces" {
				return false
			}
			io.WriteString(w, "<html>Bad Gateway</html>")
			return true
		}, "not the expected JSON"},
	}
	for i, ph := range phases {
		since := time.Now()
		e.gw.gw.OverrideListing(ph.answer)
		testkit.Eventually(t, 30*time.Second, func() bool {
			return len(filterAfter(p.find("cannot list functions", "error", ph.logged), since)) > 0
		}, "a log line saying the function list is %s", ph.name)
		if i == 0 {
			e.client.mustProduce(records[len(records)/2:])
		}
	}
	e.gw.gw.OverrideListing(nil)
	e.waitDelivered(120*time.Second, subs, p)

	lines := p.logs()
	expectLine := func(what, msg string, attrs ...string) {
		t.Helper()
		if len(filterLogs(lines, msg, attrs...)) == 0 {
			t.Errorf("no log line for %s: want %q with %q", what, msg, attrs)
		}
	}
	expectLine("an unknown topic", "topics do not exist", "function", "unknown", "missing", "no-such-topic")
	expectLine("a name over 253 characters", "function has no trigger", "function", tooLong, "problem", "253")
	expectLine("a name with a slash", "function has no trigger", "function", "odd/name", "problem", "'/'")
	expectLine("a bad kafka-max-messages", "function has no trigger", "function", "badsetting", "problem", types.AnnotationMaxMessages)
	if got := filterLogs(lines, "", "function", "longtopic"); !anyWarning(got) {
		t.Errorf("no warning or error names the function whose topic annotation is 300 characters long")
	}
	for _, off := range oversized {
		found := false
		for _, l := range lines {
			if strings.Contains(fmt.Sprint(l), "max_bytes") && l.str("topic") == "hostile" && strings.Contains(fmt.Sprint(l), fmt.Sprint(off.offset)) {
				found = true
			}
		}
		if !found {
			t.Errorf("no log line says that the message at %s offset %d (%d bytes) is larger than max_bytes (%d) and is sent alone",
				off.p, off.offset, off.size, maxBytes)
		}
	}
	for _, msg := range []string{"stopping trigger", "restarting trigger"} {
		if stops := p.find(msg); len(stops) != 0 {
			t.Errorf("triggers were stopped or restarted while the function list was unreadable: %v", stops)
		}
	}
	// A trigger's problem is logged when it appears, not at every refresh.
	for _, name := range []string{tooLong, "odd/name", "badsetting"} {
		if got := filterLogs(lines, "function has no trigger", "function", name); len(got) != 1 {
			t.Errorf("%d log lines about %.20s..., want 1", len(got), name)
		}
	}

	if code := p.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	p.assertNoCrash()
	ex := e.expect(subs, nil)
	ex.defaultMax, ex.maxBytes, ex.extras = 50, maxBytes, true
	v := check(t, e.produced(), e.gw.Calls(""), ex)
	if v.Duplicates != 0 {
		t.Errorf("%d duplicates; the repeated topic in an annotation must not deliver twice", v.Duplicates)
	}
	e.summary(v, "%d messages over max_bytes; %d log lines, of which %d say a topic does not exist",
		len(oversized), len(lines), len(filterLogs(lines, "topics do not exist")))
}

func anyWarning(lines []logLine) bool {
	for _, l := range lines {
		if l.level() == "WARN" || l.level() == "ERROR" {
			return true
		}
	}
	return false
}

type oversize struct {
	p      tp
	offset int64
	size   int
}

// hostileRecords makes n messages of random bytes and random text with
// the odd cases spread among them, and tells where the values over
// maxBytes will land (partitions are written in order, from offset 0).
func hostileRecords(n int, partitions int32, maxBytes int) ([]*kgo.Record, []oversize) {
	rng := rand.New(rand.NewPCG(8, 8))
	oddNames := []string{"", " ", `quote"`, `back\slash`, "new\nline", "tab\there", "ünïcödé", "\xff\xfe", "\u2028", strings.Repeat("h", 10000), "Records", "msgBody", "X-Kafka-Partition"}
	var out []*kgo.Record
	var big []oversize
	next := make([]int64, partitions)
	for i := range n {
		r := &kgo.Record{Topic: "hostile", Partition: int32(i) % partitions}
		r.Key = hostileBytes(rng, 32)
		r.Value = hostileBytes(rng, 300)
		switch {
		case i == 10:
			r.Value = []byte{}
		case i == 11:
			r.Value = nil
		case i == 1000 || i == 5000:
			r.Value = bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB of text
		case i == 3000:
			r.Value = hostileBytes(rng, 0)
			r.Value = append(r.Value, bytes.Repeat([]byte{0xff, 0x00}, 1<<19)...) // 1 MiB of bytes
		case i == 4000:
			r.Value = bytes.Repeat([]byte("z"), maxBytes+1)
		case i%50 == 7:
			for _, name := range oddNames {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: name, Value: hostileBytes(rng, 20)})
			}
		}
		if len(r.Value) > maxBytes {
			big = append(big, oversize{tp{r.Topic, r.Partition}, next[r.Partition], len(r.Value)})
		}
		next[r.Partition]++
		out = append(out, r)
	}
	return out, big
}

// hostileBytes is nil, empty, random bytes or random text of up to max
// bytes, the text full of what JSON must escape.
func hostileBytes(rng *rand.Rand, max int) []byte {
	switch rng.IntN(5) {
	case 0:
		return nil
	case 1:
		return []byte{}
	case 2:
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	default:
		specials := []rune{'"', '\\', '\n', '\r', '\t', 0, 0x1f, 0x7f, 0x2028, 0x2029, 0xfeff, 0xfffd, '<', '>', '&', 0x1f600, 'é', 'z'}
		var b []byte
		for len(b) < rng.IntN(max+1) {
			if rng.IntN(3) == 0 {
				b = utf8.AppendRune(b, specials[rng.IntN(len(specials))])
			} else {
				b = utf8.AppendRune(b, rune(0x20+rng.IntN(0x3000)))
			}
		}
		if !utf8.Valid(b) {
			return []byte("unreachable")
		}
		return b
	}
}

// A message whose key is the text "None" must reach the function as it
// was written: distinct from a message without a key.
func TestKeyNoneIsNotMistakenForNoKey(t *testing.T) {
	e := newEnv(t, map[string]int32{"ambiguous": 1})
	subs := map[string][]string{"reader": {"ambiguous"}}
	e.gw.SetFunctions(fn("reader", "ambiguous"))
	p := startConnector(t, "connector", e.settings())
	p.waitReady(60 * time.Second)
	e.client.mustProduce([]*kgo.Record{
		{Topic: "ambiguous", Key: []byte("None"), Value: []byte("a key that reads None")},
		{Topic: "ambiguous", Key: nil, Value: []byte("no key")},
	})
	e.waitDelivered(30*time.Second, subs, p)
	if code := p.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	check(t, e.produced(), e.gw.Calls(""), e.expect(subs, nil))
}

// With record_extras, a message whose headers repeat a name must reach the
// function with every value, in an event that is still unambiguous JSON.
func TestRepeatedHeaderNamesKeepEveryValue(t *testing.T) {
	e := newEnv(t, map[string]int32{"traced": 1})
	subs := map[string][]string{"reader": {"traced"}}
	e.gw.SetFunctions(fn("reader", "traced"))
	p := startConnector(t, "connector", e.settings().with("record_extras", "true"))
	p.waitReady(60 * time.Second)
	e.client.mustProduce([]*kgo.Record{
		{Topic: "traced", Value: []byte("hop"), Headers: []kgo.RecordHeader{
			{Key: "via", Value: []byte("first-hop")}, {Key: "via", Value: []byte("second-hop")},
		}},
	})
	e.waitDelivered(30*time.Second, subs, p)
	if code := p.terminate(30 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	body := e.gw.Calls("reader")[0].Body
	if _, err := decodeStrict(body); err != nil {
		t.Errorf("the event is not unambiguous JSON (%v): most decoders keep one value of a repeated name: %s", err, body)
	}
	for _, v := range []string{"first-hop", "second-hop"} {
		if !bytes.Contains(body, []byte(v)) {
			t.Errorf("header value %q lost: %s", v, body)
		}
	}
}
