// Command vethd gives the host another Ethernet card on a wire it is already
// plugged into: a TAP interface with its own MAC, relayed to a parent NIC.
//
//	vethd [-v veth-device] [-e eth-device] [-m mac-address] [--arp-isolation=no]
//	      [--source-routing=no] [--route-table=N] [--route-priority=N] [--kind=tap|veth] [--netns=NAME|PATH]
//	      [--broadcast-limit=N|off] [--data-path=relay|kernel]
//	vethd --instance NAME     (/etc/vethd/NAME.conf; vethd@NAME.service)
//	vethd --all               (every /etc/vethd/*.conf; vethd.service)
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/vethd/vethd/internal/journal"
	"github.com/vethd/vethd/internal/sdnotify"
	"github.com/vethd/vethd/internal/service"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/macaddr"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes (documented in docs/vethd.8).
const (
	exitOK      = 0
	exitFailure = 1  // runtime failure: TAP, parent socket, netlink, no such parent, name in use, TAP deleted
	exitUsage   = 2  // unknown flag or stray argument
	exitNoPerm  = 77 // EX_NOPERM: lacking CAP_NET_ADMIN/CAP_NET_RAW
	exitConfig  = 78 // EX_CONFIG: an invalid value (name, MAC address, machine ID) or configuration file
)

// options are the command line's values.
type options struct {
	name          string
	parent        string
	mac           string
	arpIsolation  string // --arp-isolation: yes (default) or no, as config.ParseBoolean reads it
	srcRouting    string // --source-routing: yes (default) or no
	routeTable    string // --route-table: auto (default) or N, as config.ParseRouteTable reads it
	routePriority string // --route-priority: "" (default) or N
	kind          string // --kind: "" (default: config.DefaultKind), tap or veth
	netns         string // --netns: "" (vethd's own), a name under /run/netns or an absolute path
	bcastLimit    string // --broadcast-limit: "" (default) or N or off, as config.ParseBroadcastLimit reads it
	dataPath      string // --data-path: "" (default: config.DefaultDataPath of the kind), relay or kernel (with --kind=veth)
	machineIDFile string
	version       bool
	instance      string // --instance NAME
	all           bool   // --all
	configDir     string // --config-dir
	seedFlags     []string
}

const usageText = `Usage: vethd [-v veth-device] [-e eth-device] [-m mac-address]
       vethd --instance NAME
       vethd --all

Create the virtual Ethernet interface veth-device with its own MAC address
and relay frames between it and eth-device, the NIC whose wire it shares.
Runs in the foreground until SIGINT or SIGTERM, which remove the interface.
With --instance, the bridge is configured by /etc/vethd/NAME.conf (see
vethd.conf(5)) and a missing parent is waited for; with --all, every
/etc/vethd/*.conf runs in one process. SIGHUP re-reads the configuration.

Options:
  -v, --name NAME      virtual interface to create (default veth0)
  -e, --parent NAME    parent NIC (default eth0)
  -m, --mac POLICY     persistent (default: derived from /etc/machine-id and
                       NAME, the same at every start), random, or an address
                       such as 02:00:5e:10:00:01
      --arp-isolation yes|no
                       yes (default): set arp_ignore=1 and arp_announce=2 on
                       the parent and NAME, so each answers ARP only for its
                       own addresses; no: leave them as they are
      --source-routing yes|no
                       yes (default): traffic from NAME's addresses leaves
                       by NAME (a rule per address into a table of NAME's
                       routes); no: no rules, no table
      --route-table auto|N
                       the table of NAME's routes (default auto: derived
                       from NAME, 1000000..1999999)
      --route-priority N
                       the priority of the source rules (default 32000)
      --kind tap|veth  what NAME is: a TAP interface (default) or one end
                       of a veth pair (the other end is vd-NAME)
      --netns NAME|PATH
                       create NAME in the network namespace /run/netns/NAME
                       or PATH (waits for it to appear)
      --broadcast-limit N|off
                       at most N broadcast/multicast frames a second of
                       each class (ARP, IPv6 neighbour discovery, DHCP,
                       other) from the parent to NAME (default 1000);
                       off: no storm limiter
      --data-path relay|kernel
                       relay: vethd moves the frames (the default for
                       --kind tap); kernel (--kind veth only, and its
                       default): tc programs move them inside the kernel
                       (Linux 6.6 or later, CAP_BPF), or vethd relays
                       them where the kernel refuses
      --machine-id-file PATH
                       read the machine ID for persistent MACs from PATH
                       (default /etc/machine-id)
      --instance NAME  run the bridge configured in CONFIG-DIR/NAME.conf
                       (what vethd@NAME.service runs)
      --all            run every bridge configured in CONFIG-DIR/*.conf,
                       restarting one that fails (what vethd.service runs)
      --config-dir DIR where configuration files are (default /etc/vethd)
      --version        print the version and exit
  -h, --help           print this help and exit

Exit status: 0 stopped by a signal, 1 runtime failure, 2 usage error,
77 permission denied, 78 invalid configuration. See vethd(8).
`

