package dbusapi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
)

// Bounds on what vethd's own bus connection reads. godbus reads every
// message whole (body, then each string argument copied again, with a
// reused buffer as large as the largest header seen) and handles every
// method call in a goroutine of its own, however many arrive; the system
// bus passes messages of up to 32 MiB from anyone (Properties.Get is open
// to all, and anyone may send a signal to any connection). So the
// connection is read through a limitConn, which parses each message's
// fixed header and skips a message larger than MaxMessage before any of it
// is copied: 64 KiB at most is buffered, whatever arrives.
const (
	// MaxMessage is the largest message (header and body) vethd reads.
	// Every call vethd serves and every reply it waits for is a few
	// hundred bytes.
	MaxMessage = 64 << 10
	// MaxPath is the longest object path of a method call vethd reads
	// (godbus quotes the path in its "No such object" error); vethd's own
	// paths are shorter than 100 bytes.
	MaxPath = 255

	// MaxInFlight is how many method calls vethd has read and not yet
	// answered (the answer written to the socket) before it reads no
	// further method calls (for up to inFlightWait each): godbus runs each
	// call in a goroutine of its own, and while the bus daemon is slow to
	// take the replies they would pile up without end.
	MaxInFlight = 64
	// inFlightWait is how long a method call waits for a slot before it is
	// read all the same: a call whose handler waits for a reply from the
	// bus (Reload asks who the caller is) cannot wait for good for a slot
	// that the reply behind it would free.
	inFlightWait = time.Second

	// ErrorLimitsExceeded is the D-Bus error name of a refused message.
	ErrorLimitsExceeded = "org.freedesktop.DBus.Error.LimitsExceeded"

	// refusePath, refuseIface and refuseMember are the method a refused
	// method call is replaced by, on this connection only: its handler
	// answers LimitsExceeded.
	refusePath   = dbus.ObjectPath("/io/github/vethd/Limit")
	refuseIface  = "io.github.vethd.Limit"
	refuseMember = "Refuse"
)

// The D-Bus header fields limitConn reads (D-Bus specification, "Header
// Fields").
const (
	fieldPath        = 1
	fieldReplySerial = 5
	fieldDestination = 6
	fieldSender      = 7
)

// The message types of the D-Bus wire format.
const (
	typeMethodCall   = 1
	typeMethodReturn = 2
	typeError        = 3
)

// systemBusPaths are where the system bus listens unless
// DBUS_SYSTEM_BUS_ADDRESS says otherwise.
var systemBusPaths = []string{"/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket"}

