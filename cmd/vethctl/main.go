// Command vethctl lists, inspects, adds and removes vethd bridges. It talks
// to systemd's manager (the vethd@NAME.service units) and to the bridges'
// objects (io.github.vethd.Bridge1.LABEL) on the system bus, and reads and
// writes /etc/vethd/NAME.conf.
//
//	vethctl [OPTIONS] [list [PATTERN…]]
//	vethctl [OPTIONS] status [PATTERN…]
//	vethctl [OPTIONS] show PATTERN…
//	vethctl [OPTIONS] stats [PATTERN…]
//	vethctl [OPTIONS] watch [PATTERN…]
//	vethctl [OPTIONS] metrics [PATTERN…] [--format prometheus|openmetrics] [--output FILE]
//	vethctl [OPTIONS] add NAME --parent IF [--mac …] [--mtu …] [--carrier …] [--now] [--force] [--no-block] [--timeout D]
//	vethctl [OPTIONS] remove NAME [--keep-config] [--no-block] [--timeout D]
//	vethctl [OPTIONS] reload NAME [--timeout D]
//	vethctl [OPTIONS] reset NAME
//	vethctl [OPTIONS] mac NAME
//	vethctl [OPTIONS] help
//
// A PATTERN is a bridge name or a shell glob ("veth*", "wan[0-9]") as
// path.Match reads it, as networkctl takes them.
//
// docs/vethctl.1 is the manual.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/macaddr"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes (documented in docs/vethctl.1, EXIT STATUS).
const (
	exitOK      = 0
	exitFailure = 1  // the operation failed: a systemd job, a bus call, no system bus, a file
	exitUsage   = 2  // usage error or invalid argument
	exitNoSuch  = 4  // no such bridge or unit (as systemctl's 4)
	exitNoPerm  = 77 // permission denied (EX_NOPERM): AccessDenied on the bus, EACCES on a file
)

// options are the global options, valid before and after the command.
type options struct {
	json          bool
	noLegend      bool
	noPager       bool
	help          bool
	version       bool
	configDir     string
	machineIDFile string
}

// register defines the global options on fs, with their current values as
// defaults so that defining them again keeps what was parsed already.
func (o *options) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.json, "json", o.json, "")
	fs.BoolVar(&o.json, "j", o.json, "")
	fs.BoolVar(&o.noPager, "no-pager", o.noPager, "")
	fs.BoolVar(&o.noLegend, "no-legend", o.noLegend, "")
	fs.BoolVar(&o.help, "h", o.help, "")
	fs.BoolVar(&o.help, "help", o.help, "")
	fs.BoolVar(&o.version, "version", o.version, "")
	fs.StringVar(&o.configDir, "config-dir", o.configDir, "")
	fs.StringVar(&o.machineIDFile, "machine-id-file", o.machineIDFile, "")
}

