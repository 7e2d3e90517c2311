// Package monitoring_test keeps the dashboard and the alert rules of this
// folder working and in step with the connector: the alerts pass their
// promtool unit tests, every PromQL expression parses and names only the
// metrics and labels the connector exports, and the dashboard shows every
// metric. ../chart_test.go keeps the chart's copies the same as these.
package monitoring_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kafka-connector/kafka-connector/connector"
	"github.com/kafka-connector/kafka-connector/internal/testkit"
)

const (
	rulesFile     = "prometheusrule.yaml"
	dashboardFile = "kafka-connector-dashboard.json"
	unitTests     = "testdata/alerts-test.yaml"
	// promtool is built from this version of Prometheus, without its
	// service discoveries, which checking and testing rules do not use and
	// which take most of the build.
	promtoolPackage = "github.com/prometheus/prometheus/cmd/promtool"
	promtoolVersion = "v0.316.0"
)

// promtoolTool is promtool, built and cached as the chart's tests keep
// helm (it takes a few minutes on two cores the first time);
// KAFKA_CONNECTOR_PROMTOOL names another binary.
var promtoolTool = testkit.GoTool{
	Name: "promtool", Pkg: promtoolPackage, Version: promtoolVersion,
	Tags: []string{"remove_all_sd"}, Env: "KAFKA_CONNECTOR_PROMTOOL",
}

func newPromtool(t *testing.T) string { return promtoolTool.Path(t) }

func promtool(t *testing.T, bin, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// rule is one rule of a group, as far as the checks need it.
type rule struct {
	Alert  string `yaml:"alert"`
	Record string `yaml:"record"`
	Expr   string `yaml:"expr"`
}

// ruleGroups reads the spec of the PrometheusRule: the groups of a
// Prometheus rule file.
func ruleGroups(t *testing.T) (raw yaml.Node, rules []rule) {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups yaml.Node `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Kind != "PrometheusRule" {
		t.Fatalf("%s holds a %q, want a PrometheusRule", rulesFile, doc.Kind)
	}
	var groups []struct {
		Rules []rule `yaml:"rules"`
	}
	if err := doc.Spec.Groups.Decode(&groups); err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		rules = append(rules, g.Rules...)
	}
	return doc.Spec.Groups, rules
}

// writeRuleFile writes the groups as a Prometheus rule file, rules.yaml in
// dir.
func writeRuleFile(t *testing.T, dir string, groups any) {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAlertRules checks the rules with promtool and runs their unit tests,
// which must cover every alert: firing in a case, and quiet in another.
func TestAlertRules(t *testing.T) {
	bin := newPromtool(t)
	groups, rules := ruleGroups(t)
	dir := t.TempDir()
	writeRuleFile(t, dir, &groups)
	tests, err := os.ReadFile(unitTests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts-test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, bin, dir, "check", "rules", "rules.yaml")
	promtool(t, bin, dir, "test", "rules", "alerts-test.yaml")

	var file struct {
		Tests []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert  string `yaml:"alertname"`
				Alerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(tests, &file); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, c := range tc.Cases {
			if len(c.Alerts) > 0 {
				fires[c.Alert] = true
			} else {
				quiet[c.Alert] = true
			}
		}
	}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] {
			t.Errorf("%s: no unit test in %s where it fires", r.Alert, unitTests)
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no unit test in %s where it stays quiet", r.Alert, unitTests)
		}
	}
}

// query is one PromQL expression and where it is.
type query struct {
	where, expr string
}

// grafanaVariables are what the dashboard's variables stand for, so that
// its expressions parse.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$function", ".*")

// dashboard reads the dashboard's expressions and variable queries.
func dashboard(t *testing.T) (queries []query, variables []query) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		UID        string            `json:"uid"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" {
		t.Errorf("%s has no uid: Grafana would make a new dashboard at each load", dashboardFile)
	}
	ids := map[int]bool{}
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: %v", dashboardFile, err)
			}
			if ids[p.ID] {
				t.Errorf("panel %q: id %d is taken", p.Title, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: want the data source ${datasource}, the dashboard's variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q shows nothing", p.Title)
			}
			for _, q := range p.Targets {
				queries = append(queries, query{where: fmt.Sprintf("panel %q, query %s", p.Title, q.RefID), expr: q.Expr})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			variables = append(variables, query{where: "variable " + v.Name, expr: v.Definition})
		}
	}
	return queries, variables
}

