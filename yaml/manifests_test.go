// Package yaml_test keeps the deployment files of this folder in step with
// the connector: every file parses, every variable set on the connector is
// one it reads (with a value it accepts), the probes point at its endpoints,
// the example function carries a topic and the README lists every setting
// with its default.
package yaml_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kafka-connector/kafka-connector/config"
	"github.com/kafka-connector/kafka-connector/types"
)

// connectorName is the name of the connector's container (Kubernetes) and
// service (Compose).
const connectorName = "kafka-connector"

// The files this folder must hold; any other YAML file is checked too.
var wantFiles = []string{
	"kubernetes/deployment.yaml",
	"kubernetes/kustomization.yaml",
	"docker-compose.yml",
	"stack.yml",
}

// Kubernetes objects, as far as the checks need them.
type k8sObject struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   k8sMetadata `yaml:"metadata"`
	Spec       struct {
		Template struct {
			Metadata k8sMetadata `yaml:"metadata"`
			Spec     podSpec     `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sMetadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Annotations map[string]string `yaml:"annotations"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64      `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container `yaml:"containers"`
}

type container struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Env   []struct {
		Name      string         `yaml:"name"`
		Value     *string        `yaml:"value"`
		ValueFrom map[string]any `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// A Compose file, as far as the checks need it.
type composeFile struct {
	Services map[string]struct {
		Image           string     `yaml:"image"`
		Environment     composeEnv `yaml:"environment"`
		StopGracePeriod string     `yaml:"stop_grace_period"`
	} `yaml:"services"`
}

// composeEnv is a service's environment, written either as a mapping or as
// a list of NAME=value.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	*e = composeEnv{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			(*e)[k] = v
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, item := range l {
			k, v, _ := strings.Cut(item, "=")
			(*e)[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment is neither a mapping nor a list", n.Line)
	}
	return nil
}

// An OpenFaaS stack file (version 1.0), as far as the checks need it.
type stackFile struct {
	Version  string `yaml:"version"`
	Provider struct {
		Name    string `yaml:"name"`
		Gateway string `yaml:"gateway"`
	} `yaml:"provider"`
	Functions map[string]struct {
		Image       string            `yaml:"image"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"functions"`
}

// document is one YAML document of a file.
type document struct {
	file  string // relative to this folder, with forward slashes
	index int    // of the document in its file, from 1
	raw   []byte // the whole file, comments included
	node  yaml.Node
}

// kind tells what a document is from its top-level keys.
func (d document) kind() string {
	var keys map[string]yaml.Node
	if err := d.node.Decode(&keys); err != nil {
		return ""
	}
	has := func(k string) bool { _, ok := keys[k]; return ok }
	switch {
	case has("apiVersion") && has("kind"):
		return "kubernetes"
	case has("services"):
		return "compose"
	case has("provider") && has("functions"):
		return "stack"
	}
	return ""
}

// readAll decodes every document of every YAML file under this folder. A
// file that does not parse is left out; TestEveryFileParses reports it.
func readAll(t *testing.T) []document {
	t.Helper()
	docs, _ := readFiles(t)
	return docs
}

// readFiles decodes every document of every YAML file under this folder,
// and says why a file does not parse.
func readFiles(t *testing.T) ([]document, map[string]error) {
	t.Helper()
	var docs []document
	bad := map[string]error{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yml" && ext != ".yaml" {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		file := filepath.ToSlash(path)
		var fileDocs []document
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for i := 1; ; i++ {
			var n yaml.Node
			if err := dec.Decode(&n); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				bad[file] = err
				return nil
			}
			fileDocs = append(fileDocs, document{file: file, index: i, raw: raw, node: n})
		}
		docs = append(docs, fileDocs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs, bad
}

func ofKind(docs []document, kind string) []document {
	var out []document
	for _, d := range docs {
		if d.kind() == kind {
			out = append(out, d)
		}
	}
	return out
}

// connector is the connector as one file deploys it.
type connector struct {
	where string
	env   map[string]string // variables with a literal value
	// names of variables set from elsewhere (valueFrom)
	fromElsewhere []string
	// the time a stop signal gets before the connector is killed
	grace time.Duration
	// for Kubernetes only
	kubernetes  bool
	c           container
	annotations map[string]string
}

// connectors finds the connector in the Kubernetes workloads and the Compose
// files. A file that deploys it nowhere is no error: Kustomizations and the
// like hold no container.
func connectors(t *testing.T, docs []document) []connector {
	t.Helper()
	var out []connector
	for _, d := range ofKind(docs, "kubernetes") {
		var o k8sObject
		if err := d.node.Decode(&o); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			if c.Name != connectorName {
				continue
			}
			k := connector{
				where:       fmt.Sprintf("%s: %s %s, container %s", d.file, o.Kind, o.Metadata.Name, c.Name),
				env:         map[string]string{},
				kubernetes:  true,
				c:           c,
				annotations: o.Spec.Template.Metadata.Annotations,
				grace:       30 * time.Second, // the Kubernetes default
			}
			if g := o.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
				k.grace = time.Duration(*g) * time.Second
			}
			for _, e := range c.Env {
				switch {
				case e.Value != nil:
					k.env[e.Name] = *e.Value
				case e.ValueFrom != nil:
					k.fromElsewhere = append(k.fromElsewhere, e.Name)
				default:
					k.env[e.Name] = ""
				}
			}
			out = append(out, k)
		}
	}
	for _, d := range ofKind(docs, "compose") {
		var f composeFile
		if err := d.node.Decode(&f); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		s, ok := f.Services[connectorName]
		if !ok {
			continue
		}
		k := connector{
			where: fmt.Sprintf("%s: service %s", d.file, connectorName),
			env:   s.Environment,
			grace: 10 * time.Second, // the Compose default
		}
		if s.StopGracePeriod != "" {
			g, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil {
				t.Fatalf("%s: stop_grace_period: %v", k.where, err)
			}
			k.grace = g
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		t.Fatal("no file deploys the connector")
	}
	return out
}

func TestEveryFileParses(t *testing.T) {
	docs, bad := readFiles(t)
	for file, err := range bad {
		t.Errorf("%s: %v", file, err)
	}
	for _, want := range wantFiles {
		if _, ok := bad[want]; ok {
			continue
		}
		if !slices.ContainsFunc(docs, func(d document) bool { return d.file == want }) {
			t.Errorf("%s is missing or empty", want)
		}
	}
	for _, d := range docs {
		t.Run(fmt.Sprintf("%s/%d", d.file, d.index), func(t *testing.T) {
			switch d.kind() {
			case "kubernetes":
				var o k8sObject
				if err := d.node.Decode(&o); err != nil {
					t.Fatal(err)
				}
				if o.Kind == "Deployment" && o.Metadata.Namespace != "openfaas" {
					t.Errorf("Deployment %s: namespace %q, want openfaas", o.Metadata.Name, o.Metadata.Namespace)
				}
			case "compose":
				var f composeFile
				if err := d.node.Decode(&f); err != nil {
					t.Fatal(err)
				}
			case "stack":
				var f stackFile
				if err := d.node.Decode(&f); err != nil {
					t.Fatal(err)
				}
			default:
				t.Errorf("line %d: neither a Kubernetes object, a Compose file nor an OpenFaaS stack file", d.node.Line)
			}
		})
	}
}

func TestConnectorEnvironmentIsRead(t *testing.T) {
	known := config.Names()
	for _, k := range connectors(t, readAll(t)) {
		t.Run(k.where, func(t *testing.T) {
			for name := range k.env {
				if !slices.Contains(known, name) {
					t.Errorf("%s is set but the connector does not read it", name)
				}
			}
			for _, name := range k.fromElsewhere {
				if !slices.Contains(known, name) {
					t.Errorf("%s is set but the connector does not read it", name)
				}
			}
		})
	}
}

// commentedEnv matches a commented-out Kubernetes env entry, such as
//
//	# - name: tls
//	#   value: "true"
//
// which an operator uncomments to turn a setting on.
var commentedEnv = regexp.MustCompile(`(?m)^\s*#\s*- name:\s*(\S+)\s*\n\s*#\s*value:`)

func TestCommentedSettingsAreRead(t *testing.T) {
	known := config.Names()
	seen := map[string]bool{}
	for _, d := range ofKind(readAll(t), "kubernetes") {
		if seen[d.file] {
			continue
		}
		seen[d.file] = true
		for _, m := range commentedEnv.FindAllSubmatch(d.raw, -1) {
			name := string(m[1])
			t.Run(d.file+"/"+name, func(t *testing.T) {
				if !slices.Contains(known, name) {
					t.Errorf("the comment offers %s, which the connector does not read", name)
				}
			})
		}
	}
}

// TestConnectorAcceptsTheSettings runs the connector's own configuration
// check on each file's environment, with stand-in gateway credentials.
func TestConnectorAcceptsTheSettings(t *testing.T) {
	for _, k := range connectors(t, readAll(t)) {
		t.Run(k.where, func(t *testing.T) {
			clearEnv(t)
			for name, value := range k.env {
				t.Setenv(name, value)
			}
			secrets := t.TempDir()
			for _, f := range []string{"basic-auth-user", "basic-auth-password"} {
				if err := os.WriteFile(filepath.Join(secrets, f), []byte("admin\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("secret_mount_path", secrets)

			cfg, err := config.FromEnv()
			if err != nil {
				t.Fatalf("the connector refuses the settings: %v", err)
			}
			if k.grace <= cfg.ShutdownTimeout {
				t.Errorf("grace period %v: want more than shutdown_timeout (%v), or batches in flight are killed", k.grace, cfg.ShutdownTimeout)
			}
		})
	}
}

// clearEnv unsets every variable the connector reads, in both spellings,
// for the rest of the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, n := range append(config.Names(), "broker_host") {
		for _, name := range []string{n, strings.ToUpper(n)} {
			t.Setenv(name, "") // restored at the end of the test
			os.Unsetenv(name)
		}
	}
}

func TestKubernetesProbesAndScraping(t *testing.T) {
	for _, k := range connectors(t, readAll(t)) {
		if !k.kubernetes {
			continue
		}
		t.Run(k.where, func(t *testing.T) {
			httpPort := "8081"
			if addr, ok := k.env["http_addr"]; ok {
				_, p, err := net.SplitHostPort(addr)
				if err != nil {
					t.Fatalf("http_addr=%q: %v", addr, err)
				}
				httpPort = p
			}
			// resolve turns a port name into its number.
			resolve := func(port string) string {
				for _, p := range k.c.Ports {
					if p.Name != "" && p.Name == port {
						return strconv.Itoa(p.ContainerPort)
					}
				}
				return port
			}

			probes := []struct {
				name  string
				probe *probe
				path  string
			}{
				{"livenessProbe", k.c.LivenessProbe, "/healthz"},
				{"readinessProbe", k.c.ReadinessProbe, "/readyz"},
			}
			for _, p := range probes {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("%s: want an httpGet probe on %s", p.name, p.path)
					continue
				}
				if got := p.probe.HTTPGet.Path; got != p.path {
					t.Errorf("%s: path %q, want %q", p.name, got, p.path)
				}
				if got := resolve(p.probe.HTTPGet.Port); got != httpPort {
					t.Errorf("%s: port %q, want %s (http_addr)", p.name, got, httpPort)
				}
			}

			annotations := []struct{ key, want string }{
				{"prometheus.io/scrape", "true"},
				{"prometheus.io/port", httpPort},
				{"prometheus.io/path", "/metrics"},
			}
			for _, a := range annotations {
				if got := k.annotations[a.key]; got != a.want {
					t.Errorf("pod annotation %s=%q, want %q", a.key, got, a.want)
				}
			}
		})
	}
}

// knownAnnotations are the per-function overrides the connector reads; a
// misspelt one would be ignored without a word.
var knownAnnotations = []string{
	types.TopicAnnotation,
	types.AnnotationEnabled,
	types.AnnotationGroup,
	types.AnnotationInitialOffset,
	types.AnnotationMaxMessages,
	types.AnnotationMaxWait,
	types.AnnotationMaxRetries,
	types.AnnotationDeadLetterTopic,
	types.AnnotationFilter,
}

func TestStackFunctionsHaveATopic(t *testing.T) {
	stacks := ofKind(readAll(t), "stack")
	if len(stacks) == 0 {
		t.Fatal("no OpenFaaS stack file")
	}
	for _, d := range stacks {
		var f stackFile
		if err := d.node.Decode(&f); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		if f.Provider.Name != "openfaas" {
			t.Errorf("%s: provider name %q, want openfaas", d.file, f.Provider.Name)
		}
		if len(f.Functions) == 0 {
			t.Errorf("%s: no functions", d.file)
		}
		for name, fn := range f.Functions {
			t.Run(d.file+"/"+name, func(t *testing.T) {
				if fn.Image == "" {
					t.Error("no image")
				}
				topics := types.Function{Name: name, Annotations: fn.Annotations}.Topics(",")
				if len(topics) == 0 {
					t.Fatalf("no %q annotation: the connector would not feed it", types.TopicAnnotation)
				}
				for _, topic := range topics {
					if err := types.CheckTopicName(topic); err != nil {
						t.Errorf("topic %q: %v", topic, err)
					}
				}
				for a := range fn.Annotations {
					if strings.HasPrefix(a, "kafka-") && !slices.Contains(knownAnnotations, a) {
						t.Errorf("annotation %s: the connector does not read it", a)
					}
				}
				if _, err := (types.TriggerSettings{}).WithAnnotations(fn.Annotations); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// settingRow matches a row of the configuration table of the README:
// | `name` | default | meaning |
var settingRow = regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([^|]*) \\|")

// TestReadmeListsEverySetting keeps the configuration table of the README
// in step with the connector: one row per variable, with its default.
func TestReadmeListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// Only the Configuration section: other tables (metrics) have rows too.
	_, raw, ok := bytes.Cut(readme, []byte("\n## Configuration\n"))
	if !ok {
		t.Fatal("the README has no Configuration section")
	}
	if end := bytes.Index(raw, []byte("\n## ")); end >= 0 {
		raw = raw[:end]
	}
	rows := map[string]string{} // name to default as written
	for _, m := range settingRow.FindAllSubmatch(raw, -1) {
		rows[string(m[1])] = strings.Trim(strings.TrimSpace(string(m[2])), "`")
	}
	fields := reflect.VisibleFields(reflect.TypeFor[config.Config]())
	for _, f := range fields {
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			got, ok := rows[name]
			if !ok {
				t.Fatalf("the README has no row | `%s` | default | meaning |", name)
			}
			want := f.Tag.Get("default")
			if want == "" {
				want = "none"
			}
			if got != want {
				t.Errorf("the README gives the default %q, the connector %q", got, want)
			}
		})
	}
	known := config.Names()
	for name := range rows {
		if !slices.Contains(known, name) {
			t.Errorf("the README lists %s, which the connector does not read", name)
		}
	}
}
