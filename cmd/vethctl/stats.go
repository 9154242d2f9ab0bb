package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vethd/vethd/internal/humanize"
	"github.com/vethd/vethd/pkg/dbusapi"
)

const statsHelp = `Print the counters of the bridges on the bus that the PATTERNs name or match
(default: every bridge on the bus) and their rates: the counters are read
twice, --interval apart, and the difference is shown per second. RX-RATE and
TX-RATE are in bits per second ("12.3 Mbit/s"), sizes in bytes ("4.5 MB"),
both in SI units. Below the table, each bridge that dropped frames gets a
line with its drops by reason, in the order of the reasons' names.

Options:
      --interval DURATION  time between the two readings: 1s (default), 500ms,
                           2 (seconds); 0 prints the counters only, at once
`

const watchHelp = `Print the rates of the bridges PATTERN (default: every bridge on the bus) every
--interval, until SIGINT (Ctrl-C) or SIGTERM, which end it with status 0. On
a terminal the screen is redrawn; otherwise one table (or, with --json, one
JSON array per line) is printed per interval.

Options:
      --interval DURATION  time between refreshes: 1s (default), 500ms, 2
`

// statsOptions are the options of stats and watch.
type statsOptions struct {
	interval time.Duration
}

// register returns the function that defines the options, with the
// interval def by default.
func (o *statsOptions) register(def time.Duration) func(fs *flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		o.interval = def
		fs.Var((*intervalValue)(&o.interval), "interval", "")
	}
}

// intervalValue is a flag.Value for a duration written as Go writes one
// ("500ms", "1m") or as seconds ("2", "0.5").
type intervalValue time.Duration

func (v *intervalValue) String() string { return time.Duration(*v).String() }

func (v *intervalValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f > float64(1<<62)/float64(time.Second) {
			return errors.New("not a duration like 1s, 500ms or 2")
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return errors.New("negative")
	}
	*v = intervalValue(d)
	return nil
}

// sample is one reading of the counters.
type sample struct {
	at       time.Time
	counters map[string]dbusapi.Counters
	names    []string // in order
}

// sample reads the counters of names, or of every bridge on the bus if
// names is empty. With strict, a named bridge missing from the bus is an
// error (exit 4); otherwise it is left out.
func (a *app) sample(ctx context.Context, b bridges, names []string, strict bool) (sample, error) {
	if len(names) == 0 {
		var err error
		if names, err = b.List(ctx); err != nil {
			return sample{}, err
		}
	}
	s := sample{at: a.now(), counters: make(map[string]dbusapi.Counters, len(names))}
	for _, n := range names {
		_, c, err := b.Get(ctx, n)
		switch {
		case errors.Is(err, dbusapi.ErrNoSuchBridge) && strict:
			return sample{}, noSuch("no such bridge %s on the bus", n)
		case errors.Is(err, dbusapi.ErrNoSuchBridge):
			continue
		case err != nil:
			return sample{}, err
		}
		s.counters[n] = c
		s.names = append(s.names, n)
	}
	return s, nil
}

// rates are per-second rates of a bridge's counters.
type rates struct {
	IntervalSec float64 `json:"interval_sec"`
	RxPackets   float64 `json:"rx_packets"`
	RxBytes     float64 `json:"rx_bytes"`
	RxDropped   float64 `json:"rx_dropped"`
	RxCoalesced float64 `json:"rx_coalesced"`
	RxSplit     float64 `json:"rx_split"`
	TxPackets   float64 `json:"tx_packets"`
	TxBytes     float64 `json:"tx_bytes"`
	TxDropped   float64 `json:"tx_dropped"`
	TxSplit     float64 `json:"tx_split"`
	Errors      float64 `json:"errors"`
}