// allQueries are the expressions of the rules and the dashboard.
func allQueries(t *testing.T) []query {
	t.Helper()
	_, rules := ruleGroups(t)
	var qs []query
	for _, r := range rules {
		qs = append(qs, query{where: rulesFile + " " + r.Alert + r.Record, expr: r.Expr})
	}
	panels, _ := dashboard(t)
	for _, q := range panels {
		q.expr = grafanaVariables.Replace(q.expr)
		qs = append(qs, q)
	}
	return qs
}

// TestQueriesParse hands every expression to promtool, as the expression
// of a recording rule.
func TestQueriesParse(t *testing.T) {
	bin := newPromtool(t)
	type recording struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []recording
	for i, q := range allQueries(t) {
		rules = append(rules, recording{Record: fmt.Sprintf("check:query_%d", i), Expr: q.expr})
	}
	dir := t.TempDir()
	writeRuleFile(t, dir, []map[string]any{{"name": "queries", "rules": rules}})
	promtool(t, bin, dir, "check", "rules", "rules.yaml")
	if t.Failed() {
		for i, q := range allQueries(t) {
			t.Logf("check:query_%d is %s: %s", i, q.where, q.expr)
		}
	}
}

// TestQueriesNameExportedMetrics wants every metric an expression names
// exported by the connector, and every label it names carried by one of
// those metrics: a metric or label renamed in the code shows here, not as
// an empty panel or an alert that never fires.
func TestQueriesNameExportedMetrics(t *testing.T) {
	exported := connector.ExportedMetrics()
	_, variables := dashboard(t)
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	for _, v := range variables {
		m := labelValues.FindStringSubmatch(v.expr)
		switch {
		case m == nil:
			t.Errorf("%s: %q is not label_values(metric, label)", v.where, v.expr)
		case exported[m[1]] == nil:
			t.Errorf("%s: the connector exports no %s", v.where, m[1])
		case !slices.Contains(exported[m[1]], m[2]):
			t.Errorf("%s: %s has no label %s, only %v", v.where, m[1], m[2], exported[m[1]])
		}
	}
	for _, q := range allQueries(t) {
		metrics, labels, err := names(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if len(metrics) == 0 {
			t.Errorf("%s names no metric: %s", q.where, q.expr)
		}
		carried := map[string]bool{}
		for _, m := range metrics {
			l, ok := exported[m]
			if !ok {
				t.Errorf("%s: the connector exports no %s", q.where, m)
			}
			for _, name := range l {
				carried[name] = true
			}
		}
		for _, l := range labels {
			if !carried[l] {
				t.Errorf("%s: no metric of %v has a label %s", q.where, metrics, l)
			}
		}
	}
}

// TestDashboardShowsEveryMetric wants a panel for every metric of the
// connector: a new metric gets one.
func TestDashboardShowsEveryMetric(t *testing.T) {
	panels, _ := dashboard(t)
	shown := map[string]bool{}
	exported := connector.ExportedMetrics()
	// family is a histogram's name, for the names of its series.
	family := func(series string) string {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(series, s); ok && exported[base+"_bucket"] != nil {
				return base
			}
		}
		return series
	}
	for _, q := range panels {
		metrics, _, _ := names(grafanaVariables.Replace(q.expr))
		for _, m := range metrics {
			shown[family(m)] = true
		}
	}
	for _, m := range slices.Sorted(maps.Keys(exported)) {
		if strings.HasPrefix(m, "kafka_connector_") && !shown[family(m)] {
			t.Errorf("no panel of %s shows %s", dashboardFile, family(m))
		}
	}
}

