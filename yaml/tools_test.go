package yaml_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// goTool is a command-line tool the tests run, built from the Go module
// proxy at a pinned version.
type goTool struct {
	name    string // of the binary, and of its folder in the cache
	pkg     string // the main package, for go install
	version string
	env     string // a variable naming a binary to use instead
}

// path finds the tool: the binary its variable names, or else the pinned
// version, built with `go install` on the first run and kept in the user's
// cache folder for the next ones. Only a machine without go skips the
// test: with go, a tool that cannot be built is a failure.
func (g goTool) path(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(g.env); bin != "" {
		return bin
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("%s is built with go, and go is not on PATH (%v); %s names a %s binary instead", g.name, err, g.env, g.name)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "kafka-connector", g.name+"-"+g.version)
	exe := filepath.Base(g.pkg)
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
	cmd := exec.Command(goCmd, "install", g.pkg+"@"+g.version)
	cmd.Dir = tmp // outside this module: its go.mod has no say
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: go install %s@%s: %v\n%s", g.name, g.pkg, g.version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, exe), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}
