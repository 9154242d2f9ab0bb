package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const metricsHelp = `Print every counter, drop reason and state of every bridge (or of those
that the PATTERNs name or match, as list filters them) in the Prometheus
text exposition format, for a monitoring system. The bridges are those
"vethctl list" finds; the counters are those of the bridges on the bus,
read once. The system bus must be reachable, or nothing is written
(exit 1).

Metrics (labels: bridge, and reason for drops):
  vethd_rx_packets_total, vethd_rx_bytes_total, vethd_rx_coalesced_total,
  vethd_rx_split_total, vethd_tx_packets_total, vethd_tx_bytes_total,
  vethd_tx_split_total, vethd_errors_total
                         counters, as "vethctl stats" prints them
  vethd_rx_dropped_total{reason}, vethd_tx_dropped_total{reason}
                         drops by reason (runt, oversize, spoof, ...)
  vethd_carrier, vethd_parent_carrier, vethd_promiscuous
                         gauges, 1 or 0
  vethd_mtu_bytes, vethd_start_time_seconds
                         gauges (the start time in seconds since the epoch)
  vethd_bridge_state{state}
                         1 with the bridge's state as in "vethctl list"
                         (running, failed, configured, ...), for every bridge
  vethd_bridge_info{unit,parent,mac_address,kind,data_path}
                         1, for every bridge

Options:
      --format FORMAT    prometheus: the text format 0.0.4, what Prometheus
                         and node_exporter's textfile collector read (default);
                         openmetrics: OpenMetrics 1.0.0 text (counter families
                         without "_total", UNIT lines, "# EOF" at the end)
      --output FILE      write FILE atomically (a temporary file in its
                         directory, then renamed; mode 0644) instead of
                         printing: for node_exporter's textfile collector,
                         e.g. /var/lib/prometheus/node-exporter/vethd.prom
`

// metricsOptions are the options of metrics.
type metricsOptions struct {
	format string
	output string
}

func (o *metricsOptions) register(fs *flag.FlagSet) {
	o.format, o.output = "prometheus", ""
	fs.StringVar(&o.format, "format", o.format, "")
	fs.StringVar(&o.output, "output", o.output, "")
}

// metricKind is a metric family's type.
type metricKind string

const (
	counter metricKind = "counter"
	gauge   metricKind = "gauge"
)

// family is a metric family: its name as Prometheus writes it (with
// "_total" for a counter), its type, unit (OpenMetrics UNIT, a suffix of
// the name) and help, and its samples.
type family struct {
	name    string
	kind    metricKind
	unit    string
	help    string
	samples []metricSample
}

// metricSample is one sample: label pairs in order, and the value.
type metricSample struct {
	labels [][2]string
	value  string
}

