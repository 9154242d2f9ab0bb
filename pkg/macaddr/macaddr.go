// Package macaddr chooses the virtual interface's MAC address: persistent
// (derived from the machine ID and the interface name), random, or explicit.
package macaddr

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Kind is how a Policy produces an address.
type Kind int

const (
	// Persistent derives the address from /etc/machine-id and the interface name.
	Persistent Kind = iota
	// Random draws a new locally-administered address at each start.
	Random
	// Explicit uses the address given.
	Explicit
)

// String returns the policy keyword: persistent, random or explicit.
func (k Kind) String() string {
	switch k {
	case Persistent:
		return "persistent"
	case Random:
		return "random"
	default:
		return "explicit"
	}
}

// DefaultMachineIDFile is where the machine ID is read from.
const DefaultMachineIDFile = "/etc/machine-id"

// Policy is a parsed MAC address policy.
type Policy struct {
	Kind Kind
	// Addr is the address of an Explicit policy.
	Addr net.HardwareAddr
	// Warning, if not empty, is a remark to log about an accepted address
	// (a universally-administered one).
	Warning string
}

// String returns the policy as it is written in configuration.
func (p Policy) String() string {
	if p.Kind == Explicit {
		return p.Addr.String()
	}
	return p.Kind.String()
}

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("invalid MAC address")

// Parse reads a policy: "persistent" (or ""), "random", or an address in
// colon or dash notation (aa:bb:cc:dd:ee:ff). An explicit address is rejected
// if it is multicast (or broadcast) or all-zero; a universally-administered
// one is accepted with a Warning.
func Parse(s string) (Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "persistent":
		return Policy{Kind: Persistent}, nil
	case "random":
		return Policy{Kind: Random}, nil
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return Policy{}, fmt.Errorf("%w %q: want persistent, random or six hex bytes like 02:00:5e:10:00:01", ErrInvalid, s)
	}
	if hw[0]&0x01 != 0 {
		return Policy{}, fmt.Errorf("%w %s: it is a multicast address (lowest bit of the first byte set); an interface needs a unicast one", ErrInvalid, hw)
	}
	if bytes.Equal(hw, make(net.HardwareAddr, 6)) {
		return Policy{}, fmt.Errorf("%w %s: the all-zero address is not usable", ErrInvalid, hw)
	}
	p := Policy{Kind: Explicit, Addr: hw}
	if hw[0]&0x02 == 0 {
		p.Warning = fmt.Sprintf("%s is a universally-administered (vendor-assigned) address; if a real card has it, both will misbehave — prefer a locally-administered one (second-lowest bit of the first byte set, e.g. 02:…)", hw)
	}
	return p, nil
}

// Resolve returns the address the policy gives the interface named name.
// machineIDFile is read only by a Persistent policy.
func (p Policy) Resolve(name, machineIDFile string) (net.HardwareAddr, error) {
	switch p.Kind {
	case Explicit:
		return p.Addr, nil
	case Random:
		return RandomAddr()
	default:
		id, err := ReadMachineID(machineIDFile)
		if err != nil {
			return nil, err
		}
		return PersistentAddr(id, name), nil
	}
}

// maxMachineIDSize bounds what ReadMachineID reads: a machine ID is 33
// bytes, so anything larger is not one (and /dev/zero must not be read
// without end).
const maxMachineIDSize = 4096

// ReadMachineID reads and decodes a machine-id(5) file: 32 lowercase hex
// digits and a newline. It refuses a path that is not a regular file (a
// device, a FIFO, a directory) and one larger than maxMachineIDSize.
func ReadMachineID(path string) ([]byte, error) {
	const what = "read machine id (needed for a persistent MAC; use --mac random or an address instead)"
	b, err := readBounded(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	id, err := hex.DecodeString(s)
	if err != nil || len(id) != 16 {
		return nil, fmt.Errorf("%s: %s does not hold 32 hex digits", what, path)
	}
	if bytes.Equal(id, make([]byte, 16)) {
		return nil, fmt.Errorf("%s: %s is all zeros (uninitialized)", what, path)
	}
	return id, nil
}

// readBounded reads the regular file at path, at most maxMachineIDSize
// bytes. It opens with O_NONBLOCK so that a FIFO does not block the open.
func readBounded(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fileType(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxMachineIDSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMachineIDSize {
		return nil, fmt.Errorf("%s is larger than %d bytes (a machine ID is 33)", path, maxMachineIDSize)
	}
	return b, nil
}

// fileType names a non-regular file's type for an error.
func fileType(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "type " + m.Type().String()
}

// persistentKey is the HMAC message prefix: it keeps vethd's addresses apart
// from any other value derived from the same machine ID.
const persistentKey = "io.github.vethd.mac.v1:"

// PersistentAddr derives the persistent address of interface name on the
// machine whose 16-byte ID is machineID:
//
//	h   = HMAC-SHA256(key = machineID, message = "io.github.vethd.mac.v1:" + name)
//	mac = h[0:6], then mac[0] &^= 0x01 (unicast), mac[0] |= 0x02 (locally administered)
//
// The machine ID is the key, so the address does not reveal it; the same
// machine and name always give the same address.
func PersistentAddr(machineID []byte, name string) net.HardwareAddr {
	m := hmac.New(sha256.New, machineID)
	m.Write([]byte(persistentKey + name))
	sum := m.Sum(nil)
	hw := net.HardwareAddr(sum[:6])
	hw[0] = hw[0]&^0x01 | 0x02
	return hw
}

// RandomAddr returns a random locally-administered unicast address.
func RandomAddr() (net.HardwareAddr, error) {
	hw := make(net.HardwareAddr, 6)
	if _, err := rand.Read(hw); err != nil {
		return nil, fmt.Errorf("random mac: %w", err)
	}
	hw[0] = hw[0]&^0x01 | 0x02
	return hw, nil
}
