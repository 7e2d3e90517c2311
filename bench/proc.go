package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a measured consumer running in its own process (see child.go).
type child struct {
	cmd *exec.Cmd
	// binary: the child is a built kafka-connector, which answers no
	// marks and stops on SIGTERM.
	binary bool
	stdin  io.WriteCloser
	marks  chan snapshot
	done   chan struct{} // the consumer read its target

	exited  chan struct{} // closed when the process has exited
	exitErr error         // how it exited; read after exited is closed
}

// startChild starts this program again as a child of kind with env added
// to the environment.
func startChild(o childOptions, env []string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-child=" + o.kind, "-topic=" + o.topic, "-n=" + strconv.Itoa(o.target)}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile="+o.cpuProfile)
	}
	if o.memProfile != "" {
		args = append(args, "-memprofile="+o.memProfile)
	}
	cmd := exec.Command(self, args...)
	if o.binary != "" {
		// Its health server on a free port: several measured processes
		// may overlap as one stops and the next starts.
		cmd = exec.Command(o.binary)
		env = append(env, "http_addr=127.0.0.1:0")
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, binary: o.binary != "", stdin: stdin, marks: make(chan snapshot, 2), done: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		in := bufio.NewScanner(stdout)
		for in.Scan() {
			var l childLine
			if err := json.Unmarshal(in.Bytes(), &l); err != nil {
				fmt.Fprintf(os.Stderr, "child: %s\n", in.Bytes())
				continue
			}
			if l.Err != "" {
				fmt.Fprintf(os.Stderr, "child: %s\n", l.Err)
			}
			if l.Mark != nil {
				c.marks <- *l.Mark
			}
			if l.Done {
				close(c.done)
			}
		}
		c.exitErr = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// mark asks the child for a snapshot of its counters.
func (c *child) mark() (snapshot, error) {
	if c.binary {
		cpu, err := procCPU(c.pid())
		return snapshot{CPU: cpu}, err
	}
	if _, err := io.WriteString(c.stdin, "mark\n"); err != nil {
		return snapshot{}, err
	}
	select {
	case s := <-c.marks:
		return s, nil
	case <-c.exited:
		return snapshot{}, fmt.Errorf("the measured process exited: %v", c.exitErr)
	case <-time.After(30 * time.Second):
		return snapshot{}, fmt.Errorf("the measured process did not answer a mark")
	}
}

// stop closes the child's stdin, which makes it stop, and waits for it; a
// child that does not stop in time is killed.
func (c *child) stop() {
	c.stdin.Close()
	if c.binary {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// procPeakRSS returns the peak resident memory of a process so far
// (VmHWM), in bytes.
func procPeakRSS(pid int) (int64, error) { return procRSS(pid, "VmHWM:") }

// procRSS returns a memory figure of /proc/<pid>/status, such as VmRSS: or
// VmHWM:, in bytes.
func procRSS(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// procConnections counts the established TCP connections of process pid to
// the addresses (host:port, IPv4 loopback) given.
func procConnections(pid int, addrs []string) (int, error) {
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	ports := map[string]bool{}
	for _, a := range addrs {
		_, port, _ := strings.Cut(a, ":")
		p, err := strconv.Atoi(port)
		if err != nil {
			return 0, fmt.Errorf("broker address %q: %w", a, err)
		}
		ports[fmt.Sprintf("%04X", p)] = true
	}
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(table), "\n")[1:] {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "01" || !inodes[f[9]] {
			continue
		}
		if _, port, ok := strings.Cut(f[2], ":"); ok && ports[port] {
			n++
		}
	}
	return n, nil
}

// procCPU returns the CPU time a process has used so far, user and system,
// from /proc/<pid>/stat (in clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after it. utime and stime are the 14th and 15th fields.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 13", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
