package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vethd/vethd/pkg/config"
)

const completeHelp = `For the shell completions (dist/completions), not for people:
  parents  the links that can be a bridge's parent, one a line
  bridges  the bridges "vethctl list" finds, one a line
`

// peerPrefix starts the name of the peer of a bridge of Kind=veth
// (pkg/bridge: "vd-" + NAME).
const peerPrefix = "vd-"

// arphrdEther is ARPHRD_ETHER, /sys/class/net/IF/type of an Ethernet link.
const arphrdEther = "1"

// completeBusTimeout bounds the bus look-up of "__complete parents": a
// completion must not hang on a stuck bus.
const completeBusTimeout = time.Second

func (a *app) complete(ctx context.Context, args []string) error {
	var names []string
	switch args[0] {
	case "parents":
		names = a.parentCandidates(ctx)
	case "bridges":
		for _, e := range a.gather(ctx).entries() {
			names = append(names, e.Name)
		}
	default:
		return usageErr("__complete: unknown %q: parents or bridges", args[0])
	}
	for _, n := range names {
		fmt.Fprintln(a.stdout, n)
	}
	return nil
}

// parentCandidates returns the links that --parent offers: Ethernet
// links (type 1: not lo, not a tun or WireGuard link, not a bare IP
// tunnel) that are not vethd's own, that is neither a bridge's virtual
// interface (a file in the config dir, or a bridge on the bus) nor the
// peer of one (vd-*). Sorted.
func (a *app) parentCandidates(ctx context.Context) []string {
	own := map[string]bool{}
	if ns, err := config.Names(a.opts.configDir); err == nil {
		for _, n := range ns {
			own[n] = true
		}
	}
	bctx, cancel := context.WithTimeout(ctx, completeBusTimeout)
	defer cancel()
	if b, err := a.bridges(bctx); err == nil {
		if ns, err := b.List(bctx); err == nil {
			for _, n := range ns {
				own[n] = true
			}
		}
	}
	dir := a.sysClassNet
	if dir == "" {
		dir = "/sys/class/net"
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if own[n] || strings.HasPrefix(n, peerPrefix) {
			continue
		}
		t, err := os.ReadFile(filepath.Join(dir, n, "type"))
		if err != nil || strings.TrimSpace(string(t)) != arphrdEther {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
