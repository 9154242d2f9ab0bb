package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseProm parses the Prometheus text format with Prometheus' own parser
// (the one node_exporter's textfile collector uses), legacy names only.
func parseProm(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus text parser: %v\n%s", err, text)
	}
	return fams
}

// parseOpenMetrics parses OpenMetrics 1.0.0 text with expfmt's parser,
// which checks the grammar, "_total" on counters, UNIT suffixes and the
// final "# EOF". Families are keyed by their sample names (counters with
// "_total"), as parseProm keys them.
func parseOpenMetrics(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	dec := expfmt.NewDecoder(bytes.NewReader(text), expfmt.NewFormat(expfmt.TypeOpenMetrics))
	fams := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			return fams
		}
		if err != nil {
			t.Fatalf("OpenMetrics parser: %v\n%s", err, text)
		}
		fams[mf.GetName()] = &mf
	}
}

// sampleValues returns the samples of fams as "name{l="v",…} value"
// lines, sorted, with the type of each family.
func sampleValues(fams map[string]*dto.MetricFamily) (samples []string, types map[string]string) {
	types = map[string]string{}
	for name, mf := range fams {
		name = strings.TrimSuffix(name, "_total") + map[bool]string{true: "_total"}[mf.GetType() == dto.MetricType_COUNTER]
		types[name] = mf.GetType().String()
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
			samples = append(samples, name+"{"+strings.Join(ls, ",")+"} "+model.SampleValue(v).String())
		}
	}
	slices.Sort(samples)
	return samples, types
}

// TestMetricsParse: both formats pass Prometheus' parsers, say the same,
// and carry every counter, drop reason and state of the golden host.
func TestMetricsParse(t *testing.T) {
	// Each on a host of its own: the fake's counters grow at each read.
	run := func(args ...string) []byte {
		h := newHarness(t)
		goldenHost(h)
		h.mustRun(0, args...)
		return h.stdout.Bytes()
	}
	prom := parseProm(t, run("metrics"))
	text := run("metrics", "--format=openmetrics")
	if !bytes.HasSuffix(text, []byte("\n# EOF\n")) {
		t.Errorf("OpenMetrics output does not end with # EOF")
	}
	om := parseOpenMetrics(t, text)

	ps, pt := sampleValues(prom)
	oms, ot := sampleValues(om)
	if !slices.Equal(ps, oms) {
		t.Errorf("the formats differ:\nprometheus:\n%s\nopenmetrics:\n%s", strings.Join(ps, "\n"), strings.Join(oms, "\n"))
	}
	for name, typ := range pt {
		if ot[name] != typ {
			t.Errorf("%s: type %s in Prometheus text, %s in OpenMetrics", name, typ, ot[name])
		}
		if strings.HasSuffix(name, "_total") != (typ == "COUNTER") {
			t.Errorf("%s: type %s", name, typ)
		}
	}
	if u := om["vethd_rx_bytes_total"].GetUnit(); u != "bytes" {
		t.Errorf("vethd_rx_bytes unit %q, want bytes", u)
	}
	for _, want := range []string{
		"vethd_rx_packets_total{bridge=veth1} 1000",
		"vethd_rx_bytes_total{bridge=byhand} 999950",
		"vethd_rx_coalesced_total{bridge=veth1} 10",
		"vethd_tx_packets_total{bridge=veth1} 500",
		"vethd_tx_bytes_total{bridge=veth1} 40000",
		"vethd_errors_total{bridge=veth1} 0",
		"vethd_rx_dropped_total{bridge=veth1,reason=runt} 1",
		"vethd_rx_dropped_total{bridge=veth1,reason=filter} 0",
		"vethd_tx_dropped_total{bridge=byhand,reason=no-parent} 2",
		"vethd_carrier{bridge=veth1} 1",
		"vethd_carrier{bridge=byhand} 0",
		"vethd_parent_carrier{bridge=veth1} 1",
		"vethd_promiscuous{bridge=veth1} 0",
		"vethd_mtu_bytes{bridge=veth1} 1500",
		"vethd_start_time_seconds{bridge=veth1} 1793694600",
		"vethd_bridge_state{bridge=veth1,state=running} 1",
		"vethd_bridge_state{bridge=broken,state=failed} 1",
		"vethd_bridge_state{bridge=cfgonly,state=configured} 1",
		"vethd_bridge_info{bridge=veth1,unit=vethd@veth1.service,parent=eth0,mac_address=22:43:60:c3:5b:4c,kind=tap,data_path=relay} 1",
		"vethd_bridge_info{bridge=byhand,unit=,parent=eth1,mac_address=02:00:00:00:00:01,kind=veth,data_path=kernel} 1",
	} {
		if !slices.Contains(ps, want) {
			t.Errorf("no sample %s", want)
		}
	}
	// One state and one info sample per bridge list finds; counters for
	// the two on the bus.
	count := func(prefix string) (n int) {
		for _, s := range ps {
			if strings.HasPrefix(s, prefix) {
				n++
			}
		}
		return n
	}
	if n := count("vethd_bridge_state{"); n != 8 {
		t.Errorf("%d state samples, want 8", n)
	}
	if n := count("vethd_rx_packets_total{"); n != 2 {
		t.Errorf("%d rx_packets samples, want 2", n)
	}

	// A pattern filters, as list does.
	if n := len(parseProm(t, run("metrics", "veth*"))["vethd_bridge_state"].GetMetric()); n != 1 {
		t.Errorf("metrics veth*: %d state samples, want 1", n)
	}
}