// ConnectSystemBus connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS,
// or its socket in /run/dbus) like dbus.ConnectSystemBus, but reads the
// connection through a limitConn: a message larger than MaxMessage, or a
// method call to a path longer than MaxPath, is skipped unread; a method
// call so refused gets the error LimitsExceeded, a reply so refused fails
// the call it answers, a signal is dropped. Only unix: addresses are
// supported.
func ConnectSystemBus() (*dbus.Conn, error) {
	addr := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	if addr == "" {
		for _, p := range systemBusPaths {
			if _, err := os.Stat(p); err == nil {
				addr = "unix:path=" + p
				break
			}
		}
		if addr == "" {
			return nil, errors.New("system bus not found")
		}
	}
	sock, err := unixSocket(addr)
	if err != nil {
		return nil, err
	}
	nc, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	conn, err := dbus.NewConn(newLimitConn(nc))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	if err := conn.Export(refuser{}, refusePath, refuseIface); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	if err := conn.Auth(nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	return conn, nil
}

// unixSocket returns the socket of the first unix: address in the D-Bus
// address list addr ("@name" for an abstract one).
func unixSocket(addr string) (string, error) {
	for _, a := range strings.Split(addr, ";") {
		keys, ok := strings.CutPrefix(a, "unix:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(keys, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v, err := url.PathUnescape(v)
			if err != nil || v == "" {
				continue
			}
			switch k {
			case "path":
				return v, nil
			case "abstract":
				return "@" + v, nil
			}
		}
	}
	return "", fmt.Errorf("system bus address %s: no unix:path= or unix:abstract=", quoteArg(addr))
}

// refuser answers the method calls limitConn refused.
type refuser struct{}

// Refuse is io.github.vethd.Limit.Refuse: size is the refused message's.
func (refuser) Refuse(size uint64) *dbus.Error {
	return dbus.NewError(ErrorLimitsExceeded, []any{fmt.Sprintf(
		"message refused: %d bytes, or an object path over %d bytes (vethd reads messages of at most %d bytes)",
		size, MaxPath, MaxMessage)})
}

// limitConn is a bus connection's socket as godbus reads it: until the
// authentication ends (godbus writes BEGIN) the bytes pass through; after,
// Read hands out whole messages that are within the bounds (MaxMessage,
// MaxPath) and replacements for the others, which it skips without
// buffering them, and holds back method calls while MaxInFlight are
// unanswered. Read runs on godbus's reading goroutine alone (rd, fixed,
// msg, off), Write on its writers (serialized by godbus); framed and
// calls are shared.
type limitConn struct {
	net.Conn
	rd     *bufio.Reader // the socket, buffered
	framed atomic.Bool   // BEGIN was written: messages follow
	fixed  [16]byte      // a message's fixed header
	msg    []byte        // the message being handed out; at most MaxMessage bytes
	off    int           // how much of msg Read has handed out

	// calls counts the method calls handed to godbus and not yet
	// answered. godbus answers every call (Read clears NoReplyExpected)
	// and Write swallows the answers to those that wanted none, so every
	// call is one answer written.
	calls struct {
		sync.Mutex
		n       int
		freed   chan struct{}    // closed (and replaced) when n goes down
		noReply map[callKey]bool // calls that wanted no reply
	}
}

// callKey names a method call: its sender and serial.
type callKey struct {
	sender string
	serial uint32
}

func newLimitConn(c net.Conn) *limitConn {
	l := &limitConn{Conn: c, rd: bufio.NewReaderSize(c, MaxMessage)}
	l.calls.freed = make(chan struct{})
	l.calls.noReply = map[callKey]bool{}
	return l
}

var begin = []byte("BEGIN\r\n")

// Write writes p to the socket; the authentication's BEGIN switches Read
// to messages. godbus writes each message with one Write. An answer to a
// call is counted off once written, or swallowed if the call wanted none.
func (c *limitConn) Write(p []byte) (int, error) {
	if !c.framed.Load() {
		if bytes.Equal(p, begin) {
			c.framed.Store(true)
		}
		return c.Conn.Write(p)
	}
	if len(p) < 16 || (p[1] != typeMethodReturn && p[1] != typeError) {
		return c.Conn.Write(p)
	}
	var h header
	if order := byteOrder(p[0]); order != nil {
		if hdrLen := uint64(order.Uint32(p[12:])); 16+hdrLen <= uint64(len(p)) {
			_ = h.scan(bytes.NewReader(p[16:16+hdrLen]), order, hdrLen) // from memory: no read error
		}
	}
	defer c.answered()
	key := callKey{h.dest, h.replySerial}
	c.calls.Lock()
	swallow := c.calls.noReply[key]
	delete(c.calls.noReply, key)
	c.calls.Unlock()
	if swallow {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// answered counts one call off.
func (c *limitConn) answered() {
	c.calls.Lock()
	defer c.calls.Unlock()
	if c.calls.n > 0 {
		c.calls.n--
	}
	close(c.calls.freed)
	c.calls.freed = make(chan struct{})
}

// call counts a method call about to be handed to godbus, waiting (at
// most inFlightWait) while MaxInFlight are unanswered. A call that wanted
// no reply gets one (its flag cleared in msg) that Write swallows.
func (c *limitConn) call(sender string, serial uint32) {
	deadline := time.Now().Add(inFlightWait)
	c.calls.Lock()
	for c.calls.n >= MaxInFlight {
		freed := c.calls.freed
		c.calls.Unlock()
		wait := time.Until(deadline)
		if wait <= 0 {
			c.calls.Lock()
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-freed:
		case <-t.C:
		}
		t.Stop()
		c.calls.Lock()
	}
	c.calls.n++
	if c.msg[2]&byte(dbus.FlagNoReplyExpected) != 0 {
		c.msg[2] &^= byte(dbus.FlagNoReplyExpected)
		c.calls.noReply[callKey{sender, serial}] = true
	}
	c.calls.Unlock()
}

func byteOrder(b byte) binary.ByteOrder {
	switch b {
	case 'l':
		return binary.LittleEndian
	case 'B':
		return binary.BigEndian
	}
	return nil
}

// Read reads from the socket: the authentication's lines as they come,
// then messages within the bounds.
func (c *limitConn) Read(p []byte) (int, error) {
	if !c.framed.Load() {
		return c.rd.Read(p)
	}
	for c.off == len(c.msg) {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.msg[c.off:])
	c.off += n
	return n, nil
}

// next reads the next message into msg: as it is if within the bounds,
// else replaced (refusal) or nothing (a refused signal: msg stays empty).
// An error is the socket's or a stream that is not D-Bus messages.
func (c *limitConn) next() error {
	c.msg, c.off = c.msg[:0], 0
	if _, err := io.ReadFull(c.rd, c.fixed[:]); err != nil {
		return err
	}
	order := byteOrder(c.fixed[0])
	if order == nil {
		return errors.New("dbus: invalid byte order: not a D-Bus message stream")
	}
	typ, flags := c.fixed[1], c.fixed[2]
	bodyLen := uint64(order.Uint32(c.fixed[4:]))
	serial := order.Uint32(c.fixed[8:])
	hdrLen := uint64(order.Uint32(c.fixed[12:]))
	pad := (8 - hdrLen%8) % 8
	size := 16 + hdrLen + pad + bodyLen

	var h header
	if size <= MaxMessage {
		c.msg = append(slices.Grow(c.msg, int(size)), c.fixed[:]...)[:size]
		if _, err := io.ReadFull(c.rd, c.msg[16:]); err != nil {
			return err
		}
		if typ != typeMethodCall {
			return nil
		}
		// Only a method call's path can be too long; read it again.
		if err := h.scan(bytes.NewReader(c.msg[16:16+hdrLen]), order, hdrLen); err != nil {
			return err
		}
		if h.pathLen <= MaxPath {
			c.call(h.sender, serial)
			return nil
		}
		c.msg = c.msg[:0]
	} else {
		if err := h.scan(c.rd, order, hdrLen); err != nil {
			return err
		}
		if _, err := c.rd.Discard(int(pad + bodyLen)); err != nil {
			return err
		}
	}
	return c.refuse(typ, flags, serial, size, h, order)
}

// refuse sets msg to what godbus gets instead of a refused message: a
// call of refuser's method (which answers LimitsExceeded) for a method
// call that expects a reply, an error for a reply (the call it answers
// fails), nothing for the rest.
func (c *limitConn) refuse(typ, flags byte, serial uint32, size uint64, h header, order binary.ByteOrder) error {
	var m dbus.Message
	switch {
	case typ == typeMethodCall && flags&byte(dbus.FlagNoReplyExpected) == 0 && h.sender != "":
		m = dbus.Message{Type: dbus.TypeMethodCall, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:      dbus.MakeVariant(refusePath),
			dbus.FieldInterface: dbus.MakeVariant(refuseIface),
			dbus.FieldMember:    dbus.MakeVariant(refuseMember),
			dbus.FieldSender:    dbus.MakeVariant(h.sender),
			dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(size)),
		}, Body: []any{size}}
	case (typ == typeMethodReturn || typ == typeError) && h.replySerial != 0:
		text := fmt.Sprintf("reply of %d bytes refused: vethd reads messages of at most %d bytes", size, MaxMessage)
		m = dbus.Message{Type: dbus.TypeError, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(h.replySerial),
			dbus.FieldErrorName:   dbus.MakeVariant(ErrorLimitsExceeded),
			dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(text)),
		}, Body: []any{text}}
	default:
		return nil
	}
	var b bytes.Buffer
	if err := m.EncodeTo(&b, order); err != nil {
		return fmt.Errorf("dbus: encode a refusal: %w", err)
	}
	c.msg = append(c.msg, b.Bytes()...)
	// The replacement carries the refused message's serial, which the
	// refusal's reply answers.
	order.PutUint32(c.msg[8:], serial)
	if typ == typeMethodCall {
		c.call(h.sender, serial)
	}
	return nil
}

