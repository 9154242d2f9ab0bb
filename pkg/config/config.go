// Package config reads and writes vethd's bridge configuration files,
// /etc/vethd/NAME.conf, in systemd unit-file syntax.
//
// A file has one section, [Bridge]:
//
//	[Bridge]
//	Parent=eth0
//	MACAddress=persistent
//	MTU=inherit
//	Carrier=follow
//	ARPIsolation=yes
//	SourceRouting=yes
//	RouteTable=auto
//	RoutePriority=32000
//	Kind=tap
//	Namespace=
//	BroadcastLimit=1000
//	DataPath=relay
//
// (DataPath= defaults to kernel for Kind=veth, relay for Kind=tap.)
//
// go-systemd's unit parser decides what the file says; a line scan of the
// same bytes (scan.go) finds the line of each section and key, so that every
// error names the file, the line and the key (see Error). vethd.conf(5)
// documents the keys.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
)

// Dir is where the bridge configuration files are.
const Dir = "/etc/vethd"

// Carrier is how the TAP interface's carrier is set.
type Carrier string

const (
	CarrierFollow Carrier = "follow" // the TAP's carrier follows the parent's (default)
	CarrierOn     Carrier = "on"     // the TAP always has carrier
)

// Bridge is one bridge's configuration.
type Bridge struct {
	Name       string         // interface name = file name without ".conf"
	File       string         // path it was read from ("" if built in code)
	Parent     string         // Parent= (required)
	MACAddress string         // MACAddress= as written: "persistent" (default), "random" or an address
	MAC        macaddr.Policy // MACAddress= parsed with macaddr.Parse
	MTU        int            // MTU=: 0 means "inherit" (default) = follow the parent
	Carrier    Carrier        // Carrier=: follow (default) | on
	// NoARPIsolation is ARPIsolation=no: vethd leaves the parent's and the
	// interface's arp_ignore and arp_announce alone. The zero value is the
	// default, ARPIsolation=yes.
	NoARPIsolation bool
	// NoSourceRouting is SourceRouting=no: vethd keeps no source rules and
	// no routing table for the interface (and removes what an earlier run
	// left). The zero value is the default, SourceRouting=yes.
	NoSourceRouting bool
	// RouteTable is RouteTable=: 0 is "auto" (default), the table derived
	// from the interface's name (srcroute.DefaultTable).
	RouteTable int
	// RoutePriority is RoutePriority=: 0 is the default (DefaultRoutePriority).
	RoutePriority int
	// Kind is Kind=: what the virtual interface is; "" is the default
	// (DefaultKind), which a file does not pin.
	Kind Kind
	// Namespace is Namespace= as written: "" (default: vethd's own
	// network namespace), a name (NamespacePath makes it /run/netns/NAME)
	// or an absolute path.
	Namespace string
	// BroadcastLimit is BroadcastLimit=: the storm limiter's frames a
	// second per class of broadcast/multicast frames towards the virtual
	// NIC; 0 is the default (DefaultBroadcastLimit), BroadcastLimitOff
	// is "off".
	BroadcastLimit int
	// DataPath is DataPath=: how frames move between the parent and the
	// virtual interface; "" is the kind's default (DefaultDataPath),
	// which a file does not pin. DataPathKernel needs Kind=veth
	// (CheckDataPath; Parse checks it).
	DataPath DataPath
}

// Storm limiter limits (BroadcastLimit=, --broadcast-limit): the default,
// as pkg/bridge's DefaultBroadcastLimit (internal/service checks the two
// agree when it compiles), the largest, and "off".
const (
	DefaultBroadcastLimit = 1000
	maxBroadcastLimit     = 1000000
	BroadcastLimitOff     = -1
)

// Kind is what the virtual interface is (Kind=).
type Kind string

const (
	KindTAP  Kind = "tap"  // a TAP interface, relayed through its descriptor
	KindVeth Kind = "veth" // one end of a veth pair, relayed through the other end
	// DefaultKind is the kind of a bridge whose file sets none.
	DefaultKind = KindTAP
)

