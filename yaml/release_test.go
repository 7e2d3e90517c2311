package yaml_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// The workflows are checked with this actionlint. It runs shellcheck on
// their scripts when shellcheck is on PATH (it is on GitHub's runners).
var actionlint = testkit.GoTool{
	Name:    "actionlint",
	Pkg:     "github.com/rhysd/actionlint/cmd/actionlint",
	Version: "v1.7.12",
	Env:     "KAFKA_CONNECTOR_ACTIONLINT",
}

const (
	workflowsDir    = "../.github/workflows"
	releaseWorkflow = workflowsDir + "/release.yml"
)

// readTracked reads the files matching pattern, so that go test, which
// replays a passing result while the files a test read are unchanged, sees
// the reads of the tools it runs on them too.
func readTracked(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestWorkflowsLint(t *testing.T) {
	files := readTracked(t, filepath.Join(workflowsDir, "*.yml"))
	if len(files) == 0 {
		t.Fatalf("no workflow in %s", workflowsDir)
	}
	bin := actionlint.Path(t)
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Log("shellcheck is not on PATH: actionlint does not check the workflows' scripts")
	}
	args := []string{"-no-color"}
	for _, f := range files {
		args = append(args, strings.TrimPrefix(filepath.ToSlash(f), "../"))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = ".." // where it finds .github, and names the files from
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("actionlint %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestReleaseScripts runs shellcheck on the scripts the workflows run,
// where shellcheck is installed: it is not built from the Go module proxy.
func TestReleaseScripts(t *testing.T) {
	files := readTracked(t, "../.github/*.sh")
	if len(files) == 0 {
		t.Fatal("no script in .github")
	}
	bin, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not on PATH")
	}
	if out, err := exec.Command(bin, files...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// release is where the release workflow publishes, and what the
// repository says it publishes.
type release struct {
	image      string // repository of the image, without a tag
	charts     string // the OCI repository of the chart, oci://...
	appVersion string // the release the chart runs by default
}

func readRelease(t *testing.T) release {
	t.Helper()
	raw, err := os.ReadFile(releaseWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Env map[string]string `yaml:"env"`
	}
	if err := yaml.Unmarshal(raw, &wf); err != nil {
		t.Fatalf("%s: %v", releaseWorkflow, err)
	}
	r := release{image: wf.Env["IMAGE"], charts: wf.Env["CHARTS"]}
	if r.image == "" || !strings.HasPrefix(r.charts, "oci://") {
		t.Fatalf("%s: env has IMAGE=%q and CHARTS=%q, want an image repository and oci://...", releaseWorkflow, r.image, r.charts)
	}
	chart := readChartYAML(t)
	r.appVersion = chart.AppVersion
	return r
}

type chartYAML struct {
	Version    string `yaml:"version"`
	AppVersion string `yaml:"appVersion"`
	Home       string `yaml:"home"`
}

func readChartYAML(t *testing.T) chartYAML {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c chartYAML
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// splitImage cuts an image reference into its repository and its tag.
func splitImage(ref string) (repo, tag string) {
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, ""
}

// TestReleaseIsWhatTheRepositoryInstalls: the chart, the kustomize files
// and the Dockerfile name the image the release workflow publishes, and
// run the release the chart is versioned as, so that an install from a
// clone pulls an image a release publishes. The release workflow refuses a
// tag that is not the chart's version.
func TestReleaseIsWhatTheRepositoryInstalls(t *testing.T) {
	r := readRelease(t)
	chart := readChartYAML(t)
	if chart.Version != chart.AppVersion {
		t.Errorf("Chart.yaml: version %s and appVersion %s: a release publishes the chart under its own version, and both are the tag's", chart.Version, chart.AppVersion)
	}

	_, values := chartValues(t)
	image, _ := values["image"].(map[string]any)
	if got := image["repository"]; got != r.image {
		t.Errorf("values.yaml: image.repository is %v, the release publishes %s", got, r.image)
	}
	if got := image["tag"]; got != "" {
		t.Errorf("values.yaml: image.tag is %v, want empty: the chart's appVersion", got)
	}

	var kustomization struct {
		Images []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	raw, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &kustomization); err != nil {
		t.Fatal(err)
	}
	if len(kustomization.Images) != 1 {
		t.Fatalf("kustomization.yaml: %d images, want the connector's", len(kustomization.Images))
	}
	k := kustomization.Images[0]
	if k.Name != r.image || k.NewName != "" || k.NewTag != r.appVersion {
		t.Errorf("kustomization.yaml: image %s, newName %q, newTag %q; want %s, none, %s (the chart's appVersion)", k.Name, k.NewName, k.NewTag, r.image, r.appVersion)
	}
	for _, c := range connectors(t, readAll(t)) {
		if !c.kubernetes {
			continue
		}
		if repo, tag := splitImage(c.c.Image); repo != r.image || tag != r.appVersion {
			t.Errorf("%s: image %s, want %s:%s", c.where, c.c.Image, r.image, r.appVersion)
		}
	}

	// ghcr.io links an image to the repository its source label names.
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	source := regexp.MustCompile(`org\.opencontainers\.image\.source="([^"]+)"`).FindSubmatch(dockerfile)
	if source == nil {
		t.Fatal("the Dockerfile has no org.opencontainers.image.source label")
	}
	repo := strings.TrimPrefix(string(source[1]), "https://github.com/")
	if want := "ghcr.io/" + repo; r.image != want {
		t.Errorf("the release publishes %s, the image of the Dockerfile's source %s is %s", r.image, source[1], want)
	}
	if chart.Home != string(source[1]) {
		t.Errorf("Chart.yaml: home %s, the Dockerfile's source %s", chart.Home, source[1])
	}
}

// imageRef finds the references to the project's images and charts in
// the docs: ghcr.io/<owner>/<name>, with a tag when it has one.
var imageRef = regexp.MustCompile(`ghcr\.io/kafka-connector/[a-z0-9/_.-]*[a-z0-9](:[A-Za-z0-9_.+-]+)?`)

// versionRef finds the versions of a release the docs' commands give:
// helm's --version, and VERSION= of the shell examples.
var versionRef = regexp.MustCompile(`(?:--version |VERSION=)(\d+\.\d+\.\d+[0-9A-Za-z.+-]*)`)

// TestDocsNameTheRelease: the install instructions name the image and the
// chart the release workflow publishes, and any release they give is the
// chart's appVersion.
func TestDocsNameTheRelease(t *testing.T) {
	r := readRelease(t)
	chartRef := strings.TrimPrefix(r.charts, "oci://") + "/kafka-connector"
	docs := []string{
		"../docs/install.md",
		filepath.Join(chartDir, "README.md"),
		filepath.Join(chartDir, "templates", "NOTES.txt"),
		"README.md",
		"../CHANGELOG.md",
		"../.goreleaser.yaml",
	}
	for _, doc := range docs {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range imageRef.FindAllStringSubmatch(string(raw), -1) {
			ref, tag := m[0], strings.TrimPrefix(m[1], ":")
			repo := strings.TrimSuffix(ref, m[1])
			switch {
			case repo != r.image && repo != chartRef:
				t.Errorf("%s: %s is neither the image %s nor the chart %s the release publishes", doc, ref, r.image, chartRef)
			case tag != "" && tag != r.appVersion:
				t.Errorf("%s: %s: the release the repository installs is %s", doc, ref, r.appVersion)
			}
		}
		for _, m := range versionRef.FindAllStringSubmatch(string(raw), -1) {
			if m[1] != r.appVersion {
				t.Errorf("%s: %s: the release the repository installs is %s", doc, m[0], r.appVersion)
			}
		}
	}
	for _, doc := range docs[:3] {
		raw, _ := os.ReadFile(doc)
		for _, want := range []string{r.image, "docker buildx build --platform linux/amd64,linux/arm64", "image.repository"} {
			if !strings.Contains(string(raw), want) {
				t.Errorf("%s does not say %q: it is how to get an image before a release publishes one", doc, want)
			}
		}
	}
}

// changelogHeading is a release's heading in CHANGELOG.md.
var changelogHeading = regexp.MustCompile(`^## (Unreleased|(\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?) - \d{4}-\d{2}-\d{2})$`)

// TestChangelog: every section of CHANGELOG.md is headed by a version and
// its date, the first one possibly by Unreleased; a section for the
// chart's version, if any, is the first. The release workflow publishes
// the section of the tag's version as the release notes.
func TestChangelog(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the notes are cut by a bash script")
	}
	raw, err := os.ReadFile("../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for i, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "## ") {
			continue
		}
		m := changelogHeading.FindStringSubmatch(line)
		switch {
		case m == nil:
			t.Errorf("CHANGELOG.md:%d: %q, want \"## Unreleased\" or \"## 1.2.0 - 2026-12-15\"", i+1, line)
			continue
		case m[1] == "Unreleased" && len(versions) > 0:
			t.Errorf("CHANGELOG.md:%d: Unreleased comes first", i+1)
		}
		v := m[1]
		if m[2] != "" {
			v = m[2]
		}
		if slices.Contains(versions, v) {
			t.Errorf("CHANGELOG.md:%d: a second section for %s", i+1, v)
		}
		versions = append(versions, v)
	}
	if len(versions) == 0 {
		t.Fatal("CHANGELOG.md has no section")
	}
	// The chart's version is the release being prepared, or the last one.
	appVersion := readChartYAML(t).AppVersion
	if i := slices.Index(versions, appVersion); i > 1 || i == 1 && versions[0] != "Unreleased" {
		t.Errorf("CHANGELOG.md: the section of %s, the chart's version, comes after %s", appVersion, strings.Join(versions[:i], " and "))
	}
	// The workflow's script finds the first section.
	readTracked(t, "../.github/release-notes.sh")
	out, err := exec.Command("bash", "../.github/release-notes.sh", versions[0], "../CHANGELOG.md").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		t.Errorf(".github/release-notes.sh %s: %v\n%s", versions[0], err, out)
	}
}
