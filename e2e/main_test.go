// Package e2e runs the real kafka-connector binary as separate processes
// against an embedded Kafka-protocol cluster and a recording gateway, and
// breaks things around it: kill -9, rebalances, broker restarts, gateway
// outages, slow and failing functions, hostile input, many functions. One
// checker proves the promise after each scenario: every message reached
// every subscribed function at least once, in order within its partition,
// as a well-formed event, in batches of 1..max_messages.
//
// The default run keeps each scenario small enough for CI; set
// KAFKA_CONNECTOR_SOAK=1 for the long variants (more messages, more kills).
// go test -short skips the package.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// binary is the kafka-connector built once for the whole run.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kafka-connector-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "kafka-connector")
	// The binary under test is a plain build: the race detector watches
	// the test process, and the connector's own packages are raced by
	// their unit tests.
	build := exec.Command("go", "build", "-o", binary, "github.com/kafka-connector/kafka-connector")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building kafka-connector: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// soak reports whether the long variants were asked for.
func soak() bool {
	v, _ := strconv.ParseBool(os.Getenv("KAFKA_CONNECTOR_SOAK"))
	return v
}

// scale picks the size of a scenario: normal in CI, long under soak.
func scale(normal, long int) int {
	if soak() {
		return long
	}
	return normal
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenarios run whole processes; skipped with -short")
	}
}
