package connector

import (
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// variableLabels reads the label names of a metric's description, and
// fqName its name.
var (
	variableLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}\}$`)
	fqName         = regexp.MustCompile(`fqName: "([^"]+)"`)
)

// describe lists what a collector describes, by the labels of each name.
func describe(c prometheus.Collector, out map[string][]string) {
	descs := make(chan *prometheus.Desc, 8)
	go func() { c.Describe(descs); close(descs) }()
	for d := range descs {
		var labels []string
		if match := variableLabels.FindStringSubmatch(d.String()); match != nil && match[1] != "" {
			labels = strings.Split(match[1], ",")
		}
		if name := fqName.FindStringSubmatch(d.String()); name != nil {
			out[name[1]] = sorted(labels)
		}
	}
}

// ExportedMetrics lists what the connector can serve on /metrics: the name
// of every series, with the names of its labels, sorted. A histogram is
// listed by its series (_bucket with le, _sum and _count), a summary by
// its own (with quantile), _sum and _count. The dashboards and alert rules
// shipped with the connector are checked against it, so that they name
// nothing the connector does not export.
func ExportedMetrics() map[string][]string {
	m := newMetrics()
	// A vector has no series until it is used: give each one, so that
	// the registry shows its labels.
	vecs := append(m.byFunction(), m.triggers.MetricVec, m.functionErrors.MetricVec)
	for _, v := range vecs {
		descs := make(chan *prometheus.Desc, 1)
		go func() { v.Describe(descs); close(descs) }()
		for d := range descs {
			match := variableLabels.FindStringSubmatch(d.String())
			n := 0
			if match != nil && match[1] != "" {
				n = len(strings.Split(match[1], ","))
			}
			if _, err := v.GetMetricWithLabelValues(make([]string, n)...); err != nil {
				panic("connector: describing " + d.String() + ": " + err.Error())
			}
		}
	}
	families, err := m.registry.Gather()
	if err != nil {
		panic("connector: gathering the metrics: " + err.Error())
	}
	out := map[string][]string{}
	// The collectors that read their figures when scraped have no series
	// before there is something to read: their descriptions say what they
	// serve.
	describe(m.partitions, out)
	describe(triggerCollector{}, out)
	for _, f := range families {
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		name := f.GetName()
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[name+"_bucket"] = sorted(append(slices.Clone(labels), "le"))
			out[name+"_sum"] = sorted(labels)
			out[name+"_count"] = sorted(labels)
		case dto.MetricType_SUMMARY:
			out[name] = sorted(append(slices.Clone(labels), "quantile"))
			out[name+"_sum"] = sorted(labels)
			out[name+"_count"] = sorted(labels)
		default:
			out[name] = sorted(labels)
		}
	}
	return out
}

func sorted(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
