package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// settings is the environment of a connector process, by variable name.
type settings map[string]string

// baseSettings is what every scenario starts from: short waits so that
// scenarios run quickly, JSON logs to read back.
func baseSettings(k *kafkaCluster, g *recordingGateway) settings {
	return settings{
		"gateway_url":           g.url(),
		"broker_hosts":          strings.Join(k.addrs(), ","),
		"group":                 "e2e",
		"initial_offset":        "earliest",
		"max_messages":          "100",
		"max_wait":              "20ms",
		"upstream_timeout":      "10s",
		"rebuild_interval":      "500ms",
		"retry_backoff_initial": "50ms",
		"retry_backoff_max":     "1s",
		"max_retries":           "-1",
		"shutdown_timeout":      "20s",
		"log_format":            "json",
		"log_level":             "info",
		// Every process of a scenario runs on this host: they would share
		// its HOSTNAME as their instance id.
		"instance_id": "",
	}
}

func (s settings) with(kv ...string) settings {
	out := maps.Clone(s)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// process is one run of the kafka-connector binary.
type process struct {
	t        *testing.T
	name     string
	logPath  string
	httpAddr string
	cmd      *exec.Cmd

	exited   chan struct{}
	exitCode int
	started  time.Time
}

var processSeq struct {
	sync.Mutex
	n map[string]int
}

// startConnector runs the binary with the settings. Its JSON log goes to a
// file in the test's folder; it is killed when the test ends if still up.
func startConnector(t *testing.T, name string, s settings) *process {
	t.Helper()
	processSeq.Lock()
	if processSeq.n == nil {
		processSeq.n = map[string]int{}
	}
	processSeq.n[t.Name()+name]++
	seq := processSeq.n[t.Name()+name]
	processSeq.Unlock()

	p := &process{
		t:        t,
		name:     fmt.Sprintf("%s#%d", name, seq),
		logPath:  filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.log", name, seq)),
		httpAddr: "127.0.0.1:" + strconv.Itoa(freePorts(t, 1)[0]),
		exited:   make(chan struct{}),
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary)
	p.cmd.Env = connectorEnv(s.with("http_addr", p.httpAddr))
	p.cmd.Stderr = logFile
	p.cmd.Stdout = logFile
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", p.name, err)
	}
	go func() {
		err := p.cmd.Wait()
		logFile.Close()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		if err != nil && p.exitCode == 0 {
			p.exitCode = -1
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.hasExited() {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("last lines of the log of %s:\n%s", p.name, p.tail(30))
		}
	})
	return p
}

// connectorEnv is the test's environment without any connector setting,
// plus s.
func connectorEnv(s settings) []string {
	known := map[string]bool{"broker_host": true, "BROKER_HOST": true}
	for _, n := range config.Names() {
		known[n], known[strings.ToUpper(n)] = true, true
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !known[name] {
			env = append(env, kv)
		}
	}
	for k, v := range s {
		env = append(env, k+"="+v)
	}
	return env
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// waitReady waits until /readyz answers 200: the function list was read
// and every trigger joined its group.
func (p *process) waitReady(timeout time.Duration) {
	p.t.Helper()
	client := &http.Client{Timeout: time.Second}
	testkit.Eventually(p.t, timeout, func() bool {
		if p.hasExited() {
			p.t.Fatalf("%s exited with status %d before it was ready:\n%s", p.name, p.exitCode, p.tail(30))
		}
		resp, err := client.Get("http://" + p.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "%s ready", p.name)
}

// kill9 kills the process without notice, as the kernel's OOM killer or a
// node failure would.
func (p *process) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatalf("killing %s: %v", p.name, err)
	}
	<-p.exited
}

// terminate sends SIGTERM and returns the exit status once it exited.
func (p *process) terminate(timeout time.Duration) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v of SIGTERM:\n%s", p.name, timeout, p.tail(30))
		return -1
	}
}

// memory returns the resident and peak resident set of the process, in
// bytes.
func (p *process) memory() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// logLine is one JSON log line of the connector.
type logLine map[string]any

func (l logLine) msg() string   { s, _ := l["msg"].(string); return s }
func (l logLine) level() string { s, _ := l["level"].(string); return s }
func (l logLine) str(k string) string {
	switch v := l[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func (l logLine) time() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, l.str("time"))
	return t
}

// logs returns the lines logged so far. A line that is not JSON is kept
// as its text under "msg" with level "RAW", so that a panic shows up.
func (p *process) logs() []logLine {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		p.t.Fatalf("reading the log of %s: %v", p.name, err)
	}
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			l = logLine{"msg": sc.Text(), "level": "RAW"}
		}
		out = append(out, l)
	}
	return out
}

// find returns the lines whose message contains msg and whose attributes
// contain the given values (key, substring, key, substring...).
func (p *process) find(msg string, attrs ...string) []logLine {
	return filterLogs(p.logs(), msg, attrs...)
}

func filterLogs(lines []logLine, msg string, attrs ...string) []logLine {
	var out []logLine
next:
	for _, l := range lines {
		if !strings.Contains(l.msg(), msg) {
			continue
		}
		for i := 0; i+1 < len(attrs); i += 2 {
			if !strings.Contains(l.str(attrs[i]), attrs[i+1]) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// tail returns the last n lines of the log.
func (p *process) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 600 {
			lines[i] = l[:600] + "..."
		}
	}
	return strings.Join(lines, "\n")
}

// assertNoCrash fails if the process panicked or logged a Go runtime
// error.
func (p *process) assertNoCrash() {
	p.t.Helper()
	for _, l := range p.logs() {
		if l.level() == "RAW" && (strings.Contains(l.msg(), "panic") || strings.Contains(l.msg(), "fatal error") || strings.HasPrefix(l.msg(), "goroutine ")) {
			p.t.Errorf("%s crashed: %s\n%s", p.name, l.msg(), p.tail(40))
			return
		}
	}
}
