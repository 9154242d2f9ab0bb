package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/nftables"
	"github.com/vethd/vethd/internal/journal"
	"golang.org/x/sys/unix"
)

// The peer guard. A veth pair's peer is a link of the bridge's namespace
// like any other: every frame the virtual NIC sends arrives on it, and
// after the packet taps (the relay's AF_PACKET socket) the namespace's own
// IP stack takes it too: limited broadcasts (DHCP DISCOVER, NetBIOS),
// 224.0.0.1 and the rest reach local sockets bound to 0.0.0.0 as if they
// came from the LAN. The guard drops them all at netfilter's netdev
// ingress hook, which runs after the taps and before the IP stack: in the
// table GuardTable (family netdev), one base chain per peer, named after
// it, hooked on its ingress at the earliest priority, policy drop and no
// rules.
//
// Equivalent to:
//
//	nft add table netdev vethd
//	nft add chain netdev vethd $peer '{ type filter hook ingress device $peer priority -2147483648; policy drop; }'

// GuardTable is the nftables table (family netdev) of the peer guards.
const GuardTable = "vethd"

// guardInterval is how often the guards are checked, all at once by one
// goroutine with one listing of the table (guardWatch): that each chain is
// still there (an admin's `nft flush ruleset`, as /etc/nftables.conf does
// at boot, removes it).
var guardInterval = 2 * time.Second

// guardWatch runs every guard's check each guardInterval. Its round hook
// forgets the previous round's listing (guardListing).
var guardWatch = &periodic{interval: guardInterval, fns: map[uint64]func(){}, round: func() { guardListing.done = false }}

// guardListing is the table's chains as listed once per round of
// guardWatch, for every guard's check in that round: one netlink dump per
// round rather than one per guard (64 guards listing 64 chains each, every
// 2 s, was 4096 chains parsed per round). Owned by guardWatch's goroutine
// (used under its mutex).
var guardListing struct {
	done   bool // listed in this round
	chains []*nftables.Chain
	err    error
}

// guardTable is GuardTable as nftables sees it.
var guardTable = &nftables.Table{Name: GuardTable, Family: nftables.TableFamilyNetdev}

// guardChain is the base chain that guards peer.
func guardChain(peer string) *nftables.Chain {
	drop := nftables.ChainPolicyDrop
	return &nftables.Chain{
		Name: peer, Table: guardTable, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityFirst,
		Device: peer, Policy: &drop,
	}
}

// peerGuard keeps the guard of one peer in place: startGuard installs it
// and registers its check with guardWatch, which puts it back when it
// disappears; stop unregisters it and leaves the chain (removeGuard
// deletes it with the peer).
type peerGuard struct {
	peer, nic string
	log       *slog.Logger
	unwatch   func()                          // unregisters check from guardWatch; set by startGuard
	install   func(peer string) error         // installGuard (a test's fake)
	present   func(peer string) (bool, error) // listedGuardPresent (a test's fake)

	// Owned by guardWatch's goroutine (by startGuard before it): whether
	// the guard is known to be in place, and whether its failure was
	// logged.
	ok, warned bool
}

// startGuard installs the guard of peer (the peer of the virtual NIC nic)
// and watches it until stop. A guard that cannot be installed (a kernel
// without nf_tables_netdev) is logged once, saying what is exposed: the
// bridge relays all the same.
func startGuard(peer, nic string, log *slog.Logger) *peerGuard {
	g := &peerGuard{peer: peer, nic: nic, log: log, install: installGuard, present: listedGuardPresent}
	g.ensure(false)
	g.unwatch = guardWatch.add(func() { g.ensure(true) })
	return g
}