// parseFlags reads the command line. It returns flag.ErrHelp for -h/--help.
func parseFlags(args []string, out io.Writer) (options, error) {
	o := options{machineIDFile: macaddr.DefaultMachineIDFile, configDir: config.Dir}
	fs := flag.NewFlagSet("vethd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, n := range []string{"v", "name"} {
		fs.StringVar(&o.name, n, "veth0", "")
	}
	for _, n := range []string{"e", "parent"} {
		fs.StringVar(&o.parent, n, "eth0", "")
	}
	for _, n := range []string{"m", "mac"} {
		fs.StringVar(&o.mac, n, "persistent", "")
	}
	fs.StringVar(&o.arpIsolation, "arp-isolation", "yes", "")
	fs.StringVar(&o.srcRouting, "source-routing", "yes", "")
	fs.StringVar(&o.routeTable, "route-table", "auto", "")
	fs.StringVar(&o.routePriority, "route-priority", "", "")
	fs.StringVar(&o.kind, "kind", "", "")
	fs.StringVar(&o.netns, "netns", "", "")
	fs.StringVar(&o.bcastLimit, "broadcast-limit", "", "")
	fs.StringVar(&o.dataPath, "data-path", "", "")
	fs.StringVar(&o.machineIDFile, "machine-id-file", o.machineIDFile, "")
	fs.BoolVar(&o.version, "version", false, "")
	fs.StringVar(&o.instance, "instance", "", "")
	fs.BoolVar(&o.all, "all", false, "")
	fs.StringVar(&o.configDir, "config-dir", o.configDir, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(out, usageText)
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (options take the form -v NAME)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "v", "name", "e", "parent", "m", "mac", "arp-isolation",
			"source-routing", "route-table", "route-priority", "kind", "netns", "broadcast-limit", "data-path":
			o.seedFlags = append(o.seedFlags, "-"+f.Name)
		}
	})
	// An empty value given on purpose is an error, not the default: a
	// unit or script with an unset variable ("--instance $NAME") must not
	// fall back to the seed's -v veth0 -e eth0 and attach to the real
	// eth0, nor read the current directory as the configuration.
	var empty string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "instance", "config-dir", "machine-id-file":
			if f.Value.String() == "" && empty == "" {
				empty = f.Name
			}
		}
	})
	switch {
	case empty != "":
		return o, fmt.Errorf("--%s is empty (an unset variable?): give it a value or leave the option out", empty)
	case o.all && o.instance != "":
		return o, errors.New("--instance and --all exclude each other")
	case (o.all || o.instance != "") && len(o.seedFlags) > 0:
		return o, fmt.Errorf("%s cannot be combined with --instance or --all (the configuration file says it)", o.seedFlags[0])
	}
	return o, nil
}

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		if hard := cgroupMemoryMax(); hard > 0 {
			// Nearing 3/4 of the unit's MemoryMax=, the garbage collector
			// runs more often and returns freed memory at once, before the
			// kernel's OOM killer would act.
			debug.SetMemoryLimit(hard / 4 * 3)
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// cgroupMemoryMax returns the memory.max of vethd's cgroup (v2), the
// unit's MemoryMax=; 0 if there is none or it cannot be read.
func cgroupMemoryMax() int64 {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	path, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok || strings.Contains(path, "\n") {
		return 0
	}
	b, err = os.ReadFile("/sys/fs/cgroup" + path + "/memory.max")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil { // "max": none
		return 0
	}
	return n
}

// run is vethd with its command line and output streams; it returns the
// exit code.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "vethd: %s\nTry 'vethd --help'.\n", escapeNonPrintable(err.Error()))
		return exitUsage
	}
	if o.version {
		fmt.Fprintf(stdout, "vethd %s\n", version)
		return exitOK
	}
	log := slog.New(journal.NewHandler(stderr, journal.StderrIsJournal(), slog.LevelInfo))
	arp, err := config.ParseBoolean(o.arpIsolation)
	if err != nil {
		log.Error(fmt.Sprintf("--arp-isolation: %v", err))
		return exitConfig
	}
	routing, err := config.ParseBoolean(o.srcRouting)
	if err != nil {
		log.Error(fmt.Sprintf("--source-routing: %v", err))
		return exitConfig
	}
	table, err := config.ParseRouteTable(o.routeTable)
	if err != nil {
		log.Error(fmt.Sprintf("--route-table: %v", err))
		return exitConfig
	}
	priority := 0
	if o.routePriority != "" {
		if priority, err = config.ParseRoutePriority(o.routePriority); err != nil {
			log.Error(fmt.Sprintf("--route-priority: %v", err))
			return exitConfig
		}
	}
	kind := config.DefaultKind
	if o.kind != "" {
		if kind, err = config.ParseKind(o.kind); err != nil {
			log.Error(fmt.Sprintf("--kind: %v", err))
			return exitConfig
		}
	}
	if o.dataPath != "" {
		dp, err := config.ParseDataPath(o.dataPath)
		if err != nil {
			log.Error(fmt.Sprintf("--data-path: %v", err))
			return exitConfig
		}
		if config.CheckDataPath(kind, dp) != nil {
			log.Error("--data-path: kernel needs --kind=veth (a TAP's frames pass through vethd)")
			return exitConfig
		}
	}
	if _, err := config.NamespacePath(o.netns); err != nil {
		log.Error(fmt.Sprintf("--netns: %v", err))
		return exitConfig
	}
	bcast := 0
	if o.bcastLimit != "" {
		if bcast, err = config.ParseBroadcastLimit(o.bcastLimit); err != nil {
			log.Error(fmt.Sprintf("--broadcast-limit: %v", err))
			return exitConfig
		}
	}
	cfg := service.Config{
		Mode: service.ModeSeed, Name: o.name, Parent: o.parent, MAC: o.mac, NoARPIsolation: !arp,
		NoSourceRouting: !routing, RouteTable: table, RoutePriority: priority, Kind: o.kind, Namespace: o.netns,
		BroadcastLimit: bcast, DataPath: o.dataPath, ConfigDir: o.configDir, MachineIDFile: o.machineIDFile, Version: version,
		Log: log, Notifier: sdnotify.New(), Routes: service.SourceRoutes{},
	}
	switch {
	case o.instance != "":
		if err := config.Validate(o.instance); err != nil {
			log.Error(fmt.Sprintf("--instance: %v", err))
			return exitConfig
		}
		cfg.Mode, cfg.Instance = service.ModeInstance, o.instance
	case o.all:
		cfg.Mode = service.ModeAll
	}
	cfg.StoredFDs = sdnotify.StoredFDs()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	return exitCode(service.Run(cfg, sigs))
}

// escapeNonPrintable escapes, as Go's %q would, every non-printable
// character of s, so that a flag name or value holding an escape sequence
// cannot rewrite the terminal: the flag package's own errors ("flag
// provided but not defined: -NAME", "invalid value …") print it raw.
func escapeNonPrintable(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i]) // a byte that is not UTF-8
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// exitCode maps the service's end to the exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var e *service.Error
	if errors.As(err, &e) {
		switch e.Kind {
		case service.KindConfig:
			return exitConfig
		case service.KindPermission:
			return exitNoPerm
		}
	}
	return exitFailure
}