// DataPath is how frames move between the parent and the virtual
// interface (DataPath=, --data-path), as pkg/bridge's DataPath of the
// same names (internal/service checks the two agree when it compiles).
type DataPath string

const (
	// DataPathRelay: vethd reads each frame from one side and writes it
	// to the other (both kinds).
	DataPathRelay DataPath = "relay"
	// DataPathKernel: for Kind=veth only, programs in the kernel (tc,
	// tcx) move the frames between the parent and the veth pair; vethd
	// relays instead, and says so, where the kernel does not allow it.
	DataPathKernel DataPath = "kernel"
)

// DefaultDataPath returns the data path of a bridge of kind k ("" is
// DefaultKind) whose file sets none: DataPathKernel for KindVeth,
// DataPathRelay for KindTAP, as pkg/bridge's DefaultDataPath
// (TestDefaultDataPathAgrees in internal/service keeps the two in step).
func DefaultDataPath(k Kind) DataPath {
	if k == KindVeth {
		return DataPathKernel
	}
	return DataPathRelay
}

// Source routing limits, as pkg/srcroute checks them (CheckTable,
// CheckPriority; a test in internal/service keeps the two in step): a
// table is 1…4294967295 but not the kernel's own 253, 254, 255; a
// priority is 1…32765 (0 is the local table's rule, 32766 main's).
const (
	DefaultRoutePriority = 32000
	maxRouteTable        = 1<<32 - 1
	maxRoutePriority     = 32765
)

// NetnsDir is where `ip netns` keeps named network namespaces.
const NetnsDir = "/run/netns"

// section is the one section a configuration file has.
const section = "Bridge"

// Key names, in the order Marshal writes them.
const (
	keyParent        = "Parent"
	keyMACAddress    = "MACAddress"
	keyMTU           = "MTU"
	keyCarrier       = "Carrier"
	keyARPIsolation  = "ARPIsolation"
	keySourceRouting = "SourceRouting"
	keyRouteTable    = "RouteTable"
	keyRoutePriority = "RoutePriority"
	keyKind          = "Kind"
	keyNamespace     = "Namespace"
	keyBroadcast     = "BroadcastLimit"
	keyDataPath      = "DataPath"
)

var knownKeys = []string{keyParent, keyMACAddress, keyMTU, keyCarrier, keyARPIsolation,
	keySourceRouting, keyRouteTable, keyRoutePriority, keyKind, keyNamespace, keyBroadcast, keyDataPath}

// MTU limits: the IPv4 minimum (RFC 791), the largest any kind takes
// (ParseMTU), and the largest of each kind (MaxMTU, which Parse checks):
// a TAP's is 65535 less its 14-byte Ethernet header (the tun driver's
// max_mtu, MAX_MTU - hard_header_len), a veth's the kernel's ETH_MAX_MTU.
// pkg/bridge's MaxMTU says the same (TestMTULimitsAgree in
// internal/service keeps the two in step).
const (
	minMTU     = 68
	maxMTU     = 65535
	MaxMTUTAP  = 65521
	MaxMTUVeth = 65535
)

// maxFileSize bounds what Parse reads; a real file is a few hundred bytes.
const maxFileSize = 1 << 20

// Error is a configuration error; it prints as "FILE:LINE: KEY=: MESSAGE"
// (":LINE" left out when Line is 0, "KEY=: " when Key is "").
type Error struct {
	File string // the file's path as given to Load or Parse
	Line int    // 1-based line of the section header or key; 0 if none
	Key  string // the key the error is about, without '='; "" if none
	Err  error
}

// Error returns "FILE:LINE: KEY=: MESSAGE".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File != "" {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString("=: ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error (ifname.ErrInvalid,
// macaddr.ErrInvalid, fs.ErrNotExist, …).
func (e *Error) Unwrap() error { return e.Err }

