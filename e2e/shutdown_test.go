package e2e

import (
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// A broker's answer may take sarama's read timeout, 70 s with the base
// settings; a stop that waited for one would still be running after this.
const boundedStop = 45 * time.Second

// Scenario 10: SIGTERM while the brokers sit on a request the stop waits
// for. The process exits anyway, soon after shutdown_timeout, with status 1
// and a line naming the function whose trigger it abandoned.
func TestStopIsBoundedWhenTheBrokersHang(t *testing.T) {
	tests := []struct {
		name string
		key  kmsg.Key
		// joining holds the request from the start: the trigger is stuck
		// joining its group when the stop comes.
		joining bool
	}{
		{name: "JoinGroup never answered", key: kmsg.JoinGroup, joining: true},
		{name: "LeaveGroup never answered", key: kmsg.LeaveGroup},
		{name: "commits never answered", key: kmsg.OffsetCommit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const partitions = 2
			e := newEnv(t, map[string]int32{"parcels": partitions})
			e.gw.SetFunctions(fn("courier", "parcels"))
			s := e.settings().with("shutdown_timeout", "2s")
			records := workload("parcels", partitions, 200, 10)

			var held *atomic.Int32
			if tc.joining {
				held, _ = e.kafka.hold(tc.key)
			}
			p := startConnector(t, "connector", s)
			if tc.joining {
				testkit.Eventually(t, 30*time.Second, func() bool { return held.Load() > 0 }, "a JoinGroup held by the brokers")
			} else {
				p.waitReady(60 * time.Second)
				held, _ = e.kafka.hold(tc.key)
				e.client.mustProduce(records)
				e.waitDelivered(60*time.Second, map[string][]string{"courier": {"parcels"}}, p)
				if tc.key == kmsg.OffsetCommit {
					testkit.Eventually(t, 30*time.Second, func() bool { return held.Load() > 0 }, "a commit held by the brokers")
				}
			}

			p.signal(syscall.SIGTERM)
			code := p.waitExit(boundedStop)
			if held.Load() == 0 {
				t.Fatalf("the brokers held no %s request: the scenario is broken", tc.key.Name())
			}
			if code != exitFailedStatus {
				t.Errorf("exit status %d after a stop that had to abandon its trigger, want %d", code, exitFailedStatus)
			}
			if lines := p.find("triggers did not stop in time", "functions", "courier"); len(lines) != 1 {
				t.Errorf("%d lines naming the abandoned trigger of courier, want 1:\n%s", len(lines), p.tail(10))
			}
			p.assertNoCrash()
		})
	}
}

// Scenario 11: a second signal while the first one's stop waits for an
// invocation that does not return. The process exits at once, while the
// invocation is still held open, with status 1 and a line saying what it
// abandons.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	tests := []struct {
		name          string
		first, second syscall.Signal
	}{
		{"SIGTERM then SIGINT", syscall.SIGTERM, syscall.SIGINT},
		{"SIGTERM twice", syscall.SIGTERM, syscall.SIGTERM},
		{"SIGINT twice", syscall.SIGINT, syscall.SIGINT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const partitions = 2
			e := newEnv(t, map[string]int32{"letters": partitions})
			e.gw.SetFunctions(fn("stuck", "letters"))
			var h hold // never released: the invocation stays in flight
			h.Set()
			e.gw.Behave("stuck", heldBy(&h))
			// A stop waits a whole minute for the invocation to finish.
			p := startConnector(t, "connector", e.settings().with("shutdown_timeout", "60s", "upstream_timeout", "120s"))
			p.waitReady(60 * time.Second)
			e.client.mustProduce(workload("letters", partitions, 10, 11))
			testkit.Eventually(t, 30*time.Second, func() bool { return h.waiting.Load() > 0 }, "an invocation of stuck in flight")

			p.signal(tc.first)
			testkit.Eventually(t, 10*time.Second, func() bool { return len(p.find("stopping")) > 0 }, "the stop begun")
			if p.hasExited() {
				t.Fatalf("exited with status %d on the first signal, with an invocation in flight and a minute to finish it", p.exitCode)
			}
			p.signal(tc.second)
			code := p.waitExit(30 * time.Second)
			if code != exitFailedStatus {
				t.Errorf("exit status %d on a second signal, want %d", code, exitFailedStatus)
			}
			if lines := p.find("second signal", "abandoned", "stuck"); len(lines) != 1 {
				t.Errorf("%d lines saying the second signal abandons the trigger of stuck, want 1:\n%s", len(lines), p.tail(10))
			}
			for _, c := range e.gw.Calls("stuck") {
				if c.OK {
					t.Errorf("an invocation of stuck was answered: the process should have exited with it in flight")
				}
			}
			p.assertNoCrash()
		})
	}
}

// exitFailedStatus is the connector's exit status for a stop that
// abandoned work.
const exitFailedStatus = 1

// signal sends sig to the process.
func (p *process) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// waitExit waits for the process to exit and returns its status.
func (p *process) waitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v:\n%s", p.name, timeout, p.tail(30))
		return -1
	}
}