// TestMetricsEmpty: with no bridge, both formats still parse and keep
// their HELP and TYPE lines.
func TestMetricsEmpty(t *testing.T) {
	h := newHarness(t)
	for _, format := range []string{"prometheus", "openmetrics"} {
		h.mustRun(0, "metrics", "--format", format)
		if format == "prometheus" {
			parseProm(t, h.stdout.Bytes())
		} else {
			parseOpenMetrics(t, h.stdout.Bytes())
		}
		if !strings.Contains(h.stdout.String(), "# TYPE vethd_bridge_state gauge\n") {
			t.Errorf("%s: no TYPE line:\n%s", format, h.stdout.String())
		}
	}
}

// TestMetricsEscaping: label values and help texts with a backslash, a
// double quote and a line feed reach the parsers intact.
func TestMetricsEscaping(t *testing.T) {
	weird := "a\\b\"c\nd"
	f := &family{name: "vethd_test_total", kind: counter, help: "Help with " + weird + "."}
	f.add("3", "bridge", weird)
	for _, om := range []bool{false, true} {
		var b bytes.Buffer
		if err := writeExposition(&b, []*family{f}, om); err != nil {
			t.Fatal(err)
		}
		var mf *dto.MetricFamily
		if om {
			mf = parseOpenMetrics(t, b.Bytes())["vethd_test_total"]
		} else {
			mf = parseProm(t, b.Bytes())["vethd_test_total"]
		}
		if mf == nil || len(mf.GetMetric()) != 1 {
			t.Fatalf("openmetrics %v: %v\n%s", om, mf, b.String())
		}
		if got := mf.GetMetric()[0].GetLabel()[0].GetValue(); got != weird {
			t.Errorf("openmetrics %v: label %q, want %q", om, got, weird)
		}
		if got := mf.GetHelp(); got != "Help with "+weird+"." {
			t.Errorf("openmetrics %v: help %q", om, got)
		}
	}
}

// TestMetricsOutput: --output replaces the file whole, mode 0644, and
// leaves no temporary file; a failure leaves the old file.
func TestMetricsOutput(t *testing.T) {
	h := newHarness(t)
	goldenHost(h)
	dir := t.TempDir()
	out := filepath.Join(dir, "vethd.prom")
	if err := os.WriteFile(out, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "metrics", "--output", out)
	if h.stdout.Len() != 0 {
		t.Errorf("stdout: %q", h.stdout.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	parseProm(t, data)
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}

	// No bus: exit 1 and the file stays as it was.
	h.busErr = errors.New("no system bus")
	h.mustRun(1, "metrics", "--output", out)
	if again, _ := os.ReadFile(out); !bytes.Equal(again, data) {
		t.Errorf("the file changed without a bus")
	}
	h.busErr = nil
	// A directory that does not exist: exit 1, nothing left.
	h.mustRun(1, "metrics", "--output", filepath.Join(dir, "none", "vethd.prom"))
	h.mustRun(2, "metrics", "--format", "json")
}

// TestMetricsUnit: the command line of the shipped vethd-metrics.service
// is one vethctl takes, and it writes where the sandbox lets it
// (ReadWritePaths=) and where the unit's condition looks.
func TestMetricsUnit(t *testing.T) {
	data, err := os.ReadFile("../../dist/systemd/vethd-metrics.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
		}
	}
	args := strings.Fields(keys["ExecStart"])
	if len(args) < 2 || args[0] != "/usr/bin/vethctl" || args[1] != "metrics" {
		t.Fatalf("ExecStart=%s", keys["ExecStart"])
	}
	i := slices.Index(args, "--output")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("ExecStart=%s: no --output", keys["ExecStart"])
	}
	out := args[i+1]
	if dir := filepath.Dir(out); keys["ReadWritePaths"] != dir || keys["ConditionPathIsDirectory"] != dir {
		t.Errorf("writes %s; ReadWritePaths=%s, ConditionPathIsDirectory=%s", dir, keys["ReadWritePaths"],
			keys["ConditionPathIsDirectory"])
	}
	if !strings.HasSuffix(out, ".prom") {
		t.Errorf("%s: node_exporter reads *.prom only", out)
	}
	h := newHarness(t)
	goldenHost(h)
	args[i+1] = filepath.Join(t.TempDir(), filepath.Base(out))
	h.mustRun(0, args[1:]...)
	data, err = os.ReadFile(args[i+1])
	if err != nil {
		t.Fatal(err)
	}
	parseProm(t, data)
}