// Path returns the configuration file of the bridge named name in dir:
// dir/name.conf.
func Path(dir, name string) string {
	return filepath.Join(dir, name+".conf")
}

// Validate checks that name can name a bridge: it must be a valid interface
// name (ifname.Validate). Its errors wrap ifname.ErrInvalid.
func Validate(name string) error {
	return ifname.Validate(name)
}

// Names returns the sorted NAMEs of the files dir/NAME.conf: regular files
// and symbolic links to them, not directories, and not hidden files
// (".veth1.conf", an editor's or an admin's backup), which systemd ignores
// too. Names that are not valid interface names are listed, so that Load
// reports them. A missing dir is an empty list, not an error.
func Names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &Error{File: dir, Err: readHint(unwrapPath(err), dir, true)}
	}
	var names []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".conf")
		if !ok || name == "" || strings.HasPrefix(name, ".") {
			continue
		}
		switch t := e.Type(); {
		case t.IsRegular():
		case t&fs.ModeSymlink != 0:
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
		default:
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// Load reads the configuration file path. The bridge's name is the file's
// base name without ".conf". Every error is an *Error; one about the file
// itself (missing, unreadable, a bad name) has Line 0, and a missing file
// satisfies errors.Is(err, fs.ErrNotExist).
func Load(path string) (*Bridge, error) {
	name := strings.TrimSuffix(filepath.Base(path), ".conf")
	// O_NONBLOCK: a FIFO (or a device) must not hang the reader; it is
	// refused below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &Error{File: path, Err: readHint(unwrapPath(err), path, false)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, &Error{File: path, Err: unwrapPath(err)}
	} else if !fi.Mode().IsRegular() {
		return nil, &Error{File: path, Err: fmt.Errorf("not a regular file (%s)", fi.Mode().Type())}
	}
	return Parse(f, path, name)
}

// readHint adds to err, the error of reading path (a directory if dir),
// how to let vethd read it when that was refused (fs.ErrPermission): the
// shipped units run vethd as the system user vethd (dist/sysusers), not
// root. The hint quotes nothing of the file.
func readHint(err error, path string, dir bool) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	if dir {
		return fmt.Errorf("%w (vethd runs as the user vethd: give the directory mode 0755)", err)
	}
	return fmt.Errorf("%w (vethd runs as the user vethd: give the file mode 0644, or 0640 and the group vethd: chown root:vethd %s; its directory needs mode 0755)", err, path)
}