// computeRates returns the rates from prev to cur, d apart. A counter that
// went down was reset in between: it counts from zero.
func computeRates(prev, cur dbusapi.Counters, d time.Duration) rates {
	secs := d.Seconds()
	rate := func(p, c uint64) float64 {
		if secs <= 0 {
			return 0
		}
		if c < p {
			p = 0
		}
		return float64(c-p) / secs
	}
	return rates{
		IntervalSec: secs,
		RxPackets:   rate(prev.RxPackets, cur.RxPackets),
		RxBytes:     rate(prev.RxBytes, cur.RxBytes),
		RxDropped:   rate(humanize.Sum(prev.RxDrops), humanize.Sum(cur.RxDrops)),
		RxCoalesced: rate(prev.RxCoalesced, cur.RxCoalesced),
		RxSplit:     rate(prev.RxSplit, cur.RxSplit),
		TxPackets:   rate(prev.TxPackets, cur.TxPackets),
		TxBytes:     rate(prev.TxBytes, cur.TxBytes),
		TxDropped:   rate(humanize.Sum(prev.TxDrops), humanize.Sum(cur.TxDrops)),
		TxSplit:     rate(prev.TxSplit, cur.TxSplit),
		Errors:      rate(prev.Errors, cur.Errors),
	}
}

// statsRow is a bridge's counters and rates, as stats --json prints it.
type statsRow struct {
	Name        string            `json:"name"`
	RxPackets   uint64            `json:"rx_packets"`
	RxBytes     uint64            `json:"rx_bytes"`
	RxDropped   uint64            `json:"rx_dropped"`
	RxDrops     map[string]uint64 `json:"rx_drops"`
	RxCoalesced uint64            `json:"rx_coalesced"`
	RxSplit     uint64            `json:"rx_split"`
	TxPackets   uint64            `json:"tx_packets"`
	TxBytes     uint64            `json:"tx_bytes"`
	TxDropped   uint64            `json:"tx_dropped"`
	TxDrops     map[string]uint64 `json:"tx_drops"`
	TxSplit     uint64            `json:"tx_split"`
	Errors      uint64            `json:"errors"`
	Rates       *rates            `json:"rates"` // null without a previous sample
}

// rows returns the rows of cur, with rates from prev if prev is not nil.
// A bridge not in prev has no rates.
func rows(prev *sample, cur sample) []statsRow {
	out := make([]statsRow, 0, len(cur.names))
	for _, n := range cur.names {
		c := cur.counters[n]
		r := statsRow{
			Name:      n,
			RxPackets: c.RxPackets, RxBytes: c.RxBytes, RxCoalesced: c.RxCoalesced, RxSplit: c.RxSplit,
			RxDropped: humanize.Sum(c.RxDrops), RxDrops: nonNil(c.RxDrops),
			TxPackets: c.TxPackets, TxBytes: c.TxBytes, TxSplit: c.TxSplit,
			TxDropped: humanize.Sum(c.TxDrops), TxDrops: nonNil(c.TxDrops),
			Errors: c.Errors,
		}
		if prev != nil {
			if p, ok := prev.counters[n]; ok {
				rt := computeRates(p, c, cur.at.Sub(prev.at))
				r.Rates = &rt
			}
		}
		out = append(out, r)
	}
	return out
}

func nonNil(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return maps.Clone(m)
}

// busNames returns the bridges on the bus that args name or match
// (expand); none for no args, which sample reads as every one.
func (a *app) busNames(ctx context.Context, b bridges, args []string) ([]string, error) {
	if !slices.ContainsFunc(args, isPattern) {
		return args, nil
	}
	known, err := b.List(ctx)
	if err != nil {
		return nil, err
	}
	return expand(args, known)
}

func (a *app) stats(ctx context.Context, args []string, o statsOptions) error {
	if err := checkPatterns(args); err != nil {
		return err
	}
	b, err := a.bridges(ctx)
	if err != nil {
		return err
	}
	names, err := a.busNames(ctx, b, args)
	if err != nil {
		return err
	}
	first, err := a.sample(ctx, b, names, true)
	if err != nil {
		return err
	}
	var rs []statsRow
	if o.interval == 0 {
		rs = rows(nil, first)
	} else {
		if err := a.sleep(ctx, o.interval); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		second, err := a.sample(ctx, b, first.names, false)
		if err != nil {
			return err
		}
		rs = rows(&first, second)
	}
	if a.opts.json {
		return writeJSON(a.stdout, rs)
	}
	a.statsTable(rs, o.interval)
	return nil
}