// header is what limitConn needs of a message's header fields.
type header struct {
	sender      string // the sender (set by the bus); "" if none or too long
	dest        string // the destination; "" if none or too long
	replySerial uint32
	pathLen     uint64
}

// errBadHeader means header fields that are not as the specification
// says; the bus daemon never passes such.
var errBadHeader = errors.New("bad header field")

// hdrReader reads the header fields of one message, never past their end.
type hdrReader struct {
	r     io.Reader
	order binary.ByteOrder
	pos   uint64 // offset in the message
	end   uint64 // offset of the end of the header fields
	small [256]byte
}

// scan reads the n bytes of header fields (which start at offset 16) from
// r into h, skipping the values it does not keep. Header fields that are
// not as the specification says (the bus daemon never passes such) are
// skipped as a whole; an error is r's.
func (h *header) scan(r io.Reader, order binary.ByteOrder, n uint64) error {
	hr := hdrReader{r: r, order: order, pos: 16, end: 16 + n}
	for hr.pos < hr.end {
		err := hr.field(h)
		if errors.Is(err, errBadHeader) {
			*h = header{}
			return hr.skip(hr.end - hr.pos)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// field reads one header field, a (yv) struct.
func (hr *hdrReader) field(h *header) error {
	if err := hr.align(8); err != nil {
		return err
	}
	code, err := hr.byte()
	if err != nil {
		return err
	}
	sig, err := hr.read(3) // a signature of one type: length 1, the type, NUL
	if err != nil {
		return err
	}
	if sig[0] != 1 || sig[2] != 0 {
		return errBadHeader
	}
	switch sig[1] {
	case 's', 'o':
		if err := hr.align(4); err != nil {
			return err
		}
		n, err := hr.u32()
		if err != nil {
			return err
		}
		switch {
		case (code == fieldSender || code == fieldDestination) && n < uint32(len(hr.small)):
			b, err := hr.read(uint64(n))
			if err != nil {
				return err
			}
			if code == fieldSender {
				h.sender = string(b)
			} else {
				h.dest = string(b)
			}
		case code == fieldPath:
			h.pathLen = uint64(n)
			fallthrough
		default:
			if err := hr.skip(uint64(n)); err != nil {
				return err
			}
		}
		return hr.skip(1) // NUL
	case 'g':
		n, err := hr.byte()
		if err != nil {
			return err
		}
		return hr.skip(uint64(n) + 1)
	case 'u':
		if err := hr.align(4); err != nil {
			return err
		}
		v, err := hr.u32()
		if err == nil && code == fieldReplySerial {
			h.replySerial = v
		}
		return err
	}
	return errBadHeader
}

func (hr *hdrReader) align(n uint64) error {
	return hr.skip((n - hr.pos%n) % n)
}

func (hr *hdrReader) byte() (byte, error) {
	b, err := hr.read(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (hr *hdrReader) u32() (uint32, error) {
	b, err := hr.read(4)
	if err != nil {
		return 0, err
	}
	return hr.order.Uint32(b), nil
}

// read reads n ≤ 255 bytes into a buffer that the next read overwrites.
func (hr *hdrReader) read(n uint64) ([]byte, error) {
	if hr.pos+n > hr.end {
		return nil, errBadHeader
	}
	b := hr.small[:n]
	if _, err := io.ReadFull(hr.r, b); err != nil {
		return nil, err
	}
	hr.pos += n
	return b, nil
}

// skip skips n bytes.
func (hr *hdrReader) skip(n uint64) error {
	if hr.pos+n > hr.end {
		return errBadHeader
	}
	if _, err := io.CopyN(io.Discard, hr.r, int64(n)); err != nil {
		return err
	}
	hr.pos += n
	return nil
}