// unwrapPath turns an *fs.PathError into "OP: ERR", keeping ERR in the
// chain: Error prints the path already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// Parse reads the configuration of the bridge named name from r; path is
// the file name its errors give. Every error is an *Error.
//
// The last assignment of a key wins; an empty one (Key=) resets the key to
// its default. Every assignment is checked, also one a later one overrides.
func Parse(r io.Reader, path, name string) (*Bridge, error) {
	if err := Validate(name); err != nil {
		return nil, &Error{File: path, Err: fmt.Errorf("%w (a bridge is named after its file, NAME.conf)", err)}
	}
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Err: unwrapPath(err)}
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Err: fmt.Errorf("larger than %d bytes; is this a configuration file?", maxFileSize)}
	}
	// systemd skips a UTF-8 byte order mark; go-systemd would skip it only
	// before the first section, so drop it for both parsers.
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))

	sections, err := unit.DeserializeSections(bytes.NewReader(data))
	scanned, serr := scan(data)
	if err != nil {
		if serr != nil {
			serr.cause = err
			return nil, &Error{File: path, Line: serr.line, Err: serr}
		}
		// (go-systemd's message may quote the line.)
		return nil, &Error{File: path, Err: &publicText{err: err, pub: "syntax error (the journal has go-systemd's message)"}}
	}
	if serr != nil {
		return nil, &Error{File: path, Line: serr.line, Err: serr}
	}
	lines := lineMap(sections, scanned)

	b := &Bridge{Name: name, File: path}
	b.reset(keyMACAddress)
	b.reset(keyMTU)
	b.reset(keyCarrier)
	b.reset(keyARPIsolation)
	b.reset(keySourceRouting)
	parentLine, mtuLine, dataPathLine := 0, 0, 0
	for i, s := range sections {
		if s.Section != section {
			return nil, &Error{File: path, Line: lines.section(i),
				Err: &publicText{err: fmt.Errorf("unknown section %q; the only section is [%s]", "["+s.Section+"]", section),
					pub: fmt.Sprintf("unknown section; the only section is [%s]", section)}}
		}
		for j, e := range s.Entries {
			line := lines.entry(i, j)
			if err := b.set(e.Name, e.Value); err != nil {
				return nil, &Error{File: path, Line: line, Key: e.Name, Err: err}
			}
			switch e.Name {
			case keyParent:
				parentLine = line
			case keyMTU:
				mtuLine = line
			case keyDataPath:
				dataPathLine = line
			}
		}
	}
	if b.Parent == "" {
		return nil, &Error{File: path, Key: keyParent, Err: safe("missing; name the NIC whose wire is shared")}
	}
	if err := checkNotSelf(name, b.Parent); err != nil {
		return nil, &Error{File: path, Line: parentLine, Key: keyParent, Err: err}
	}
	if err := CheckMTU(b.Kind, b.MTU); err != nil {
		return nil, &Error{File: path, Line: mtuLine, Key: keyMTU, Err: err}
	}
	if err := CheckDataPath(b.Kind, b.DataPath); err != nil {
		return nil, &Error{File: path, Line: dataPathLine, Key: keyDataPath, Err: err}
	}
	return b, nil
}

// reset sets key to its default, as an empty assignment does.
func (b *Bridge) reset(key string) {
	switch key {
	case keyParent:
		b.Parent = ""
	case keyMACAddress:
		b.MACAddress, b.MAC = macaddr.Persistent.String(), macaddr.Policy{Kind: macaddr.Persistent}
	case keyMTU:
		b.MTU = 0
	case keyCarrier:
		b.Carrier = CarrierFollow
	case keyARPIsolation:
		b.NoARPIsolation = false
	case keySourceRouting:
		b.NoSourceRouting = false
	case keyRouteTable:
		b.RouteTable = 0
	case keyRoutePriority:
		b.RoutePriority = 0
	case keyKind:
		b.Kind = ""
	case keyNamespace:
		b.Namespace = ""
	case keyBroadcast:
		b.BroadcastLimit = 0
	case keyDataPath:
		b.DataPath = ""
	}
}

// set applies the assignment key=raw, raw as go-systemd returns it.
func (b *Bridge) set(key, raw string) error {
	if key == "" {
		return errors.New("line begins with '=': no key is named")
	}
	if !slices.Contains(knownKeys, key) {
		return unknownKey(key)
	}
	v := value(raw)
	if v == "" {
		b.reset(key)
		return nil
	}
	if err := checkValue(key, v); err != nil {
		return err
	}
	switch key {
	case keyParent:
		if err := ifname.Validate(v); err != nil {
			return withHint(err, v)
		}
		b.Parent = v
	case keyMACAddress:
		p, err := macaddr.Parse(v)
		if err != nil {
			return withHint(err, v)
		}
		b.MACAddress, b.MAC = v, p
	case keyMTU:
		n, err := ParseMTU(v)
		if err != nil {
			return withHint(err, v)
		}
		b.MTU = n
	case keyCarrier:
		c, err := ParseCarrier(v)
		if err != nil {
			return withHint(err, v)
		}
		b.Carrier = c
	case keyARPIsolation:
		on, err := ParseBoolean(v)
		if err != nil {
			return withHint(err, v)
		}
		b.NoARPIsolation = !on
	case keySourceRouting:
		on, err := ParseBoolean(v)
		if err != nil {
			return withHint(err, v)
		}
		b.NoSourceRouting = !on
	case keyRouteTable:
		n, err := ParseRouteTable(v)
		if err != nil {
			return withHint(err, v)
		}
		b.RouteTable = n
	case keyRoutePriority:
		n, err := ParseRoutePriority(v)
		if err != nil {
			return withHint(err, v)
		}
		b.RoutePriority = n
	case keyKind:
		k, err := ParseKind(v)
		if err != nil {
			return withHint(err, v)
		}
		b.Kind = k
	case keyNamespace:
		if _, err := NamespacePath(v); err != nil {
			return withHint(err, v)
		}
		b.Namespace = v
	case keyBroadcast:
		n, err := ParseBroadcastLimit(v)
		if err != nil {
			return withHint(err, v)
		}
		b.BroadcastLimit = n
	case keyDataPath:
		dp, err := ParseDataPath(v)
		if err != nil {
			return withHint(err, v)
		}
		b.DataPath = dp
	}
	return nil
}

