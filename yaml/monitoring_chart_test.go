package yaml_test

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The chart's dashboard and alerts are those of monitoring/, which its
// tests check (the dashboard file itself, and the rules with the default
// thresholds).
const (
	monitoringRules     = "monitoring/prometheusrule.yaml"
	monitoringDashboard = "monitoring/kafka-connector-dashboard.json"
	chartDashboard      = chartDir + "/dashboards/kafka-connector.json"
)

// monitoringObject is a ConfigMap or a PrometheusRule, as far as the checks
// need them.
type monitoringObject struct {
	Kind     string      `yaml:"kind"`
	Metadata k8sMetadata `yaml:"metadata"`
	Data     map[string]string
	Spec     any `yaml:"spec"`
}

// monitoringObjects finds the chart's ConfigMaps and PrometheusRules in a
// rendering.
func monitoringObjects(t *testing.T, docs []document) map[string]monitoringObject {
	t.Helper()
	out := map[string]monitoringObject{}
	for _, d := range ofKind(docs, "kubernetes") {
		var o monitoringObject
		if err := d.node.Decode(&o); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		if o.Kind == "ConfigMap" || o.Kind == "PrometheusRule" {
			out[o.Kind] = o
		}
	}
	return out
}

func TestChartMonitoringIsOffByDefault(t *testing.T) {
	if got := monitoringObjects(t, newHelm(t).render(t)); len(got) > 0 {
		t.Errorf("by default the chart installs %v, want neither dashboard nor alerts", got)
	}
}

// TestChartMonitoringMatchesTheFiles: the chart installs the dashboard of
// monitoring/ for Grafana's sidecar, and with its default thresholds the
// rules of monitoring/prometheusrule.yaml.
func TestChartMonitoringMatchesTheFiles(t *testing.T) {
	got := monitoringObjects(t, newHelm(t).render(t, "--set", "grafanaDashboard.enabled=true,prometheusRule.enabled=true"))

	dashboard, err := os.ReadFile(monitoringDashboard)
	if err != nil {
		t.Fatal(err)
	}
	inChart, err := os.ReadFile(chartDashboard)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dashboard, inChart) {
		t.Errorf("%s and %s differ: copy one over the other", chartDashboard, monitoringDashboard)
	}
	cm, ok := got["ConfigMap"]
	switch {
	case !ok:
		t.Error("grafanaDashboard.enabled=true installs no ConfigMap")
	case cm.Metadata.Labels["grafana_dashboard"] != "1":
		t.Errorf("the dashboard's ConfigMap is labelled %v, want grafana_dashboard: \"1\" for Grafana's sidecar", cm.Metadata.Labels)
	case cm.Data["kafka-connector.json"] != strings.TrimSuffix(string(dashboard), "\n"):
		t.Errorf("the ConfigMap's kafka-connector.json is not %s", chartDashboard)
	}

	raw, err := os.ReadFile(monitoringRules)
	if err != nil {
		t.Fatal(err)
	}
	var want monitoringObject
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	rule, ok := got["PrometheusRule"]
	if !ok {
		t.Fatal("prometheusRule.enabled=true installs no PrometheusRule")
	}
	if !reflect.DeepEqual(rule.Spec, want.Spec) {
		a, _ := yaml.Marshal(rule.Spec)
		b, _ := yaml.Marshal(want.Spec)
		t.Errorf("the chart's rules differ from %s:\nthe chart:\n%s\n%s:\n%s", monitoringRules, a, monitoringRules, b)
	}
}

// TestChartAlertThresholds: every threshold is a value, and reaches its
// rule.
func TestChartAlertThresholds(t *testing.T) {
	h := newHelm(t)
	cases := []struct {
		set, alert, want string
	}{
		{"prometheusRule.retrying.for=17m", "KafkaConnectorPartitionRetrying", "for: 17m"},
		{"prometheusRule.oldestUndelivered.seconds=1234", "KafkaConnectorOldestUndeliveredTooOld", "> 1234"},
		{"prometheusRule.oldestUndelivered.for=17m", "KafkaConnectorOldestUndeliveredTooOld", "for: 17m"},
		{"prometheusRule.lagGrowing.messages=98765", "KafkaConnectorLagGrowing", "> 98765"},
		{"prometheusRule.lagGrowing.for=17m", "KafkaConnectorLagGrowing", "[17m]"},
		{"prometheusRule.triggerRestarts.count=9", "KafkaConnectorTriggerRestarting", ">= 9"},
		{"prometheusRule.triggerRestarts.window=17m", "KafkaConnectorTriggerRestarting", "[17m]"},
		{"prometheusRule.configRejected.for=17m", "KafkaConnectorFunctionConfigRejected", "for: 17m"},
		{"prometheusRule.deadLetterErrors.for=17m", "KafkaConnectorDeadLetterWritesFailing", "for: 17m"},
		{"prometheusRule.notReady.for=17m", "KafkaConnectorNotReady", "for: 17m"},
		{"prometheusRule.alertLabels.team=payments", "KafkaConnectorNotReady", "team: payments"},
	}
	for _, c := range cases {
		t.Run(c.set, func(t *testing.T) {
			rule := monitoringObjects(t, h.render(t, "--set", "prometheusRule.enabled=true,"+c.set))["PrometheusRule"]
			spec, _ := rule.Spec.(map[string]any)
			groups, _ := spec["groups"].([]any)
			for _, g := range groups {
				rules, _ := g.(map[string]any)["rules"].([]any)
				for _, r := range rules {
					r := r.(map[string]any)
					if r["alert"] != c.alert {
						continue
					}
					text, _ := yaml.Marshal(r)
					if !strings.Contains(string(text), c.want) {
						t.Errorf("%s with --set %s:\n%s\nwant %q in it", c.alert, c.set, text, c.want)
					}
					return
				}
			}
			t.Errorf("no alert %s", c.alert)
		})
	}
}

// TestChartTracing: tracing.endpoint turns tracing on with the OTEL_*
// variables; values the connector would refuse stop helm.
func TestChartTracing(t *testing.T) {
	h := newHelm(t)
	off := defaultConnector(t, h)
	for name := range off.env {
		if strings.HasPrefix(name, "OTEL_") {
			t.Errorf("by default the chart sets %s: tracing is off without an endpoint", name)
		}
	}
	on := connectors(t, h.render(t, "--set", "tracing.endpoint=http://collector:4317,tracing.protocol=grpc,tracing.samplerArg=0.5,tracing.sampler=traceidratio"))[0]
	want := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER":         "traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.5",
	}
	for name, v := range want {
		if on.env[name] != v {
			t.Errorf("%s=%q, want %q", name, on.env[name], v)
		}
	}

	refused := []struct{ set, want string }{
		{"tracing.endpoint=collector:4317", "tracing.endpoint"},
		{"tracing.endpoint=http://collector:4318,tracing.protocol=http/json", "tracing.protocol"},
		{"config.OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318", "set it with tracing.endpoint"},
	}
	for _, c := range refused {
		if _, err := h.template(t, "--set", c.set); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %s: %v, want a refusal naming %s", c.set, err, c.want)
		}
	}
}
