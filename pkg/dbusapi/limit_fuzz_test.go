package dbusapi

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/godbus/dbus/v5"
)

// fakeSocket is a net.Conn that reads from a buffer and discards writes.
type fakeSocket struct {
	net.Conn
	r io.Reader
}

func (f fakeSocket) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f fakeSocket) Write(p []byte) (int, error) { return len(p), nil }
func (f fakeSocket) Close() error                { return nil }

// FuzzLimitConn feeds limitConn any byte stream as the bus's: it never
// panics, and every message it hands out is within MaxMessage and decodes
// as godbus would (or is an error godbus would skip).
func FuzzLimitConn(f *testing.F) {
	var b bytes.Buffer
	m := &dbus.Message{Type: dbus.TypeMethodCall, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath:      dbus.MakeVariant(dbus.ObjectPath("/io/github/vethd/Bridge1/veth1")),
		dbus.FieldMember:    dbus.MakeVariant("Get"),
		dbus.FieldSender:    dbus.MakeVariant(":1.7"),
		dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf("a", "b")),
	}, Body: []any{"a", "b"}}
	if err := m.EncodeTo(&b, binary.LittleEndian); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(append(bytes.Clone(b.Bytes()), b.Bytes()...))
	f.Add([]byte("l\x01\x00\x01\xff\xff\xff\x00\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lc := newLimitConn(fakeSocket{r: bytes.NewReader(data)})
		lc.framed.Store(true)
		for range 100 {
			if err := lc.next(); err != nil {
				return
			}
			if len(lc.msg) > MaxMessage {
				t.Fatalf("handed out %d bytes", len(lc.msg))
			}
			if len(lc.msg) > 0 {
				_, _ = dbus.DecodeMessage(bytes.NewReader(lc.msg))
				lc.answered() // as if godbus had answered: no waiting for a slot
			}
		}
	})
}