func (f *family) add(value string, labels ...string) {
	s := metricSample{value: value}
	for i := 0; i+1 < len(labels); i += 2 {
		s.labels = append(s.labels, [2]string{labels[i], labels[i+1]})
	}
	f.samples = append(f.samples, s)
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// families builds the metric families of entries (sorted by name) and the
// bridges of inv on the bus. Every family is there even without samples,
// so that the set of HELP and TYPE lines does not depend on the bridges.
func families(inv *inventory, es []entry) []*family {
	newF := func(name string, kind metricKind, unit, help string) *family {
		return &family{name: name, kind: kind, unit: unit, help: help}
	}
	rxPkts := newF("vethd_rx_packets_total", counter, "", "Frames relayed from the parent's wire to the virtual interface.")
	rxBytes := newF("vethd_rx_bytes_total", counter, "bytes", "Bytes relayed from the parent's wire to the virtual interface.")
	rxCoal := newF("vethd_rx_coalesced_total", counter, "", "Frames from the wire merged into larger ones for the virtual interface.")
	rxSplit := newF("vethd_rx_split_total", counter, "", "BIG TCP super-frames (over 64 KiB) from the wire split into smaller ones for the virtual interface.")
	rxDrop := newF("vethd_rx_dropped_total", counter, "", "Frames from the wire dropped, by reason.")
	txPkts := newF("vethd_tx_packets_total", counter, "", "Frames relayed from the virtual interface to the parent's wire.")
	txBytes := newF("vethd_tx_bytes_total", counter, "bytes", "Bytes relayed from the virtual interface to the parent's wire.")
	txSplit := newF("vethd_tx_split_total", counter, "", "BIG TCP super-frames (over 64 KiB) from the virtual interface split into smaller ones for the wire.")
	txDrop := newF("vethd_tx_dropped_total", counter, "", "Frames from the virtual interface dropped, by reason.")
	errs := newF("vethd_errors_total", counter, "", "Errors of the relay.")
	carrier := newF("vethd_carrier", gauge, "", "Whether the virtual interface has carrier (1) or not (0).")
	pcarrier := newF("vethd_parent_carrier", gauge, "", "Whether the parent has carrier (1) or not (0).")
	promisc := newF("vethd_promiscuous", gauge, "", "Whether the parent is in promiscuous mode (1) or not (0).")
	mtu := newF("vethd_mtu_bytes", gauge, "bytes", "MTU of the virtual interface.")
	started := newF("vethd_start_time_seconds", gauge, "seconds", "When the bridge started, in seconds since the epoch.")
	state := newF("vethd_bridge_state", gauge, "", "The bridge's state, as vethctl list shows it, in the label state.")
	info := newF("vethd_bridge_info", gauge, "", "What runs the bridge and what it is attached to.")

	for _, e := range es {
		state.add("1", "bridge", e.Name, "state", e.State)
		bb, onBus := inv.bus[e.Name]
		info.add("1", "bridge", e.Name, "unit", e.Unit, "parent", e.Parent, "mac_address", e.MAC,
			"kind", bb.status.Kind, "data_path", bb.status.DataPath)
		if !onBus {
			continue
		}
		c, st := bb.counters, bb.status
		b := e.Name
		rxPkts.add(u64(c.RxPackets), "bridge", b)
		rxBytes.add(u64(c.RxBytes), "bridge", b)
		rxCoal.add(u64(c.RxCoalesced), "bridge", b)
		rxSplit.add(u64(c.RxSplit), "bridge", b)
		for _, r := range sortedKeys(c.RxDrops) {
			rxDrop.add(u64(c.RxDrops[r]), "bridge", b, "reason", r)
		}
		txPkts.add(u64(c.TxPackets), "bridge", b)
		txBytes.add(u64(c.TxBytes), "bridge", b)
		txSplit.add(u64(c.TxSplit), "bridge", b)
		for _, r := range sortedKeys(c.TxDrops) {
			txDrop.add(u64(c.TxDrops[r]), "bridge", b, "reason", r)
		}
		errs.add(u64(c.Errors), "bridge", b)
		carrier.add(boolValue(st.Carrier), "bridge", b)
		pcarrier.add(boolValue(st.ParentCarrier), "bridge", b)
		promisc.add(boolValue(st.Promiscuous), "bridge", b)
		mtu.add(strconv.FormatUint(uint64(st.MTU), 10), "bridge", b)
		if st.StartedUsec != 0 {
			started.add(strconv.FormatFloat(float64(st.StartedUsec)/1e6, 'f', -1, 64), "bridge", b)
		}
	}
	return []*family{rxPkts, rxBytes, rxCoal, rxSplit, rxDrop, txPkts, txBytes, txSplit, txDrop, errs,
		carrier, pcarrier, promisc, mtu, started, state, info}
}

// writeExposition writes fams in the Prometheus text format (0.0.4) or,
// with openMetrics, in OpenMetrics 1.0.0.
func writeExposition(w io.Writer, fams []*family, openMetrics bool) error {
	var b bytes.Buffer
	for _, f := range fams {
		// OpenMetrics names a counter family without "_total" and its
		// samples with it.
		name := f.name
		if openMetrics && f.kind == counter {
			name = strings.TrimSuffix(name, "_total")
		}
		fmt.Fprintf(&b, "# HELP %s %s\n", name, escapeHelp(f.help, openMetrics))
		fmt.Fprintf(&b, "# TYPE %s %s\n", name, f.kind)
		if openMetrics && f.unit != "" {
			fmt.Fprintf(&b, "# UNIT %s %s\n", name, f.unit)
		}
		for _, s := range f.samples {
			b.WriteString(f.name)
			if len(s.labels) > 0 {
				b.WriteByte('{')
				for i, l := range s.labels {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%s=\"%s\"", l[0], escapeLabel(l[1]))
				}
				b.WriteByte('}')
			}
			fmt.Fprintf(&b, " %s\n", s.value)
		}
	}
	if openMetrics {
		b.WriteString("# EOF\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// escapeLabel escapes a label value: backslash, double quote and line
// feed (both formats).
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes a help text: backslash and line feed, and for
// OpenMetrics the double quote too.
func escapeHelp(s string, openMetrics bool) string {
	if openMetrics {
		return escapeLabel(s)
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func (a *app) metrics(ctx context.Context, patterns []string, o metricsOptions) error {
	if err := checkPatterns(patterns); err != nil {
		return err
	}
	var openMetrics bool
	switch o.format {
	case "prometheus":
	case "openmetrics":
		openMetrics = true
	default:
		return usageErr("metrics: invalid --format %q: prometheus or openmetrics", o.format)
	}
	// Without the bus there are no counters and no live states: write
	// nothing rather than a file that says every bridge is stopped.
	if _, err := a.bridges(ctx); err != nil {
		return err
	}
	inv := a.gather(ctx)
	var es []entry
	for _, e := range inv.entries() {
		if matchAny(patterns, e.Name) {
			es = append(es, e)
		}
	}
	fams := families(inv, es)
	if o.output == "" {
		return writeExposition(a.stdout, fams, openMetrics)
	}
	return writeAtomically(o.output, func(w io.Writer) error { return writeExposition(w, fams, openMetrics) })
}

// writeAtomically writes path through a temporary file in its directory
// (".NAME.*", which node_exporter's "*.prom" does not match) that is
// synced and renamed over path, so that a reader sees the old file or the
// new one, never a part. The file gets mode 0644.
func writeAtomically(path string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", f.Name(), path, errors.Unwrap(err))
	}
	return nil
}
