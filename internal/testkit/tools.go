package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// GoTool is a command-line tool the tests run (helm, actionlint,
// promtool), built from the Go module proxy at a pinned version.
type GoTool struct {
	Name    string   // of the binary's folder in the cache
	Pkg     string   // the main package, for go install
	Version string   // the module version to install
	Tags    []string // build tags, to leave out what the tests do not use
	Env     string   // a variable naming a binary to use instead
}

// Path finds the tool: the binary its variable names, or else the pinned
// version, built with `go install` on the first run and kept in the user's
// cache folder for the next ones. Only a machine without go skips the
// test: with go, a tool that cannot be built is a failure.
func (g GoTool) Path(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(g.Env); bin != "" {
		return bin
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("%s is built with go, and go is not on PATH (%v); %s names a %s binary instead", g.Name, err, g.Env, g.Name)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "kafka-connector", g.Name+"-"+g.Version)
	exe := filepath.Base(g.Pkg)
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	bin := filepath.Join(dir, exe)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	// Built in a folder of its own and moved in place only when whole, so
	// that an interrupted build or two runs at once leave no broken tool.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	args := []string{"install"}
	if len(g.Tags) > 0 {
		args = append(args, "-tags", strings.Join(g.Tags, ","))
	}
	cmd := exec.Command(goCmd, append(args, g.Pkg+"@"+g.Version)...)
	cmd.Dir = tmp // outside this module: its go.mod has no say
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: go install %s@%s: %v\n%s", g.Name, g.Pkg, g.Version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, exe), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}
