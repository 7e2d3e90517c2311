package yaml_test

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

// The chart is checked with this Helm, the version its users are told to
// have at least.
const (
	chartDir    = "../chart/kafka-connector"
	helmPackage = "helm.sh/helm/v3/cmd/helm"
	helmVersion = "v3.22.0"
	// releaseName gives the objects the names of the kustomize ones.
	releaseName = "kafka-connector"
)

// helm runs the Helm command line on the chart.
type helm struct {
	bin string
}

// newHelm finds helm: the binary KAFKA_CONNECTOR_HELM names, or else the
// pinned version, built from the Go module proxy on the first run (it takes
// a minute or two on two cores) and kept in the user's cache folder.
func newHelm(t *testing.T) helm {
	t.Helper()
	trackChart(t)
	return helm{bin: testkit.GoTool{Name: "helm", Pkg: helmPackage, Version: helmVersion, Env: "KAFKA_CONNECTOR_HELM"}.Path(t)}
}

// trackChart reads every file of the chart, so that go test, which
// replays a passing result while the files a test read are unchanged, sees
// those helm reads too.
func trackChart(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir(chartDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		_, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// run runs helm with a home of its own, so that no repository or plugin of
// the user's comes into play.
func (h helm) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(h.bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// template renders the chart in the openfaas namespace, as its README says
// to install it.
func (h helm) template(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, errOut, err := h.run(t, append([]string{"template", releaseName, chartDir, "--namespace", "openfaas"}, args...)...)
	if err != nil {
		return "", fmt.Errorf("helm template %s: %w: %s", strings.Join(args, " "), err, errOut)
	}
	return out, nil
}

// render renders the chart and decodes what it renders.
func (h helm) render(t *testing.T, args ...string) []document {
	t.Helper()
	out, err := h.template(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := parseDocuments("chart", []byte(out))
	if err != nil {
		t.Fatalf("helm template %s: the rendering does not parse: %v", strings.Join(args, " "), err)
	}
	return docs
}

// rendering is one way of installing the chart.
type rendering struct {
	name string
	args []string // for helm template
}

// renderings are the chart with its defaults, and with each values file of
// its ci folder.
func renderings(t *testing.T) []rendering {
	t.Helper()
	out := []rendering{{name: "chart with its defaults"}}
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no values file in %s/ci", chartDir)
	}
	for _, f := range files {
		out = append(out, rendering{name: "chart with ci/" + filepath.Base(f), args: []string{"--values", f}})
	}
	return out
}

// defaultConnector is the connector as the chart deploys it by default.
func defaultConnector(t *testing.T, h helm) connector {
	t.Helper()
	ks := connectors(t, h.render(t))
	if len(ks) != 1 {
		t.Fatalf("the chart deploys the connector %d times, want once", len(ks))
	}
	return ks[0]
}

func TestChartLint(t *testing.T) {
	h := newHelm(t)
	for _, r := range renderings(t) {
		t.Run(r.name, func(t *testing.T) {
			out, errOut, err := h.run(t, append([]string{"lint", "--strict", chartDir}, r.args...)...)
			if err != nil {
				t.Errorf("helm lint: %v\n%s%s", err, out, errOut)
			}
		})
	}
}

// TestChartRenderings runs the checks of this folder's files on each
// rendering of the chart.
func TestChartRenderings(t *testing.T) {
	h := newHelm(t)
	for _, r := range renderings(t) {
		t.Run(r.name, func(t *testing.T) {
			docs := h.render(t, r.args...)
			for _, d := range docs {
				if d.kind() != "kubernetes" {
					t.Errorf("document %d is not a Kubernetes object", d.index)
					continue
				}
				checkKubernetesObject(t, d)
			}
			runConnectorChecks(t, docs)
		})
	}
}

// TestChartDefaults keeps the settings of the chart's defaults at the
// connector's defaults, but for the deliberate ones.
func TestChartDefaults(t *testing.T) {
	checkDefaults(t, defaultConnector(t, newHelm(t)))
}

// TestChartAgreesWithKustomize keeps the two ways of installing on
// Kubernetes from saying different things: by default the chart runs the
// connector with the settings, security, probes, resources and volumes of
// kubernetes/deployment.yaml.
func TestChartAgreesWithKustomize(t *testing.T) {
	chart := defaultConnector(t, newHelm(t))
	var kustomize connector
	for _, k := range connectors(t, readAll(t)) {
		if strings.HasPrefix(k.where, "kubernetes/deployment.yaml:") {
			kustomize = k
		}
	}
	if !kustomize.kubernetes {
		t.Fatal("kubernetes/deployment.yaml deploys no connector")
	}

	t.Run("settings", func(t *testing.T) {
		root := t.TempDir()
		a := settings(loadConfig(t, chart, root))
		b := settings(loadConfig(t, kustomize, root))
		for _, name := range slices.Sorted(maps.Keys(a)) {
			if a[name] != b[name] {
				t.Errorf("%s: the chart gives %s, kubernetes/deployment.yaml %s", name, a[name], b[name])
			}
		}
		if !reflect.DeepEqual(chart.fromElsewhere, kustomize.fromElsewhere) {
			t.Errorf("variables from elsewhere: the chart sets %v, kubernetes/deployment.yaml %v", chart.fromElsewhere, kustomize.fromElsewhere)
		}
	})

	// The tag is not compared: the chart pins its appVersion where
	// kustomization.yaml asks for one.
	image := func(k connector) string {
		slash := strings.LastIndex(k.c.Image, "/")
		if colon := strings.LastIndex(k.c.Image, ":"); colon > slash {
			return k.c.Image[:colon]
		}
		return k.c.Image
	}
	if a, b := image(chart), image(kustomize); a != b {
		t.Errorf("image: the chart runs %s, kubernetes/deployment.yaml %s", a, b)
	}
	same := []string{
		"spec.replicas",
		"spec.template.metadata.annotations",
		"spec.template.spec.terminationGracePeriodSeconds",
		"spec.template.spec.automountServiceAccountToken",
		"spec.template.spec.securityContext",
		"container.imagePullPolicy",
		"container.ports",
		"container.livenessProbe",
		"container.readinessProbe",
		"container.resources",
		"container.securityContext",
		"volume.auth",
		"mount.auth",
		// Not the Kafka credentials: the chart mounts them only when its
		// values name Secrets, where kustomize mounts an optional one.
		// Both put them in /var/kafka-secrets, under the names loadConfig
		// checks on each rendering.
	}
	for _, p := range same {
		a, b := lookup(chart, p), lookup(kustomize, p)
		if a == nil {
			t.Errorf("%s: the chart says nothing", p)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s:\nthe chart:                  %v\nkubernetes/deployment.yaml: %v", p, a, b)
		}
	}
}

// settings is a configuration as the connector logs it at start, secrets
// left out: one value a setting.
func settings(cfg config.Config) map[string]string {
	out := map[string]string{}
	for _, a := range cfg.LogValue().Group() {
		out[a.Key] = a.Value.String()
	}
	return out
}

// lookup finds a part of a workload: a dotted path from the object, from
// its connector container ("container."), or a volume or volume mount by
// name ("volume.", "mount.").
func lookup(k connector, p string) any {
	byName := func(list any, name string) any {
		items, _ := list.([]any)
		for _, it := range items {
			if m, ok := it.(map[string]any); ok && m["name"] == name {
				return m
			}
		}
		return nil
	}
	walk := func(v any, keys ...string) any {
		for _, key := range keys {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[key]
		}
		return v
	}
	pod := walk(k.object, "spec", "template", "spec")
	c := byName(walk(pod, "containers"), connectorName)
	head, rest, _ := strings.Cut(p, ".")
	switch head {
	case "container":
		return walk(c, strings.Split(rest, ".")...)
	case "volume":
		return byName(walk(pod, "volumes"), rest)
	case "mount":
		return byName(walk(c, "volumeMounts"), rest)
	}
	return walk(k.object, strings.Split(p, ".")...)
}

// chartValues decodes the chart's values.yaml.
func chartValues(t *testing.T) (yaml.Node, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	var m map[string]any
	if err := yaml.Unmarshal(raw, &n); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return n, m
}

// TestChartOffersEverySetting wants a way to set every variable the
// connector reads: a key of config in values.yaml, written with its
// default, or a key of the chart's own that sets it in one of the
// renderings.
func TestChartOffersEverySetting(t *testing.T) {
	h := newHelm(t)
	_, values := chartValues(t)
	cfg, _ := values["config"].(map[string]any)
	offered := map[string]bool{}
	for name := range cfg {
		offered[name] = true
	}
	for _, r := range renderings(t) {
		for _, k := range connectors(t, h.render(t, r.args...)) {
			for name := range k.env {
				offered[name] = true
			}
			for name := range k.fromElsewhere {
				offered[name] = true
			}
		}
	}
	for _, name := range config.Names() {
		switch name {
		case "sasl_password":
			continue // only ever from a Secret, as sasl_password_file
		case "instance_id":
			continue // TestChartInstanceID
		}
		if !offered[name] {
			def, _ := defaultOf(name)
			t.Errorf("the chart offers no way to set %s: add `%s: %s` to config in values.yaml, and its row to the chart's README", name, name, strconv.Quote(def))
		}
	}
}

// TestChartInstanceID: with instanceIdFromPodName, each replica is told its
// pod's name as instance_id. It is on by default exactly when the connector
// reads instance_id, as a variable the connector does not read is not to
// be set.
func TestChartInstanceID(t *testing.T) {
	h := newHelm(t)
	_, values := chartValues(t)
	reads := slices.Contains(config.Names(), "instance_id")
	on, _ := values["instanceIdFromPodName"].(bool)
	switch {
	case reads && !on:
		t.Error("the connector reads instance_id: set instanceIdFromPodName: true in values.yaml and in the chart's README")
	case !reads && on:
		t.Error("the connector does not read instance_id: instanceIdFromPodName must be false in values.yaml")
	}

	ks := connectors(t, h.render(t, "--set", "instanceIdFromPodName=true"))
	want := map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.name"}}
	for _, k := range ks {
		if got := k.fromElsewhere["instance_id"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: instance_id from %v, want %v", k.where, got, want)
		}
	}
}

// TestChartRefuses: values that contradict each other, or that the
// connector would refuse at start, stop helm with a message that says what
// to do.
func TestChartRefuses(t *testing.T) {
	h := newHelm(t)
	cases := []struct {
		name string
		set  string
		want string
	}{
		{"a password as a value", "config.sasl_password=secret", "sasl.secretName"},
		{"instance_id as a value", "config.instance_id=one", "instanceIdFromPodName"},
		{"a setting set twice", "extraEnv[0].name=max_wait,extraEnv[0].value=2s", "config.max_wait sets it already"},
		{"extra environment without a name", "extraEnv[0].value=x", "an entry without a name"},
		{"a setting of the chart in extraEnv", "extraEnv[0].name=tls,extraEnv[0].value=true", "tls.enabled"},
		{"a CA without TLS", "tls.ca.secretName=ca", "need tls.enabled=true"},
		{"no certificate check without TLS", "tls.insecureSkipVerify=true", "need tls.enabled=true"},
		{"SASL without its Secret", "sasl.mechanism=SCRAM-SHA-256", "sasl.secretName"},
		{"an unknown SASL mechanism", "sasl.mechanism=GSSAPI,sasl.secretName=s", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{"a SASL user without a mechanism", "sasl.username=me", "need sasl.mechanism"},
		{"an address without a port", "config.http_addr=localhost", "config.http_addr"},
		{"registry credentials without a registry", "schemaRegistry.secretName=registry", "need config.schema_registry_url"},
	}
	// Every variable the chart sets from its own keys is refused in
	// config, naming the key to use instead.
	_, values := chartValues(t)
	cfg, _ := values["config"].(map[string]any)
	own := map[string]bool{}
	for _, r := range renderings(t) {
		for _, k := range connectors(t, h.render(t, r.args...)) {
			for name := range k.env {
				if _, ok := cfg[name]; !ok {
					own[name] = true
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(own)) {
		cases = append(cases, struct{ name, set, want string }{
			"config." + name, "config." + name + "=x", "config." + name + ": set it with ",
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.template(t, "--set", c.set)
			if err == nil {
				t.Fatalf("--set %s: rendered", c.set)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("--set %s: %v\nwant a message with %q", c.set, err, c.want)
			}
		})
	}
}

// valuesRow matches a row of the values table of the chart's README:
// | `key` | default | meaning |
var valuesRow = regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_.-]+)` \\| ([^|]*) \\|")

// TestChartValuesTable keeps the chart's README in step with values.yaml:
// a row for every key (a row for a map covers what it holds), with the
// default values.yaml gives, and no row for a key that is not there.
func TestChartValuesTable(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range valuesRow.FindAllSubmatch(readme, -1) {
		rows[string(m[1])] = strings.TrimSpace(string(m[2]))
	}
	if len(rows) == 0 {
		t.Fatal("the chart's README has no values table")
	}

	doc, _ := chartValues(t)
	leaves := map[string]*yaml.Node{}
	keys := map[string]bool{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
			leaves[prefix] = n
			return
		}
		for i := 0; i < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			keys[key] = true
			walk(key, n.Content[i+1])
		}
	}
	walk("", doc.Content[0])

	for _, leaf := range slices.Sorted(maps.Keys(leaves)) {
		covered := ""
		for p := leaf; p != ""; p = parent(p) {
			if _, ok := rows[p]; ok {
				covered = p
				break
			}
		}
		if covered == "" {
			t.Errorf("the chart's README has no row | `%s` | default | meaning |", leaf)
			continue
		}
		if covered != leaf {
			continue // a row for a map: its default is described, not quoted
		}
		if got, want := rows[leaf], tableDefault(leaves[leaf]); got != want {
			t.Errorf("%s: the README gives the default %s, values.yaml %s", leaf, got, want)
		}
	}
	for _, row := range slices.Sorted(maps.Keys(rows)) {
		if !keys[row] {
			t.Errorf("the chart's README has a row for %s, which values.yaml does not have", row)
		}
	}
}

func parent(key string) string {
	i := strings.LastIndex(key, ".")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// tableDefault is how the values table writes a default: in backquotes,
// "" for an empty string, [] and {} for empty lists and maps.
func tableDefault(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.SequenceNode && len(n.Content) == 0:
		return "`[]`"
	case n.Kind == yaml.MappingNode && len(n.Content) == 0:
		return "`{}`"
	case n.Kind == yaml.ScalarNode && n.Value == "":
		return "`\"\"`"
	case n.Kind == yaml.ScalarNode:
		return "`" + n.Value + "`"
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	_ = enc.Encode(n)
	return "`" + strings.TrimSpace(b.String()) + "`"
}

// notes renders the chart's NOTES.txt, which helm template leaves out: a
// copy of the chart holds it as a named template, rendered into a YAML
// string.
func (h helm) notes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Base(chartDir))
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"_notes-preview.tpl": `{{- define "notes-preview" -}}` + string(raw) + `{{- end -}}`,
		"notes-preview.yaml": `notes: {{ include "notes-preview" . | toJson }}`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "templates", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err := h.run(t, append([]string{"template", releaseName, dir, "--namespace", "openfaas", "--show-only", "templates/notes-preview.yaml"}, args...)...)
	if err != nil {
		t.Fatalf("rendering NOTES.txt %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	var doc struct {
		Notes string `yaml:"notes"`
	}
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("rendering NOTES.txt: %v\n%s", err, out)
	}
	return doc.Notes
}

// TestChartNotes: what helm prints after an install names the image the
// pods run and, while it is the published one, says how to build and push
// it instead, as no release may have published it yet.
func TestChartNotes(t *testing.T) {
	h := newHelm(t)
	appVersion := readChartYAML(t).AppVersion
	build := []string{"ImagePullBackOff", "docker buildx build --platform linux/amd64,linux/arm64", "--set image.repository=", "docs/install.md"}
	cases := []struct {
		name      string
		args      []string
		want      []string
		wantBuild bool
	}{
		{"defaults", nil, []string{"ghcr.io/kafka-connector/kafka-connector:" + appVersion, "release " + appVersion + "."}, true},
		{"another release", []string{"--set", "image.tag=9.9.9"}, []string{"ghcr.io/kafka-connector/kafka-connector:9.9.9", "release 9.9.9."}, true},
		{"an image of its own", []string{"--set", "image.repository=registry.example.com/team/kafka-connector,image.tag=dev"}, []string{"registry.example.com/team/kafka-connector:dev"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			notes := h.notes(t, c.args...)
			for _, want := range c.want {
				if !strings.Contains(notes, want) {
					t.Errorf("the notes do not say %q:\n%s", want, notes)
				}
			}
			for _, b := range build {
				if got := strings.Contains(notes, b); got != c.wantBuild {
					t.Errorf("the notes say %q: %v, want %v:\n%s", b, got, c.wantBuild, notes)
				}
			}
		})
	}
}
