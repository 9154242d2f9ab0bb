// Command bridgerun runs one bridge (pkg/bridge) in the network namespace
// it is started in, for the integration tests of the veth kind and of
// namespaces: the bridge's own goroutines open sockets in the process's
// namespace, so a test runs it as a process (ip netns exec) rather than in
// the test binary. SIGTERM closes the bridge (Close), SIGUSR1 releases it
// (Release); either way it exits 0. It logs to stderr, one line per event.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/vethd/vethd/pkg/bridge"
)

func main() {
	name := flag.String("name", "veth1", "the virtual NIC's name")
	parent := flag.String("parent", "eth0", "the parent")
	mac := flag.String("mac", "02:00:5e:10:00:01", "the virtual NIC's MAC")
	kind := flag.String("kind", "veth", "tap or veth")
	ns := flag.String("netns", "", "the path of the namespace to create the NIC in")
	dataPath := flag.String("data-path", "", "relay or kernel (default relay)")
	flag.Parse()
	hw, err := net.ParseMAC(*mac)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := bridge.Start(bridge.Config{
		Name: *name, Parent: *parent, MAC: hw, Kind: bridge.Kind(*kind), Namespace: *ns,
		DataPath: bridge.DataPath(*dataPath), WaitParent: true, ARPIsolation: true, Log: log,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start: %v\n", err)
		os.Exit(1)
	}
	st := b.Status()
	fmt.Fprintf(os.Stderr, "Started %s kind=%s ifindex=%d state=%s data_path=%s\n", st.Name, st.Kind, st.IfIndex, st.State, st.DataPath)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	failed := make(chan error, 1)
	go func() { failed <- b.Wait() }()
	select {
	case sig := <-sigs:
		if sig == syscall.SIGUSR1 {
			b.Release()
			fmt.Fprintln(os.Stderr, "Released")
		} else {
			b.Close()
			fmt.Fprintln(os.Stderr, "Closed")
		}
	case err := <-failed:
		fmt.Fprintf(os.Stderr, "bridge failed: %v\n", err)
		b.Close()
		os.Exit(1)
	}
}