// ParseBroadcastLimit reads the value of BroadcastLimit= (and
// --broadcast-limit): "off" in any case (BroadcastLimitOff: no storm
// limiter) or a decimal number of frames a second from 1 to 1000000,
// the limit of each class of broadcast/multicast frames (ARP, ICMPv6
// neighbour discovery, DHCP, other) towards the virtual NIC.
func ParseBroadcastLimit(v string) (int, error) {
	if strings.EqualFold(v, "off") {
		return BroadcastLimitOff, nil
	}
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, badValue(v, "is not a number of frames a second or \"off\"")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxBroadcastLimit {
		return 0, badNumber(v, "is out of range: a broadcast limit is 1 to %d frames a second, or \"off\"", maxBroadcastLimit)
	}
	return n, nil
}

// ParseRouteTable reads the value of RouteTable= (and --route-table):
// "auto" in any case (0: the table derived from the interface's name) or a
// decimal number from 1 to 4294967295 other than 253, 254 and 255, the
// kernel's default, main and local tables.
func ParseRouteTable(v string) (int, error) {
	if strings.EqualFold(v, "auto") {
		return 0, nil
	}
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, badValue(v, "is not a number or \"auto\"")
	}
	n, err := strconv.ParseUint(v, 10, 64)
	switch {
	case err != nil || n < 1 || n > maxRouteTable:
		return 0, badNumber(v, "is out of range: a routing table is 1 to %d, or \"auto\"", uint64(maxRouteTable))
	case n >= 253 && n <= 255:
		return 0, badNumber(v, "is one of the kernel's own tables (253 default, 254 main, 255 local); pick another, or \"auto\"")
	}
	return int(n), nil
}

// ParseRoutePriority reads the value of RoutePriority= (and
// --route-priority): a decimal number from 1 to 32765, so that the rules
// come after the local table's (0) and before the main table's (32766).
func ParseRoutePriority(v string) (int, error) {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, badValue(v, "is not a number")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxRoutePriority {
		return 0, badNumber(v, "is out of range: a rule priority is 1 to %d (0 is the local table's rule, 32766 the main table's)", maxRoutePriority)
	}
	return n, nil
}

// ParseKind reads the value of Kind= (and --kind): tap or veth, in any case.
func ParseKind(v string) (Kind, error) {
	switch {
	case strings.EqualFold(v, string(KindTAP)):
		return KindTAP, nil
	case strings.EqualFold(v, string(KindVeth)):
		return KindVeth, nil
	}
	return "", badValue(v, "is not %s or %s", KindTAP, KindVeth)
}

// ParseDataPath reads the value of DataPath= (and --data-path): relay or
// kernel, in any case. CheckDataPath checks it against a kind (Parse
// does).
func ParseDataPath(v string) (DataPath, error) {
	switch {
	case strings.EqualFold(v, string(DataPathRelay)):
		return DataPathRelay, nil
	case strings.EqualFold(v, string(DataPathKernel)):
		return DataPathKernel, nil
	}
	return "", badValue(v, "is not %s or %s", DataPathRelay, DataPathKernel)
}