const usageText = `Usage: vethctl [OPTIONS] COMMAND [ARGS]

Show and manage vethd bridges: virtual NICs with their own MAC address on
the wire of a parent NIC (see vethd(8)).

Commands:
  list [PATTERN...]      list every bridge: systemd units vethd@*.service,
                         bridges on the bus, files in the config dir (default)
  status [PATTERN...]    a summary of every bridge; with names, as show
  show PATTERN...        show everything known about bridges
  stats [PATTERN...]     counters, drops by reason and per-second rates
                         (--interval, default 1s)
  watch [PATTERN...]     refresh the rates every --interval until interrupted
  metrics [PATTERN...]   every counter, drop reason and state in Prometheus
        [--format prometheus|openmetrics] [--output FILE]
  add NAME --parent IF   write CONFIG-DIR/NAME.conf and enable vethd@NAME.service
        [--mac persistent|random|ADDR] [--mtu N|inherit] [--carrier follow|on]
        [--now] [--force] [--no-block] [--timeout DURATION]
  remove NAME            stop and disable vethd@NAME.service, delete its file
        [--keep-config] [--no-block] [--timeout DURATION]
  reload NAME            make vethd re-read and apply NAME's configuration file
        [--timeout DURATION]
  reset NAME             reset NAME's counters to zero
  mac NAME               print the persistent MAC address NAME gets on this host
  help                   print this help

A PATTERN is a bridge name or a shell glob: "veth*", "wan[0-9]" (quote it).

Options:
  -j, --json             print JSON (list, status, show, stats, watch, mac)
      --no-legend        print tables without header and footer
      --no-pager         do not pipe list, status, show and stats into a pager
                         ($SYSTEMD_PAGER, $PAGER, less; only on a terminal)
      --config-dir DIR   where the configuration files are (default /etc/vethd)
      --machine-id-file PATH
                         machine ID for persistent MACs (default /etc/machine-id)
      --version          print the version and exit
  -h, --help             print this help (or a command's) and exit

Options of add, remove and reload:
      --timeout DURATION how long to wait for a systemd job, and for vethd to
                         show or drop a bridge on the bus: 90s (default),
                         2m, 30 (seconds); 0 waits without limit
      --no-block         (add, remove) queue systemd jobs without waiting

Every bus call gets an answer within 25 seconds or fails.

Exit status: 0 success, 1 operation failed, 2 usage error, 4 no such bridge
or unit, 77 permission denied. See vethctl(1).
`

// exitError is an error with the exit code it ends vethctl with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr returns a usage error (exit 2).
func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// noSuch returns a "no such bridge or unit" error (exit 4).
func noSuch(format string, a ...any) error {
	return &exitError{code: exitNoSuch, err: fmt.Errorf(format, a...)}
}

// app is one run of vethctl: its options, its output and the ways it
// reaches the system, which tests replace. One goroutine uses it.
type app struct {
	stdout, stderr io.Writer
	opts           options

	// openUnits connects to systemd's manager; openBridges to the bridges
	// on the system bus. Each is called at most once per run.
	openUnits   func(ctx context.Context) (units, error)
	openBridges func(ctx context.Context) (bridges, error)

	now        func() time.Time
	sleep      func(ctx context.Context, d time.Duration) error // returns ctx.Err() if ctx ends first
	isTerminal bool                                             // stdout is a terminal (watch clears the screen, a pager runs)

	// lookupEnv reads the environment ($SYSTEMD_PAGER, $PAGER,
	// $SYSTEMD_LESS); nil means none is set. sysClassNet is where the
	// links are (/sys/class/net), for "__complete parents".
	lookupEnv   func(key string) (string, bool)
	sysClassNet string

	// The connections and why they could not be opened, set on first use
	// by units and bridges; close closes them.
	u       units
	uErr    error
	uOpened bool
	b       bridges
	bErr    error
	bOpened bool
}