// statsTable prints rows as a table; the legend lists drops by reason.
func (a *app) statsTable(rs []statsRow, interval time.Duration) {
	withRates := interval > 0
	cols := []column{{title: "NAME"},
		{title: "RX-PKTS", right: true}, {title: "RX-BYTES", right: true}, {title: "RX-DROPS", right: true},
		{title: "TX-PKTS", right: true}, {title: "TX-BYTES", right: true}, {title: "TX-DROPS", right: true},
		{title: "COALESCED", right: true}, {title: "SPLIT", right: true}, {title: "ERRORS", right: true}}
	if withRates {
		cols = append(cols, column{title: "RX-PPS", right: true}, column{title: "RX-RATE", right: true},
			column{title: "TX-PPS", right: true}, column{title: "TX-RATE", right: true})
	}
	t := newTable(cols...)
	for _, r := range rs {
		cells := []string{r.Name,
			u64(r.RxPackets), humanize.Bytes(r.RxBytes), u64(r.RxDropped),
			u64(r.TxPackets), humanize.Bytes(r.TxBytes), u64(r.TxDropped),
			u64(r.RxCoalesced), u64(r.RxSplit + r.TxSplit), u64(r.Errors)}
		if withRates {
			if rt := r.Rates; rt != nil {
				cells = append(cells, humanRate(rt.RxPackets), humanize.BitRate(rt.RxBytes),
					humanRate(rt.TxPackets), humanize.BitRate(rt.TxBytes))
			} else {
				cells = append(cells, "", "", "", "")
			}
		}
		t.add(cells...)
	}
	legend := !a.opts.noLegend
	if len(rs) > 0 || legend {
		t.write(a.stdout, legend)
	}
	if !legend {
		return
	}
	fmt.Fprintln(a.stdout)
	for _, r := range rs {
		if r.RxDropped+r.TxDropped > 0 {
			fmt.Fprintf(a.stdout, "%s drops: rx %s; tx %s\n", r.Name, drops(r.RxDrops), drops(r.TxDrops))
		}
	}
	if withRates {
		fmt.Fprintf(a.stdout, "Rates per second over %s; RX-RATE and TX-RATE in bits per second.\n", interval)
	}
	fmt.Fprintf(a.stdout, "%s listed.\n", plural(len(rs), "bridge", "bridges"))
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

// Terminal control: cursor home, clear screen.
const clearScreen = "\x1b[H\x1b[2J"

func (a *app) watch(ctx context.Context, args []string, o statsOptions) error {
	if o.interval <= 0 {
		return usageErr("watch: --interval must be more than 0")
	}
	if err := checkPatterns(args); err != nil {
		return err
	}
	b, err := a.bridges(ctx)
	if err != nil {
		return err
	}
	// Patterns are matched once, at the start: a bridge that appears
	// later is not added.
	names, err := a.busNames(ctx, b, args)
	if err != nil {
		return err
	}
	prev, err := a.sample(ctx, b, names, true)
	if err != nil {
		return err
	}
	for frame := 0; ; frame++ {
		if a.sleep(ctx, o.interval) != nil {
			return nil // SIGINT or SIGTERM: done
		}
		cur, err := a.sample(ctx, b, names, false)
		if ctx.Err() != nil {
			return nil // interrupted while reading
		}
		if err != nil {
			return err
		}
		rs := rows(&prev, cur)
		prev = cur
		if a.opts.json {
			line, err := json.Marshal(rs)
			if err != nil {
				return fmt.Errorf("encode JSON: %w", err)
			}
			fmt.Fprintf(a.stdout, "%s\n", line)
			continue
		}
		switch {
		case a.isTerminal:
			fmt.Fprint(a.stdout, clearScreen)
		case frame > 0 && !a.opts.noLegend:
			fmt.Fprintln(a.stdout)
		}
		if !a.opts.noLegend {
			title := "vethctl watch " + strings.Join(args, " ")
			fmt.Fprintf(a.stdout, "%s: every %s, %s\n\n", strings.TrimSpace(title), o.interval,
				cur.at.Local().Format("2006-01-02 15:04:05"))
		}
		a.statsTable(rs, o.interval)
	}
}