// CheckDataPath checks the data path dp ("" is the kind's default,
// DefaultDataPath) against the kind k ("" is DefaultKind):
// DataPathKernel is for KindVeth only.
// Its error is a *ValueError. Parse checks DataPath= against Kind= with
// it, and so do vethd's --data-path --kind and vethctl add.
func CheckDataPath(k Kind, dp DataPath) error {
	if dp != DataPathKernel || k == KindVeth {
		return nil
	}
	kind := "Kind=" + string(k)
	if k == "" {
		kind = "Kind=" + string(DefaultKind) + ", the default"
	}
	return badNumber(string(dp), "is for Kind=veth only (this bridge is %s): a TAP's frames pass through vethd", kind)
}

// NamespacePath returns the path of the network namespace that
// Namespace= (and --netns) names: a name as `ip netns` takes it (not
// empty, no '/', not "." or "..", at most 255 bytes) is NetnsDir/NAME; an
// absolute path (/proc/PID/ns/net, /run/netns/x) is itself, cleaned. ""
// is "" (vethd's own namespace).
func NamespacePath(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if err := checkValue(keyNamespace, v); err != nil {
		return "", err
	}
	if strings.HasPrefix(v, "/") {
		p := filepath.Clean(v)
		if p == "/" {
			return "", badValue(v, "is a directory, not a network namespace file")
		}
		return p, nil
	}
	switch {
	case strings.Contains(v, "/"):
		return "", badValue(v, "is neither a name (as ip netns takes it: no '/') nor an absolute path")
	case v == "." || v == "..":
		return "", badValue(v, "is not a valid network namespace name")
	case len(v) > 255:
		return "", badValue(v, "is longer than 255 bytes, too long for a network namespace name")
	case strings.ContainsAny(v, " \t"):
		return "", badValue(v, "holds white space; ip netns names have none")
	}
	return filepath.Join(NetnsDir, v), nil
}

// CheckParent checks parent as the Parent= of the bridge named name, as
// Parse does: a value a file can hold (see checkValue), a valid interface
// name (ifname.Validate; its errors wrap ifname.ErrInvalid), and not the
// bridge itself.
func CheckParent(name, parent string) error {
	if err := checkValue(keyParent, parent); err != nil {
		return err
	}
	if err := ifname.Validate(parent); err != nil {
		return err
	}
	return checkNotSelf(name, parent)
}

// checkNotSelf fails if parent is the bridge name itself.
func checkNotSelf(name, parent string) error {
	if parent == name {
		return badValue(parent, "is the bridge itself; name the NIC whose wire is shared")
	}
	return nil
}

// ParseMTU reads the value of MTU=: "inherit" in any case (0: follow the
// parent) or a decimal number from 68 to 65535, the largest of any kind;
// CheckMTU checks it against a kind (Parse does).
func ParseMTU(v string) (int, error) {
	if strings.EqualFold(v, "inherit") {
		return 0, nil
	}
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, badValue(v, "is not a number or \"inherit\"")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minMTU || n > maxMTU {
		return 0, badNumber(v, "is out of range: an MTU is %d to %d, or \"inherit\"", minMTU, maxMTU)
	}
	return n, nil
}

// MaxMTU returns the largest MTU an interface of kind k takes ("" is
// DefaultKind): MaxMTUTAP or MaxMTUVeth.
func MaxMTU(k Kind) int {
	if k == "" {
		k = DefaultKind
	}
	if k == KindVeth {
		return MaxMTUVeth
	}
	return MaxMTUTAP
}