func main() {
	ctx, stop := signalContext(context.Background())
	a := &app{
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		openUnits:   openSystemd,
		openBridges: openBridges,
		now:         time.Now,
		sleep:       sleepCtx,
		isTerminal:  isTerminal(os.Stdout),
		lookupEnv:   os.LookupEnv,
		sysClassNet: "/sys/class/net",
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// signalContext returns a context that the first SIGINT or SIGTERM ends.
// By then the signals' default handling is back, so that a second one
// kills vethctl if it does not end soon enough. stop releases the
// signals and ends the context.
func signalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	sctx, unnotify := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(parent)
	go func() {
		<-sctx.Done()
		unnotify() // default handling again: the next signal kills
		cancel()
	}()
	return ctx, func() {
		unnotify()
		cancel()
	}
}

// units returns the connection to systemd, opening it on first use.
func (a *app) units(ctx context.Context) (units, error) {
	if !a.uOpened {
		a.uOpened = true
		a.u, a.uErr = a.openUnits(ctx)
	}
	return a.u, a.uErr
}

// bridges returns the client of the bridges on the bus, opening it on
// first use.
func (a *app) bridges(ctx context.Context) (bridges, error) {
	if !a.bOpened {
		a.bOpened = true
		a.b, a.bErr = a.openBridges(ctx)
	}
	return a.b, a.bErr
}

// close closes whatever connections were opened.
func (a *app) close() {
	for _, c := range []any{a.u, a.b} {
		if c, ok := c.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// command is a subcommand: its usage line, its flags and what it does.
type command struct {
	usage string                 // "add NAME --parent IF [...]", after "vethctl "
	help  string                 // what the command does and its own options
	args  func(n int) bool       // whether n positional arguments are right
	flags func(fs *flag.FlagSet) // defines the command's own flags; may be nil
	run   func(ctx context.Context, args []string) error
	pager bool // its output goes through a pager on a terminal (not with --no-pager)
	// hidden commands are not in --help nor in the completions' lists.
	hidden bool
}

func (a *app) commands() map[string]*command {
	var add addOptions
	var rm removeOptions
	var rl reloadOptions
	var st statsOptions
	var mo metricsOptions
	exactly := func(k int) func(int) bool { return func(n int) bool { return n == k } }
	anyNumber := func(int) bool { return true }
	atLeastOne := func(n int) bool { return n >= 1 }
	return map[string]*command{
		"list":   {usage: "list [PATTERN...]", help: listHelp, args: anyNumber, run: a.list, pager: true},
		"status": {usage: "status [PATTERN...]", help: statusHelp, args: anyNumber, run: a.status, pager: true},
		"show":   {usage: "show PATTERN...", help: showHelp, args: atLeastOne, run: a.show, pager: true},
		"stats": {usage: "stats [PATTERN...] [--interval DURATION]", help: statsHelp, args: anyNumber,
			flags: st.register(time.Second), pager: true,
			run: func(ctx context.Context, args []string) error { return a.stats(ctx, args, st) }},
		"metrics": {usage: "metrics [PATTERN...] [--format prometheus|openmetrics] [--output FILE]", help: metricsHelp,
			args: anyNumber, flags: mo.register,
			run: func(ctx context.Context, args []string) error { return a.metrics(ctx, args, mo) }},
		"__complete": {usage: "__complete parents|bridges", help: completeHelp, args: exactly(1), hidden: true,
			run: a.complete},
		"watch": {usage: "watch [PATTERN...] [--interval DURATION]", help: watchHelp, args: anyNumber,
			flags: st.register(time.Second),
			run:   func(ctx context.Context, args []string) error { return a.watch(ctx, args, st) }},
		"add": {usage: "add NAME --parent IF [--mac POLICY] [--mtu N|inherit] [--carrier follow|on] [--now] [--force]" +
			" [--no-block] [--timeout DURATION]",
			help: addHelp, args: exactly(1), flags: add.register,
			run: func(ctx context.Context, args []string) error { return a.add(ctx, args[0], add) }},
		"remove": {usage: "remove NAME [--keep-config] [--no-block] [--timeout DURATION]", help: removeHelp, args: exactly(1),
			flags: rm.register,
			run:   func(ctx context.Context, args []string) error { return a.remove(ctx, args[0], rm) }},
		"reload": {usage: "reload NAME [--timeout DURATION]", help: reloadHelp, args: exactly(1), flags: rl.register,
			run: func(ctx context.Context, args []string) error { return a.reload(ctx, args[0], rl) }},
		"reset": {usage: "reset NAME", help: resetHelp, args: exactly(1),
			run: func(ctx context.Context, args []string) error { return a.reset(ctx, args[0]) }},
		"mac": {usage: "mac NAME", help: macHelp, args: exactly(1),
			run: func(_ context.Context, args []string) error { return a.mac(args[0]) }},
	}
}

// run runs the command line args and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	defer a.close()
	a.opts = options{configDir: config.Dir, machineIDFile: macaddr.DefaultMachineIDFile}

	// Global options before the command.
	fs := flag.NewFlagSet("vethctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.opts.register(fs)
	if err := fs.Parse(args); err != nil {
		return a.fail(usageErr("%v", flagError(err)))
	}
	if a.opts.help {
		io.WriteString(a.stdout, usageText)
		return exitOK
	}
	if a.opts.version {
		fmt.Fprintf(a.stdout, "vethctl %s\n", version)
		return exitOK
	}
	rest := fs.Args()
	name := "list"
	if len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "help" {
		io.WriteString(a.stdout, usageText)
		return exitOK
	}
	cmd, ok := a.commands()[name]
	if !ok {
		return a.fail(usageErr("unknown command %q", name))
	}

	// The command's options and the global ones, anywhere after it.
	fs = flag.NewFlagSet("vethctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.opts.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return a.fail(usageErr("%s: %v", name, flagError(err)))
	}
	if a.opts.help {
		fmt.Fprintf(a.stdout, "Usage: vethctl %s\n\n%s", cmd.usage, cmd.help)
		return exitOK
	}
	if a.opts.version {
		fmt.Fprintf(a.stdout, "vethctl %s\n", version)
		return exitOK
	}
	if !cmd.args(len(pos)) {
		return a.fail(usageErr("usage: vethctl %s", cmd.usage))
	}
	if cmd.pager && a.isTerminal && !a.opts.noPager {
		if p := a.startPager(); p != nil {
			defer p.wait()
		}
	}
	if err := cmd.run(ctx, pos); err != nil {
		return a.fail(err)
	}
	return exitOK
}

// flagError rewords the flag package's errors, which name options with
// one dash, for two-dash options: "unknown option --foo", "invalid value
// "x" for --interval: …", "invalid boolean value "x" for --json: …".
func flagError(err error) error {
	msg := err.Error()
	if opt, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown option %s", dashes(opt))
	}
	if opt, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("option %s needs an argument", dashes(opt))
	}
	// "invalid value %q for flag -%s: %v"; for a bool flag,
	// "invalid boolean value %q for -%s: %v".
	for _, p := range []string{"invalid value ", "invalid boolean value "} {
		rest, ok := strings.CutPrefix(msg, p)
		if !ok {
			continue
		}
		q, qerr := strconv.QuotedPrefix(rest)
		if qerr != nil {
			break
		}
		rest = rest[len(q):]
		if r, ok := strings.CutPrefix(rest, " for flag -"); ok {
			rest = r
		} else if r, ok := strings.CutPrefix(rest, " for -"); ok {
			rest = r
		} else {
			break
		}
		opt, reason, _ := strings.Cut(rest, ": ")
		return fmt.Errorf("%s%s for %s: %s", p, q, dashes(opt), reason)
	}
	return err
}

// dashes returns the option name with the dashes it is documented with.
func dashes(opt string) string {
	if len(opt) == 1 {
		return "-" + opt
	}
	return "--" + opt
}

// parseInterspersed parses fs from args, allowing options after positional
// arguments (vethctl add veth1 --parent eth0). A "--" ends the options.
// It returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// fail prints err as "vethctl: …" with a hint where one helps, and returns
// its exit code.
func (a *app) fail(err error) int {
	code := exitCode(err)
	msg := err.Error()
	switch code {
	case exitUsage:
		msg += "\nTry 'vethctl --help'."
	case exitNoPerm:
		msg += " (run vethctl as root, e.g. with sudo)"
	}
	fmt.Fprintf(a.stderr, "vethctl: %s\n", msg)
	return code
}

// warn prints a note or warning on stderr.
func (a *app) warn(format string, args ...any) {
	fmt.Fprintf(a.stderr, "vethctl: "+format+"\n", args...)
}

// exitCode maps an error to vethctl's exit code.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case isAccessDenied(err):
		return exitNoPerm
	case isNoSuch(err):
		return exitNoSuch
	}
	return exitFailure
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
