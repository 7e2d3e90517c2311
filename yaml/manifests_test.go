// Package yaml_test keeps the deployment files of this folder, and the Helm
// chart in ../chart, in step with the connector: every file parses, every
// variable set on the connector is one it reads (with a value it accepts,
// and its default unless there is a reason), the files it reads are where
// the volumes put them, the probes point at its endpoints, the example
// function carries a topic and the docs list every setting with its
// default. They also check what publishes a release: the workflows lint
// clean, and the release publishes the image and the chart that the
// chart, these files and the install docs name.
package yaml_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
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
	"github.com/kafka-connector/kafka-connector/internal/testkit"
	"github.com/kafka-connector/kafka-connector/tracing"
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

// deliberate are the settings a deployment may give another value than the
// connector's default, and why. Every other setting a deployment writes has
// the connector's default, so that a default changed in the code is not
// contradicted by a stale copy in a file.
var deliberate = map[string]string{
	"gateway_url":  "the gateway, as the cluster or the host names it",
	"broker_hosts": "the brokers, as the cluster or the host names them",
	"basic_auth":   "an OpenFaaS gateway asks for its credentials",
	"log_format":   "log collectors read JSON",
}

// Kubernetes objects, as far as the checks need them.
type k8sObject struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   k8sMetadata `yaml:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata k8sMetadata `yaml:"metadata"`
			Spec     podSpec     `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sMetadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64      `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container `yaml:"containers"`
	Volumes                       []volume    `yaml:"volumes"`
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
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// volume is a pod's volume; only Secrets, alone or projected, say which
// files they hold.
type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		Items []keyToPath `yaml:"items"`
	} `yaml:"secret"`
	Projected *struct {
		Sources []struct {
			Secret *struct {
				Items []keyToPath `yaml:"items"`
			} `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

// files lists what the volume holds, or nil when it holds whatever the
// operator puts there (a Secret without items, any other kind of volume).
func (v volume) files() []string {
	var items []keyToPath
	switch {
	case v.Secret != nil:
		if len(v.Secret.Items) == 0 {
			return nil
		}
		items = v.Secret.Items
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			if s.Secret == nil || len(s.Secret.Items) == 0 {
				return nil
			}
			items = append(items, s.Secret.Items...)
		}
	default:
		return nil
	}
	files := []string{}
	for _, it := range items {
		files = append(files, it.Path)
	}
	return files
}

