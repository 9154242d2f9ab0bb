package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// etherExperimental is IEEE 802's "local experimental" ethertype 1: no
// stack in the namespaces reacts to it.
const etherExperimental = 0x88b5

// markerPrefix starts the payload of every frame the filter tests send;
// the kind and a sequence number follow: "VETHD-IT:kind:seq;".
var markerPrefix = []byte("VETHD-IT:")

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetConn is an AF_PACKET/SOCK_RAW socket bound to one interface of a
// namespace.
type packetConn struct {
	fd      int
	ifindex int
	name    string
}

// openPacket opens a packet socket inside ns, bound to ifname. proto is
// the ethertype to receive (unix.ETH_P_ALL for everything), or 0 for a
// socket that only sends. Receiving sockets get a large buffer, aux data
// (VLAN tags) and a 100 ms receive timeout.
func openPacket(t *testing.T, ns *Netns, ifname string, proto uint16) *packetConn {
	t.Helper()
	c := &packetConn{fd: -1, name: ifname}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.ifindex = ifi.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		c.fd = fd
		if proto != 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
				return fmt.Errorf("SO_RCVBUFFORCE: %w", err)
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
				return fmt.Errorf("PACKET_AUXDATA: %w", err)
			}
			tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return fmt.Errorf("SO_RCVTIMEO: %w", err)
			}
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index})
	})
	if c.fd >= 0 {
		t.Cleanup(func() { unix.Close(c.fd) })
	}
	if err != nil {
		t.Fatalf("packet socket on %s in %s: %v", ifname, ns.Name, err)
	}
	return c
}

// send transmits a complete Ethernet frame.
func (c *packetConn) send(frame []byte) error {
	et := binary.BigEndian.Uint16(frame[12:14])
	return unix.Sendto(c.fd, frame, 0, &unix.SockaddrLinklayer{
		Ifindex:  c.ifindex,
		Protocol: htons(et),
		Halen:    6,
		Addr:     [8]byte{frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]},
	})
}

// rxFrame is one received frame.
type rxFrame struct {
	data    []byte
	pkttype uint8
	vlan    bool // the kernel took a VLAN tag off the frame (aux data)
}

// recv reads one frame; it returns unix.EAGAIN after the receive timeout.
func (c *packetConn) recv(buf, oob []byte) (rxFrame, error) {
	n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
	if err != nil {
		return rxFrame{}, err
	}
	f := rxFrame{data: buf[:n]}
	if sll, ok := from.(*unix.SockaddrLinklayer); ok {
		f.pkttype = sll.Pkttype
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		// struct tpacket_auxdata: status u32, len u32, snaplen u32,
		// mac u16, net u16, vlan_tci u16, vlan_tpid u16.
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
			f.vlan = binary.NativeEndian.Uint32(m.Data[0:4])&unix.TP_STATUS_VLAN_VALID != 0
		}
	}
	return f, nil
}

// frameCounter counts, per marker kind, the frames received on a packet
// socket (outgoing ones excluded), in a goroutine, until stop is called.
type frameCounter struct {
	c        *packetConn
	mu       sync.Mutex
	counts   map[string]int
	vlan     map[string]int    // of those, how many carried a VLAN tag
	first    map[string][]byte // first frame of each kind, verbatim
	stopping atomic.Bool
	done     chan struct{}
}

func newFrameCounter(c *packetConn) *frameCounter {
	fc := &frameCounter{c: c, counts: map[string]int{}, vlan: map[string]int{},
		first: map[string][]byte{}, done: make(chan struct{})}
	go fc.loop()
	return fc
}

func (fc *frameCounter) loop() {
	defer close(fc.done)
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for !fc.stopping.Load() {
		f, err := fc.c.recv(buf, oob)
		if err != nil {
			continue // timeout (or EINTR): look at stopping again
		}
		if f.pkttype == unix.PACKET_OUTGOING {
			continue
		}
		i := bytes.Index(f.data, markerPrefix)
		if i < 0 {
			continue
		}
		rest := f.data[i+len(markerPrefix):]
		j := bytes.IndexByte(rest, ':')
		if j < 0 {
			continue
		}
		kind := string(rest[:j])
		fc.mu.Lock()
		fc.counts[kind]++
		if f.vlan {
			fc.vlan[kind]++
		}
		if fc.first[kind] == nil {
			fc.first[kind] = bytes.Clone(f.data)
		}
		fc.mu.Unlock()
	}
}

// count returns how many frames of kind have been seen.
func (fc *frameCounter) count(kind string) int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.counts[kind]
}

// snapshot returns a copy of all counts (for messages).
func (fc *frameCounter) snapshot() map[string]int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	m := map[string]int{}
	for k, v := range fc.counts {
		m[k] = v
	}
	return m
}

func (fc *frameCounter) stop() {
	fc.stopping.Store(true)
	<-fc.done
}

// markedFrame builds dst|src|ethertype|marker, padded to the 60-byte
// minimum. With vid > 0 an 802.1Q tag (TPID 0x8100) goes before the
// ethertype.
func markedFrame(dst, src net.HardwareAddr, vid uint16, kind string, seq int) []byte {
	f := make([]byte, 0, 128)
	f = append(f, dst...)
	f = append(f, src...)
	if vid > 0 {
		f = binary.BigEndian.AppendUint16(f, 0x8100)
		f = binary.BigEndian.AppendUint16(f, vid&0x0fff)
	}
	f = binary.BigEndian.AppendUint16(f, etherExperimental)
	f = append(f, markerPrefix...)
	f = append(f, fmt.Sprintf("%s:%d;", kind, seq)...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}