// CheckMTU checks mtu (0: inherit) against what an interface of kind k
// takes (MaxMTU); its error, a *ValueError, names the maximum. Parse
// checks MTU= against Kind= with it, and so may a tool that writes a file
// (vethctl add --mtu --kind).
func CheckMTU(k Kind, mtu int) error {
	if mtu == 0 || mtu <= MaxMTU(k) {
		return nil
	}
	if k == "" {
		k = DefaultKind
	}
	other := KindVeth
	if k == KindVeth {
		other = KindTAP
	}
	return badNumber(strconv.Itoa(mtu), "is above what an interface of Kind=%s takes: at most %d (Kind=%s: %d)",
		k, MaxMTU(k), other, MaxMTU(other))
}

// ParseCarrier reads the value of Carrier=: follow or on, in any case.
func ParseCarrier(v string) (Carrier, error) {
	switch {
	case strings.EqualFold(v, string(CarrierFollow)):
		return CarrierFollow, nil
	case strings.EqualFold(v, string(CarrierOn)):
		return CarrierOn, nil
	}
	return "", badValue(v, "is not %s or %s", CarrierFollow, CarrierOn)
}

// ParseBoolean reads a yes/no value (ARPIsolation=, vethd's
// --arp-isolation) as systemd reads booleans: 1, yes, y, true, t or on;
// 0, no, n, false, f or off; in any case.
func ParseBoolean(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, badValue(v, "is not yes or no")
}