// A Service or a ServiceMonitor, as far as the checks need them.
type k8sService struct {
	Metadata k8sMetadata `yaml:"metadata"`
	Spec     struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			TargetPort string `yaml:"targetPort"` // a number or a port name
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	Metadata k8sMetadata `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		NamespaceSelector struct {
			MatchNames []string `yaml:"matchNames"`
		} `yaml:"namespaceSelector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// A Compose file, as far as the checks need it.
type composeFile struct {
	Services map[string]struct {
		Image           string          `yaml:"image"`
		Environment     composeEnv      `yaml:"environment"`
		StopGracePeriod string          `yaml:"stop_grace_period"`
		Volumes         []composeVolume `yaml:"volumes"`
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

// composeVolume is where a service's volume is mounted, written either as
// source:target[:mode] or as a mapping with a target.
type composeVolume struct{ target string }

func (v *composeVolume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		switch len(parts) {
		case 1:
			v.target = parts[0]
		default:
			v.target = parts[1]
		}
		return nil
	}
	var m struct {
		Target string `yaml:"target"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	v.target = m.Target
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

// document is one YAML document of a file, or of the chart's rendering.
type document struct {
	file  string // relative to this folder with forward slashes, or the rendering's name
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
		if err == nil && d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir // what tests read, such as promtool's
		}
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
		fileDocs, err := parseDocuments(file, raw)
		if err != nil {
			bad[file] = err
			return nil
		}
		docs = append(docs, fileDocs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs, bad
}

// parseDocuments decodes the documents of one file, leaving out empty ones
// (such as a comment between two "---").
func parseDocuments(file string, raw []byte) ([]document, error) {
	var docs []document
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for i := 1; ; i++ {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		if len(n.Content) == 0 || n.Content[0].Tag == "!!null" {
			continue
		}
		docs = append(docs, document{file: file, index: i, raw: raw, node: n})
	}
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

// mount is a folder of the connector's file system that a volume provides.
type mount struct {
	path  string
	files []string // relative to path; nil: whatever the operator puts there
}

// connector is the connector as one file deploys it.
type connector struct {
	where string
	env   map[string]string // variables with a literal value
	// variables set from elsewhere (valueFrom), by name
	fromElsewhere map[string]map[string]any
	// the time a stop signal gets before the connector is killed
	grace  time.Duration
	mounts []mount
	// for Kubernetes only
	kubernetes  bool
	c           container
	annotations map[string]string
	object      map[string]any // the whole workload, to compare deployments
	// ServiceMonitors that scrape the pods' /metrics on the port of
	// http_addr
	scrapedBy []string
}

// mountFor finds the volume a file of the connector's file system is on.
func (k connector) mountFor(file string) (mount, bool) {
	var best mount
	found := false
	for _, m := range k.mounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.path, "/")+"/") && len(m.path) >= len(best.path) {
			best, found = m, true
		}
	}
	return best, found
}

// httpPort is the port the connector listens on, from http_addr.
func (k connector) httpPort(t *testing.T) string {
	t.Helper()
	addr, ok := k.env["http_addr"]
	if !ok {
		addr, _ = defaultOf("http_addr")
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("http_addr=%q: %v", addr, err)
	}
	return p
}

// resolvePort turns a port name of the container into its number.
func (k connector) resolvePort(port string) string {
	for _, p := range k.c.Ports {
		if p.Name != "" && p.Name == port {
			return strconv.Itoa(p.ContainerPort)
		}
	}
	return port
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
				where:         fmt.Sprintf("%s: %s %s, container %s", d.file, o.Kind, o.Metadata.Name, c.Name),
				env:           map[string]string{},
				fromElsewhere: map[string]map[string]any{},
				kubernetes:    true,
				c:             c,
				annotations:   o.Spec.Template.Metadata.Annotations,
				grace:         30 * time.Second, // the Kubernetes default
			}
			if err := d.node.Decode(&k.object); err != nil {
				t.Fatalf("%s: %v", d.file, err)
			}
			if g := o.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
				k.grace = time.Duration(*g) * time.Second
			}
			for _, e := range c.Env {
				switch {
				case e.Value != nil:
					k.env[e.Name] = *e.Value
				case e.ValueFrom != nil:
					k.fromElsewhere[e.Name] = e.ValueFrom
				default:
					k.env[e.Name] = ""
				}
			}
			for _, vm := range c.VolumeMounts {
				m := mount{path: vm.MountPath}
				for _, v := range o.Spec.Template.Spec.Volumes {
					if v.Name == vm.Name {
						m.files = v.files()
					}
				}
				k.mounts = append(k.mounts, m)
			}
			k.scrapedBy = monitorsOf(t, docs, o, k)
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
		for _, v := range s.Volumes {
			k.mounts = append(k.mounts, mount{path: v.target})
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		t.Fatal("no file deploys the connector")
	}
	return out
}

// monitorsOf names the ServiceMonitors among docs that scrape the pods of
// workload o on /metrics at the port of http_addr, through a Service.
func monitorsOf(t *testing.T, docs []document, o k8sObject, k connector) []string {
	t.Helper()
	var services []k8sService
	var monitors []serviceMonitor
	for _, d := range ofKind(docs, "kubernetes") {
		var head struct {
			Kind string `yaml:"kind"`
		}
		if err := d.node.Decode(&head); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		var err error
		switch head.Kind {
		case "Service":
			var s k8sService
			err = d.node.Decode(&s)
			services = append(services, s)
		case "ServiceMonitor":
			var m serviceMonitor
			err = d.node.Decode(&m)
			monitors = append(monitors, m)
		}
		if err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
	}
	selects := func(selector, labels map[string]string) bool {
		for k, v := range selector {
			if labels[k] != v {
				return false
			}
		}
		return len(selector) > 0
	}
	httpPort := k.httpPort(t)
	var names []string
	for _, m := range monitors {
		if !slices.Contains(m.Spec.NamespaceSelector.MatchNames, o.Metadata.Namespace) && m.Metadata.Namespace != o.Metadata.Namespace {
			continue
		}
		for _, s := range services {
			if s.Metadata.Namespace != o.Metadata.Namespace ||
				!selects(m.Spec.Selector.MatchLabels, s.Metadata.Labels) ||
				!selects(s.Spec.Selector, o.Spec.Template.Metadata.Labels) {
				continue
			}
			for _, e := range m.Spec.Endpoints {
				for _, p := range s.Spec.Ports {
					if p.Name == e.Port && k.resolvePort(p.TargetPort) == httpPort && e.Path == "/metrics" {
						names = append(names, m.Metadata.Name)
					}
				}
			}
		}
	}
	return names
}

// defaultOf is the connector's default for a variable, as its tag writes it,
// and whether the connector reads that variable at all.
func defaultOf(name string) (string, bool) {
	for _, f := range reflect.VisibleFields(reflect.TypeFor[config.Config]()) {
		if f.Tag.Get("envconfig") == name {
			return f.Tag.Get("default"), true
		}
	}
	return "", false
}

// sameSetting tells whether two values of a variable mean the same, such as
// 60s and 1m.
func sameSetting(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}

// checkKubernetesObject checks what every Kubernetes object of the
// deployments must say.
func checkKubernetesObject(t *testing.T, d document) {
	t.Helper()
	var o k8sObject
	if err := d.node.Decode(&o); err != nil {
		t.Fatal(err)
	}
	if o.Kind != "Deployment" {
		return
	}
	if o.Metadata.Namespace != "openfaas" {
		t.Errorf("Deployment %s: namespace %q, want openfaas", o.Metadata.Name, o.Metadata.Namespace)
	}
	// Kubernetes refuses a Deployment whose pods its selector does not
	// select.
	selector := o.Spec.Selector.MatchLabels
	if len(selector) == 0 {
		t.Errorf("Deployment %s: no selector", o.Metadata.Name)
	}
	for k, v := range selector {
		if got := o.Spec.Template.Metadata.Labels[k]; got != v {
			t.Errorf("Deployment %s: the selector wants %s=%s, the pods are labelled %s=%q", o.Metadata.Name, k, v, k, got)
		}
	}
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
				checkKubernetesObject(t, d)
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

// connectorChecks are what every deployment of the connector must get
// right: the files of this folder and each rendering of the chart.
var connectorChecks = []struct {
	name  string
	check func(*testing.T, connector)
}{
	{"environment is read", checkEnvironmentIsRead},
	{"settings are accepted", checkSettingsAccepted},
	{"probes", checkProbes},
	{"metrics are scraped", checkScraped},
}

func runConnectorChecks(t *testing.T, docs []document) {
	t.Helper()
	for _, k := range connectors(t, docs) {
		t.Run(k.where, func(t *testing.T) {
			for _, c := range connectorChecks {
				t.Run(c.name, func(t *testing.T) { c.check(t, k) })
			}
		})
	}
}

func TestConnectors(t *testing.T) {
	runConnectorChecks(t, readAll(t))
}

// TestConnectorDefaults keeps the settings the files write at the
// connector's defaults, but for the deliberate ones.
func TestConnectorDefaults(t *testing.T) {
	for _, k := range connectors(t, readAll(t)) {
		t.Run(k.where, func(t *testing.T) { checkDefaults(t, k) })
	}
}

// reads reports whether the connector reads a variable: one of its
// settings, or one of the OpenTelemetry SDK's OTEL_* variables, which it
// passes on.
func reads(name string) bool {
	return slices.Contains(config.Names(), name) || tracing.ReadsVariable(name)
}

func checkEnvironmentIsRead(t *testing.T, k connector) {
	for _, name := range slices.Sorted(maps.Keys(k.env)) {
		if !reads(name) {
			t.Errorf("%s is set but the connector does not read it", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(k.fromElsewhere)) {
		if !reads(name) {
			t.Errorf("%s is set but the connector does not read it", name)
		}
	}
}

func checkDefaults(t *testing.T, k connector) {
	for _, name := range slices.Sorted(maps.Keys(k.env)) {
		value := k.env[name]
		if _, ok := deliberate[name]; ok {
			continue
		}
		def, ok := defaultOf(name)
		if !ok {
			continue // checkEnvironmentIsRead reports it
		}
		if !sameSetting(value, def) {
			t.Errorf("%s=%q, but the connector's default is %q: write the default, or say in deliberate why not", name, value, def)
		}
	}
}

// checkSettingsAccepted runs the connector's own configuration check on the
// deployment's environment.
func checkSettingsAccepted(t *testing.T, k connector) {
	cfg := loadConfig(t, k, t.TempDir())
	if _, err := tracing.Check(func(name string) (string, bool) { v, ok := k.env[name]; return v, ok }); err != nil {
		t.Errorf("the connector refuses the tracing settings: %v", err)
	}
	if k.grace <= cfg.ShutdownTimeout {
		t.Errorf("grace period %v: want more than shutdown_timeout (%v), or batches in flight are killed", k.grace, cfg.ShutdownTimeout)
	}
}

// loadConfig reads k's configuration as the connector does, in this
// process. The files its variables name are written under root, at the
// same place, provided the deployment mounts a volume that holds them
// there: stand-in gateway and SASL credentials, and certificates of a test
// authority.
func loadConfig(t *testing.T, k connector, root string) config.Config {
	t.Helper()
	pki := testkit.NewPKI(t)
	pem := func(file string) []byte {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	contents := map[string][]byte{
		"tls_ca_file":             pem(pki.CAFile),
		"tls_cert_file":           pem(pki.ClientCertFile),
		"tls_key_file":            pem(pki.ClientKeyFile),
		"schema_registry_ca_file": pem(pki.CAFile),
	}
	env := maps.Clone(k.env)
	// provide writes a file the connector reads, if the deployment puts it
	// there, and points the variable at the copy.
	provide := func(name, file string, content []byte) {
		t.Helper()
		if !path.IsAbs(file) {
			t.Errorf("%s=%q: want an absolute path, as the working folder of the image is not to be relied on", name, file)
			return
		}
		m, ok := k.mountFor(file)
		if !ok {
			t.Errorf("%s names %s, but no volume is mounted there", name, file)
			return
		}
		if rel := strings.TrimPrefix(file, strings.TrimSuffix(m.path, "/")+"/"); m.files != nil && !slices.Contains(m.files, rel) {
			t.Errorf("%s names %s, but the volume mounted at %s holds only %v", name, file, m.path, m.files)
			return
		}
		local := filepath.Join(root, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(k.env)) {
		if file := k.env[name]; strings.HasSuffix(name, "_file") && file != "" {
			content, ok := contents[name]
			if !ok {
				content = []byte("stand-in\n")
			}
			provide(name, file, content)
			env[name] = filepath.Join(root, filepath.FromSlash(file))
		}
	}
	if b, _ := strconv.ParseBool(k.env["basic_auth"]); b {
		dir, ok := k.env["secret_mount_path"]
		if !ok {
			dir, _ = defaultOf("secret_mount_path")
		}
		for _, f := range []string{"basic-auth-user", "basic-auth-password"} {
			provide("secret_mount_path", path.Join(dir, f), []byte("admin\n"))
		}
		env["secret_mount_path"] = filepath.Join(root, filepath.FromSlash(dir))
	}
	if t.Failed() {
		t.FailNow()
	}

	clearEnv(t)
	for name, value := range env {
		t.Setenv(name, value)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatalf("the connector refuses the settings: %v", err)
	}
	return cfg
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

func checkProbes(t *testing.T, k connector) {
	if !k.kubernetes {
		return
	}
	httpPort := k.httpPort(t)
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
		if got := k.resolvePort(p.probe.HTTPGet.Port); got != httpPort {
			t.Errorf("%s: port %q, want %s (http_addr)", p.name, got, httpPort)
		}
	}
}

// checkScraped wants the pods scraped, by the prometheus.io annotations or
// by a ServiceMonitor, at the port of http_addr.
func checkScraped(t *testing.T, k connector) {
	if !k.kubernetes {
		return
	}
	if _, ok := k.annotations["prometheus.io/scrape"]; !ok && len(k.scrapedBy) > 0 {
		return
	}
	annotations := []struct{ key, want string }{
		{"prometheus.io/scrape", "true"},
		{"prometheus.io/port", k.httpPort(t)},
		{"prometheus.io/path", "/metrics"},
	}
	for _, a := range annotations {
		if got := k.annotations[a.key]; got != a.want {
			t.Errorf("pod annotation %s=%q, want %q, or a ServiceMonitor that scrapes /metrics at that port through a Service", a.key, got, a.want)
		}
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
	seen := map[string]bool{}
	for _, d := range ofKind(readAll(t), "kubernetes") {
		if seen[d.file] {
			continue
		}
		seen[d.file] = true
		for _, m := range commentedEnv.FindAllSubmatch(d.raw, -1) {
			name := string(m[1])
			t.Run(d.file+"/"+name, func(t *testing.T) {
				if !reads(name) {
					t.Errorf("the comment offers %s, which the connector does not read", name)
				}
			})
		}
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

// settingRow matches a row of the configuration table of docs/configuration.md:
// | `name` | default | meaning |
var settingRow = regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([^|]*) \\|")

// TestDocsListEverySetting keeps the configuration table of
// docs/configuration.md in step with the connector: one row per variable,
// with its default.
func TestDocsListEverySetting(t *testing.T) {
	page, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	// Only the variables' table: the annotations' table follows it.
	raw, _, ok := bytes.Cut(page, []byte("\n## Per-function settings\n"))
	if !ok {
		t.Fatal("docs/configuration.md has no Per-function settings section")
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
				t.Fatalf("docs/configuration.md has no row | `%s` | default | meaning |", name)
			}
			want := f.Tag.Get("default")
			if want == "" {
				want = "none"
			}
			if got != want {
				t.Errorf("docs/configuration.md gives the default %q, the connector %q", got, want)
			}
		})
	}
	known := config.Names()
	for name := range rows {
		if !slices.Contains(known, name) {
			t.Errorf("docs/configuration.md lists %s, which the connector does not read", name)
		}
	}
}