// ensure looks for the chain and installs it if it is not there (again,
// when check: a guard that was in place and is gone is logged once per
// loss).
func (g *peerGuard) ensure(check bool) {
	if check && g.ok {
		present, err := g.present(g.peer)
		if err == nil && present {
			return
		}
		g.ok = false
		if err == nil {
			g.log.Warn(fmt.Sprintf("The nftables guard of %s is gone or changed (nft flush ruleset?); installing it again table=%s chain=%s",
				g.peer, journal.Quote("netdev "+GuardTable), journal.Quote(g.peer)))
		}
	}
	err := g.install(g.peer)
	if err == nil {
		g.ok = true
		if g.warned || check {
			g.log.Info(fmt.Sprintf("Installed the nftables guard of %s again table=%s chain=%s", g.peer, journal.Quote("netdev "+GuardTable), journal.Quote(g.peer)))
		} else {
			g.log.Info(fmt.Sprintf("Guarded %s: nftables drops what %s sends at its ingress, after the relay reads it and before this namespace's IP stack table=%s chain=%s",
				g.peer, g.nic, journal.Quote("netdev "+GuardTable), journal.Quote(g.peer)))
		}
		g.warned = false
		return
	}
	if g.warned {
		return
	}
	g.warned = true
	what := "cannot install"
	if guardUnavailable(err) {
		what = "nftables (nf_tables_netdev) is unavailable, cannot install"
	}
	g.log.Warn(fmt.Sprintf("%s the nftables guard of %s: what %s sends also reaches this namespace's own IP stack through %s (limited broadcasts such as DHCP DISCOVER, 224.0.0.1, …), as if from the LAN; relaying all the same err=%s",
		what, g.peer, g.nic, g.peer, journal.Quote(err.Error())))
}

// stop ends the watch and leaves the chain in place; it is idempotent.
func (g *peerGuard) stop() { g.unwatch() }

// guardUnavailable says whether err means this kernel has no nf_tables (or
// no netdev family, or no ingress hook).
func guardUnavailable(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP)
}

// installGuard adds the table and peer's chain in one transaction; what is
// there already is kept (an adopted pair's guard, a restart's), so it is
// never duplicated.
func installGuard(peer string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("install the guard of %s: %w", peer, err)
	}
	c.AddTable(guardTable)
	c.AddChain(guardChain(peer))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install the guard of %s: %w", peer, err)
	}
	return nil
}

// listedGuardPresent says whether peer's chain is in the table, hooked on
// ingress and dropping, from this round's guardListing (listing the chains
// if no guard did yet this round). It is called only by guardWatch's
// chores.
func listedGuardPresent(peer string) (bool, error) {
	l := &guardListing
	if !l.done {
		l.chains, l.err = guardChains()
		l.done = true
	}
	if l.err != nil {
		return false, fmt.Errorf("look for the guard of %s: %w", peer, l.err)
	}
	return guards(guardChainIn(l.chains, peer)), nil
}

// guards says whether ch (nil: none) is a guard: hooked on ingress and
// dropping.
func guards(ch *nftables.Chain) bool {
	return ch != nil && ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop &&
		ch.Hooknum != nil && *ch.Hooknum == *nftables.ChainHookIngress
}

// findGuardChain returns peer's chain in the table, whatever it does, or
// nil if there is none.
func findGuardChain(peer string) (*nftables.Chain, error) {
	chains, err := guardChains()
	if err != nil {
		return nil, fmt.Errorf("look for the guard of %s: %w", peer, err)
	}
	return guardChainIn(chains, peer), nil
}

// guardChains lists the chains of family netdev (those of the table
// GuardTable and others).
//
// Equivalent to: `nft list chains netdev`.
func guardChains() ([]*nftables.Chain, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	return c.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
}

// guardChainIn returns peer's chain of the table GuardTable among chains,
// or nil.
func guardChainIn(chains []*nftables.Chain, peer string) *nftables.Chain {
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == GuardTable && ch.Name == peer {
			return ch
		}
	}
	return nil
}

// removeGuard deletes peer's chain (the table stays, maybe empty: another
// vethd may be adding its chain to it at the same time). No chain, or no
// nftables, is no error.
//
// Equivalent to: `nft delete chain netdev vethd $peer`.
func removeGuard(peer string) error {
	ch, err := findGuardChain(peer)
	if err != nil {
		if guardUnavailable(err) {
			return nil
		}
		return err
	}
	if ch == nil {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("remove the guard of %s: %w", peer, err)
	}
	c.DelChain(guardChain(peer))
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove the guard of %s: %w", peer, err)
	}
	return nil
}

// peerGuards is a LinkControl that guards the peers of the pairs it makes:
// the real one, whose links are the namespace's (a fake's are not, and
// are left unguarded).
type peerGuards interface {
	// guardPeer installs and watches the guard of peer, the peer of nic,
	// logging to log; the func it returns stops the watch (leaving the
	// chain, which LinkDel of the peer removes).
	guardPeer(peer, nic string, log *slog.Logger) (stop func())
}

var _ peerGuards = (*netlinkLinks)(nil)

// guardPeer starts a peerGuard. See peerGuards.
func (c *netlinkLinks) guardPeer(peer, nic string, log *slog.Logger) func() {
	return startGuard(peer, nic, log).stop
}
