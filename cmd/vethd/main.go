// Command vethd gives the host another Ethernet card on a wire it is already
// plugged into: a TAP interface with its own MAC, relayed to a parent NIC.
//
//	vethd [-v veth-device] [-e eth-device] [-m mac-address]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/macaddr"
	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes (documented in docs/vethd.8).
const (
	exitOK      = 0
	exitFailure = 1  // runtime failure: TAP, parent socket, netlink, no such parent, name in use
	exitUsage   = 2  // unknown flag or stray argument
	exitNoPerm  = 77 // EX_NOPERM: lacking CAP_NET_ADMIN/CAP_NET_RAW
	exitConfig  = 78 // EX_CONFIG: an invalid value (name, MAC address, machine ID)
)

// options are the command line's values.
type options struct {
	name          string
	parent        string
	mac           string
	machineIDFile string
	version       bool
}

const usageText = `Usage: vethd [-v veth-device] [-e eth-device] [-m mac-address]

Create the virtual Ethernet interface veth-device with its own MAC address
and relay frames between it and eth-device, the NIC whose wire it shares.
Runs in the foreground until SIGINT or SIGTERM, which remove the interface.

Options:
  -v, --name NAME      virtual interface to create (default veth0)
  -e, --parent NAME    parent NIC (default eth0)
  -m, --mac POLICY     persistent (default: derived from /etc/machine-id and
                       NAME, the same at every start), random, or an address
                       such as 02:00:5e:10:00:01
      --machine-id-file PATH
                       read the machine ID for persistent MACs from PATH
                       (default /etc/machine-id)
      --version        print the version and exit
  -h, --help           print this help and exit

Exit status: 0 stopped by a signal, 1 runtime failure, 2 usage error,
77 permission denied, 78 invalid configuration. See vethd(8).
`

// parseFlags reads the command line. It returns flag.ErrHelp for -h/--help.
func parseFlags(args []string, out io.Writer) (options, error) {
	o := options{machineIDFile: macaddr.DefaultMachineIDFile}
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(out, usageText)
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (options take the form -v NAME)", fs.Arg(0))
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

	cfg, code, err := resolveConfig(o, log)
	if err != nil {
		log.Error(err.Error())
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b, err := bridge.Start(cfg)
	if err != nil {
		log.Error(explain(err, cfg))
		return exitCode(err)
	}
	st := b.Status()
	log.Info(fmt.Sprintf("Attached %s into %s", st.Name, st.Parent),
		"mac", st.MAC, "mtu", st.MTU, "carrier", onOff(st.Carrier),
		"parent_promiscuity", st.Promiscuity, "offloads", strings.Join(st.Offloads, ","))

	failed := make(chan error, 1)
	go func() { failed <- b.Wait() }()
	code = exitOK
	select {
	case <-ctx.Done():
		log.Info(fmt.Sprintf("Stopping; removing %s", st.Name))
	case err := <-failed:
		log.Error(fmt.Sprintf("Stopping: %v", err))
		code = exitFailure
	}
	start := time.Now()
	b.Close()
	c := b.Counters().Snapshot()
	log.Info(fmt.Sprintf("Detached %s from %s", st.Name, b.Status().Parent),
		"rx_packets", c.RxPackets, "rx_bytes", c.RxBytes, "rx_coalesced", c.RxCoalesced,
		"tx_packets", c.TxPackets, "tx_bytes", c.TxBytes,
		"dropped", dropSum(c), "errors", c.Errors, "took", time.Since(start).Round(time.Millisecond))
	return code
}

// resolveConfig turns the options into a bridge configuration; on error it
// also returns the exit code.
func resolveConfig(o options, log *slog.Logger) (bridge.Config, int, error) {
	if err := bridge.ValidateName(o.name); err != nil {
		return bridge.Config{}, exitConfig, fmt.Errorf("-v: %w", err)
	}
	if err := bridge.ValidateName(o.parent); err != nil {
		return bridge.Config{}, exitConfig, fmt.Errorf("-e: %w", err)
	}
	policy, err := macaddr.Parse(o.mac)
	if err != nil {
		return bridge.Config{}, exitConfig, fmt.Errorf("-m: %w", err)
	}
	if policy.Warning != "" {
		log.Warn(policy.Warning)
	}
	mac, err := policy.Resolve(o.name, o.machineIDFile)
	if err != nil {
		return bridge.Config{}, exitConfig, err
	}
	return bridge.Config{Name: o.name, Parent: o.parent, MAC: mac, Log: log}, exitOK, nil
}

// explain adds the likely remedy to a start-up error.
func explain(err error, cfg bridge.Config) string {
	switch {
	case errors.Is(err, bridge.ErrNoParent):
		return fmt.Sprintf("%v: there is no interface named %s (see 'ip link'; choose one with -e)", err, cfg.Parent)
	case errors.Is(err, bridge.ErrNameInUse):
		return fmt.Sprintf("%v: an interface named %s exists already (another vethd? remove it or choose another name with -v)", err, cfg.Name)
	case isPermission(err):
		return fmt.Sprintf("%v: vethd needs CAP_NET_ADMIN and CAP_NET_RAW; run it as root", err)
	}
	return err.Error()
}

func exitCode(err error) int {
	switch {
	case isPermission(err):
		return exitNoPerm
	case errors.Is(err, bridge.ErrInvalidName):
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