// value turns a value as go-systemd returns it into what systemd reads:
// go-systemd keeps the backslash-newline of a continued line, systemd
// replaces the backslash with a space and joins the lines, leaving out
// comment lines in between. The result is trimmed.
func value(raw string) string {
	if !strings.Contains(raw, "\n") && !strings.HasSuffix(raw, `\`) {
		return strings.TrimSpace(raw)
	}
	var b strings.Builder
	for i, seg := range strings.Split(raw, "\n") {
		if i > 0 {
			if t := strings.TrimLeftFunc(seg, unicode.IsSpace); t != "" && (t[0] == '#' || t[0] == ';') {
				continue
			}
		}
		if s, ok := strings.CutSuffix(seg, `\`); ok {
			seg = s + " "
		}
		b.WriteString(seg)
	}
	return strings.TrimSpace(b.String())
}

// checkValue rejects, in the value v of key, what no value may hold:
// control characters; backslashes, which no setting needs and which would
// continue a line when the value is written back; quotes around it
// (unit-file syntax has none); and white space at either end, which
// Parse would trim (a value Parse reads is trimmed already).
func checkValue(key, v string) error {
	for _, r := range v {
		switch {
		case r == '\\':
			return badValue(v, "holds a backslash; no setting takes one (a backslash at the end of a line continues the value on the next line)")
		case r != '\t' && unicode.IsControl(r):
			return badValue(v, "holds a control character")
		}
	}
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return &ValueError{Shown: printable(v), Problem: "is quoted; values are written without quotes", Detail: fmt.Sprintf(" (%s=%s)", key, printable(v[1:len(v)-1]))}
	}
	if strings.TrimSpace(v) != v {
		return badValue(v, "begins or ends with white space")
	}
	return nil
}

// Marshal returns the configuration as file text: a comment header and the
// [Bridge] section with every key whose default a file pins (the routing
// table and priority, Kind, Namespace, BroadcastLimit and DataPath only
// when set). Parse reads it back to the same Bridge (with the same path
// and name). MACAddress is written as it was read; if it is empty, MAC is
// written.
func (b *Bridge) Marshal() []byte {
	mac := b.MACAddress
	if mac == "" {
		mac = b.MAC.String()
	}
	mtu := "inherit"
	if b.MTU != 0 {
		mtu = strconv.Itoa(b.MTU)
	}
	carrier := b.Carrier
	if carrier == "" {
		carrier = CarrierFollow
	}
	arp := "yes"
	if b.NoARPIsolation {
		arp = "no"
	}
	srcRouting := "yes"
	if b.NoSourceRouting {
		srcRouting = "no"
	}

	var buf bytes.Buffer
	if Validate(b.Name) == nil {
		fmt.Fprintf(&buf, "# vethd bridge %s: read by \"vethd --instance %s\", \"vethd --all\"\n", b.Name, b.Name)
		fmt.Fprintf(&buf, "# and vethd@%s.service; apply changes with \"systemctl reload vethd@%s\".\n", b.Name, b.Name)
	} else {
		buf.WriteString("# vethd bridge configuration.\n")
	}
	buf.WriteString("# See vethd.conf(5). Comments go on lines of their own.\n")
	buf.WriteString("#   Parent=      the NIC whose wire is shared\n")
	buf.WriteString("#   MACAddress=  persistent | random | an address like 02:00:5e:10:00:01\n")
	fmt.Fprintf(&buf, "#   MTU=         inherit | %d..%d (Kind=veth: ..%d)\n", minMTU, MaxMTUTAP, MaxMTUVeth)
	fmt.Fprintf(&buf, "#   Carrier=     %s | %s\n", CarrierFollow, CarrierOn)
	buf.WriteString("#   ARPIsolation= yes | no (no: leave the parent's arp_ignore, arp_announce alone)\n")
	buf.WriteString("#   SourceRouting= yes | no (no: no source rules, no routing table)\n")
	buf.WriteString("#   RouteTable=  auto | 1..4294967295; RoutePriority= 1..32765 (default 32000)\n")
	buf.WriteString("#   Kind=        tap | veth; Namespace= a name under /run/netns or an absolute path\n")
	fmt.Fprintf(&buf, "#   BroadcastLimit= 1..%d frames/s per class (default %d) | off\n", maxBroadcastLimit, DefaultBroadcastLimit)
	fmt.Fprintf(&buf, "#   DataPath=    %s | %s (Kind=veth only: frames move inside the kernel; its default)\n", DataPathRelay, DataPathKernel)
	opts := []*unit.UnitOption{
		unit.NewUnitOption(section, keyParent, b.Parent),
		unit.NewUnitOption(section, keyMACAddress, mac),
		unit.NewUnitOption(section, keyMTU, mtu),
		unit.NewUnitOption(section, keyCarrier, string(carrier)),
		unit.NewUnitOption(section, keyARPIsolation, arp),
		unit.NewUnitOption(section, keySourceRouting, srcRouting),
	}
	// The keys below are written only when set: a file that does not pin
	// them follows the defaults of the vethd that reads it.
	if b.RouteTable != 0 {
		opts = append(opts, unit.NewUnitOption(section, keyRouteTable, strconv.Itoa(b.RouteTable)))
	}
	if b.RoutePriority != 0 {
		opts = append(opts, unit.NewUnitOption(section, keyRoutePriority, strconv.Itoa(b.RoutePriority)))
	}
	if b.Kind != "" {
		opts = append(opts, unit.NewUnitOption(section, keyKind, string(b.Kind)))
	}
	if b.Namespace != "" {
		opts = append(opts, unit.NewUnitOption(section, keyNamespace, b.Namespace))
	}
	switch {
	case b.BroadcastLimit < 0:
		opts = append(opts, unit.NewUnitOption(section, keyBroadcast, "off"))
	case b.BroadcastLimit > 0:
		opts = append(opts, unit.NewUnitOption(section, keyBroadcast, strconv.Itoa(b.BroadcastLimit)))
	}
	if b.DataPath != "" {
		opts = append(opts, unit.NewUnitOption(section, keyDataPath, string(b.DataPath)))
	}
	_, _ = io.Copy(&buf, unit.Serialize(opts))
	return buf.Bytes()
}

// printable returns v as it is if it is valid UTF-8 of printable
// characters, else quoted (%q): an error shows a value so that it cannot
// garble a terminal or a log line.
func printable(v string) string {
	if utf8.ValidString(v) && !strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return v
	}
	return strconv.Quote(v)
}
