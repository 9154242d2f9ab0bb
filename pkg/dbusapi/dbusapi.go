// Package dbusapi is vethd's D-Bus interface: the object each bridge exports
// on the system bus, and a small typed client for vethctl.
//
// Per bridge, on the system bus:
//
//	bus name   io.github.vethd.Bridge1.LABEL
//	object     /io/github/vethd/Bridge1/LABEL
//	interface  io.github.vethd.Bridge1
//
// where LABEL is the interface name escaped by EscapeLabel. The bus policy
// is dist/dbus/io.github.vethd.Bridge1.conf.
package dbusapi

import (
	"errors"
	"strings"

	"github.com/godbus/dbus/v5"
)

const (
	// Interface is the D-Bus interface of a bridge object.
	Interface = "io.github.vethd.Bridge1"
	// NamePrefix + EscapeLabel(ifname) is the bus name a bridge owns.
	NamePrefix = Interface + "."
	// PathPrefix + EscapeLabel(ifname) is the path of a bridge's object.
	PathPrefix = "/io/github/vethd/Bridge1/"

	// ErrorReloadFailed is the D-Bus error name of a failed Reload; its
	// message is the Go error's.
	ErrorReloadFailed = Interface + ".Error.ReloadFailed"
)

var (
	// ErrNameTaken means the connection already owns the bridge's bus name
	// (Export), or the bus refused it.
	ErrNameTaken = errors.New("bus name already taken")
	// ErrNoSuchBridge means no bridge of that name is on the bus.
	ErrNoSuchBridge = errors.New("no such bridge")
	// ErrAccessDenied means the bus policy or the daemon refused the call.
	ErrAccessDenied = errors.New("access denied")
	// ErrReloadFailed means the daemon could not apply the configuration;
	// the error's text carries the daemon's reason.
	ErrReloadFailed = errors.New("reload failed")
)

// Status is the state-like part of a bridge, as the D-Bus object shows it.
// Every field is a property that Server.Update signals when it changes.
// The JSON names (vethd's Describe, vethctl --json) are stable.
type Status struct {
	Name          string   `json:"name"`           // interface name
	Kind          string   `json:"kind"`           // tap|veth: what the interface is
	DataPath      string   `json:"data_path"`      // relay|kernel: the data path in use now
	Namespace     string   `json:"namespace"`      // "" vethd's own network namespace, else a path or "netnsid N"
	Parent        string   `json:"parent"`         // parent's name
	IfIndex       int32    `json:"ifindex"`        // 0 while the link does not exist
	ParentIfIndex int32    `json:"parent_ifindex"` // 0 while there is no parent
	MACAddress    string   `json:"mac_address"`    // "02:…"
	MACPolicy     string   `json:"mac_policy"`     // persistent|random|explicit
	MTU           uint32   `json:"mtu"`
	State         string   `json:"state"` // starting|waiting-parent|waiting-namespace|running|degraded|stopping
	Carrier       bool     `json:"carrier"`
	ParentCarrier bool     `json:"parent_carrier"`
	Promiscuous   bool     `json:"promiscuous"` // parent in promiscuous mode
	Offloads      []string `json:"offloads"`
	StartedUsec   uint64   `json:"started_usec"` // CLOCK_REALTIME microseconds
	LastError     string   `json:"last_error"`   // "" if none
}

// Counters are a bridge's counters. The D-Bus object also shows RxDropped
// and TxDropped, the sums of RxDrops and TxDrops.
type Counters struct {
	RxPackets   uint64 `json:"rx_packets"`
	RxBytes     uint64 `json:"rx_bytes"`
	RxCoalesced uint64 `json:"rx_coalesced"`
	TxPackets   uint64 `json:"tx_packets"`
	TxBytes     uint64 `json:"tx_bytes"`
	Errors      uint64 `json:"errors"`

	// RxSplit and TxSplit count the BIG TCP super-frames (GSO frames larger
	// than 64 KiB) that the relay split into smaller ones before writing
	// them, received from the parent and sent from the virtual interface.
	RxSplit uint64 `json:"rx_split"`
	TxSplit uint64 `json:"tx_split"`

	// RxDrops and TxDrops count dropped frames by reason (runt, spoof,
	// oversize, no-parent, write-error, queue-full, …).
	RxDrops map[string]uint64 `json:"rx_drops"`
	TxDrops map[string]uint64 `json:"tx_drops"`
}

// Bridge is what the D-Bus object needs from a bridge. Its methods are
// called concurrently, from D-Bus handler goroutines and from
// Server.Update. The bus name and object path come from Status().Name at
// Export and stay.
type Bridge interface {
	// Status returns the current state.
	Status() Status
	// Counters returns a snapshot of the counters.
	Counters() Counters
	// Reload re-reads the bridge's configuration and applies it.
	Reload() error
	// ResetCounters sets every counter to zero.
	ResetCounters()
	// Describe returns a JSON document describing the bridge.
	Describe() string
}

// EscapeLabel escapes s for use as the last element of a bus name or an
// object path, like systemd's bus_label_escape: every byte outside
// [A-Za-z0-9], and a leading digit, becomes _xx (lowercase hex); "" becomes
// "_".
func EscapeLabel(s string) string {
	if s == "" {
		return "_"
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || (i > 0 && isDigit(c)) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// UnescapeLabel is the inverse of EscapeLabel. Like systemd's
// bus_label_unescape, it keeps a '_' that starts no valid escape.
func UnescapeLabel(s string) string {
	if s == "_" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// BusName returns the bus name of the bridge ifname.
func BusName(ifname string) string { return NamePrefix + EscapeLabel(ifname) }

// ObjectPath returns the object path of the bridge ifname.
func ObjectPath(ifname string) dbus.ObjectPath {
	return dbus.ObjectPath(PathPrefix + EscapeLabel(ifname))
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