// keywords of PromQL that read as names: operators, and the aggregations,
// which may be followed by "by" or "without" rather than "(".
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// names finds the metrics and labels a PromQL expression names. It reads
// the expression's tokens, not its syntax tree, which TestQueriesParse
// leaves to promtool: a name followed by "(" is a function, a name inside
// braces followed by a matcher is a label, a list after by, without, on,
// ignoring, group_left or group_right holds labels, any other name is a
// metric.
func names(expr string) (metrics, labels []string, err error) {
	type token struct {
		kind byte // 'n' name, 's' string, '0' number or duration, or the punctuation itself
		text string
	}
	var toks []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, nil, fmt.Errorf("an unterminated string in %s", expr)
			}
			toks = append(toks, token{'s', expr[i : j+1]})
			i = j + 1
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(expr) && (isNameByte(expr[j]) || expr[j] == '.') {
				j++
			}
			toks = append(toks, token{'0', expr[i:j]})
			i = j
		case isNameByte(c):
			j := i
			for j < len(expr) && isNameByte(expr[j]) {
				j++
			}
			toks = append(toks, token{'n', expr[i:j]})
			i = j
		case strings.HasPrefix(expr[i:], "=~") || strings.HasPrefix(expr[i:], "!~") || strings.HasPrefix(expr[i:], "!=") || strings.HasPrefix(expr[i:], "=="):
			toks = append(toks, token{'=', expr[i : i+2]})
			i += 2
		default:
			toks = append(toks, token{c, string(c)})
			i++
		}
	}
	braces := 0
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := byte(0)
		if i+1 < len(toks) {
			next = toks[i+1].kind
		}
		switch {
		case tk.kind == '{':
			braces++
		case tk.kind == '}':
			braces--
		case tk.kind != 'n':
		case braces > 0:
			if next == '=' {
				labels = append(labels, tk.text)
			}
		case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, tk.text) && next == '(':
			for i += 2; i < len(toks) && toks[i].kind != ')'; i++ {
				if toks[i].kind == 'n' {
					labels = append(labels, toks[i].text)
				}
			}
		case keywords[tk.text], next == '(':
		default:
			metrics = append(metrics, tk.text)
		}
	}
	slices.Sort(metrics)
	slices.Sort(labels)
	return slices.Compact(metrics), slices.Compact(labels), nil
}

func isNameByte(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func TestNames(t *testing.T) {
	tests := []struct {
		expr            string
		metrics, labels []string
	}{
		{`up`, []string{"up"}, nil},
		{`sum by (function) (rate(a_total{function=~"x|y", topic!="b"}[5m])) > 0`, []string{"a_total"}, []string{"function", "topic"}},
		{`histogram_quantile(0.99, sum by (function, le) (rate(h_bucket[5m])))`, []string{"h_bucket"}, []string{"function", "le"}},
		{`(x > 1000) and on (function) (delta(y[15m]) > 0)`, []string{"x", "y"}, []string{"function"}},
		{`a / ignoring (reason) group_left (team) b offset 5m`, []string{"a", "b"}, []string{"reason", "team"}},
		{`m{l="a string with by (fake) and {braces} and metric_like_names"}`, []string{"m"}, []string{"l"}},
		{`sum without (instance) (c) * 1e3 + 0.5`, []string{"c"}, []string{"instance"}},
	}
	for _, tc := range tests {
		metrics, labels, err := names(tc.expr)
		if err != nil || !slices.Equal(metrics, tc.metrics) || !slices.Equal(labels, tc.labels) {
			t.Errorf("names(%s) = %v, %v, %v; want %v, %v", tc.expr, metrics, labels, err, tc.metrics, tc.labels)
		}
	}
}

// TestKustomization wants the files yaml/monitoring/kustomization.yaml
// names to be there.
func TestKustomization(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources  []string `yaml:"resources"`
		Generators []struct {
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	files := slices.Clone(k.Resources)
	for _, g := range k.Generators {
		for _, f := range g.Files {
			_, file, _ := strings.Cut(f, "=")
			files = append(files, cmp.Or(file, f))
		}
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("kustomization.yaml names %s: %v", f, err)
		}
	}
	if !slices.Contains(files, rulesFile) || !slices.Contains(files, dashboardFile) {
		t.Errorf("kustomization.yaml applies %v, want %s and %s", files, rulesFile, dashboardFile)
	}
	if !bytes.Contains(b, []byte("grafana_dashboard")) {
		t.Error("the dashboard's ConfigMap lacks the grafana_dashboard label Grafana's sidecar looks for")
	}
}
