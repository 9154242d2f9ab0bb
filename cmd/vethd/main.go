// Command vethd gives the host another Ethernet card on a wire it is already
// plugged into: a TAP interface with its own MAC, relayed to a parent NIC.
//
//	vethd [-v veth-device] [-e eth-device] [-m mac-address]
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

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
	"golang.org/x/sys/unix"
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
		case "v", "name", "e", "parent", "m", "mac":
			o.seedFlags = append(o.seedFlags, "-"+f.Name)
		}
	})
	switch {
	case o.all && o.instance != "":
		return o, errors.New("--instance and --all exclude each other")
	case (o.all || o.instance != "") && len(o.seedFlags) > 0:
		return o, fmt.Errorf("%s cannot be combined with --instance or --all (the configuration file says it)", o.seedFlags[0])
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "vethd: %v\nTry 'vethd --help'.\n", err)
		return exitUsage
	}
	if o.version {
		fmt.Fprintf(stdout, "vethd %s\n", version)
		return exitOK
	}
	log := slog.New(newLineHandler(stderr, stderrIsJournal(), slog.LevelInfo))
	d := &daemon{o: o, log: log, notify: newNotifier()}
	switch {
	case o.instance != "":
		if err := config.Validate(o.instance); err != nil {
			log.Error(fmt.Sprintf("--instance: %v", err))
			return exitConfig
		}
		d.mode = modeInstance
	case o.all:
		d.mode = modeAll
	}
	return d.serve()
}

// explain adds the likely remedy to a start-up error.
func explain(err error, cfg bridge.Config) string {
	switch {
	case errors.Is(err, bridge.ErrNoParent):
		return fmt.Sprintf("%v: there is no interface named %s (see 'ip link'; choose one with -e)", err, cfg.Parent)
	case errors.Is(err, bridge.ErrNameInUse):
		return fmt.Sprintf("%v: an interface named %s exists already (another vethd? remove it, or choose another name: -v, or another NAME.conf)", err, cfg.Name)
	case isPermission(err):
		return fmt.Sprintf("%v: vethd needs CAP_NET_ADMIN and CAP_NET_RAW; run it as root", err)
	}
	return err.Error()
}

func exitCode(err error) int {
	switch {
	case isPermission(err):
		return exitNoPerm
	case errors.Is(err, ifname.ErrInvalid):
		return exitConfig
	}
	return exitFailure
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

func dropSum(s bridge.Stats) uint64 {
	var n uint64
	for _, v := range s.RxDrops {
		n += v
	}
	for _, v := range s.TxDrops {
		n += v
	}
	return n
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
