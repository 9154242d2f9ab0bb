package dbusapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// limitServer connects like vethd (ConnectSystemBus) to bus and exports a fake veth1 on it; it returns the
// connection and a plain client connection.
func limitServer(t *testing.T, bus *dbustest.Bus) (srv, client *dbus.Conn) {
	t.Helper()
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	srv, err := ConnectSystemBus()
	if err != nil {
		t.Fatalf("ConnectSystemBus: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	export(t, srv, newFakeBridge("veth1"))
	return srv, bus.Conn(t)
}

// callErr returns the D-Bus error of a call and its text.
func callErr(err error) (name, text string) {
	var de dbus.Error
	if errors.As(err, &de) {
		name = de.Name
		if len(de.Body) > 0 {
			text, _ = de.Body[0].(string)
		}
	}
	return name, text
}

// TestLimitRefusesOversize: a call larger than MaxMessage, or to a path
// longer than MaxPath, gets LimitsExceeded without being read (issue 9
// item 1); calls within the bounds are answered, their errors quote a
// short prefix of what the caller sent; a big signal is dropped.
func TestLimitRefusesOversize(t *testing.T) {
	srv, client := limitServer(t, startObjectBus(t))
	obj := bridgeObject(client, "veth1")
	big := strings.Repeat("a", 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, c := range []struct {
		what   string
		obj    dbus.BusObject
		method string
		args   []any
	}{
		{"Get with a 1 MiB name", obj, ifaceProperties + ".Get", []any{Interface, big}},
		{"GetAll with a 1 MiB interface", obj, ifaceProperties + ".GetAll", []any{big}},
		{"Introspect with a 1 MiB argument", obj, ifaceIntrospect + ".Introspect", []any{big}},
		{"Ping on a 300-byte path", client.Object(BusName("veth1"), dbus.ObjectPath("/"+strings.Repeat("p", 300))), ifacePeer + ".Ping", nil},
		{"Introspect on a 1 MiB path", client.Object(BusName("veth1"), dbus.ObjectPath("/"+big)), ifaceIntrospect + ".Introspect", nil},
	} {
		name, text := callErr(c.obj.CallWithContext(ctx, c.method, 0, c.args...).Err)
		if name != ErrorLimitsExceeded || len(text) > 200 {
			t.Errorf("%s: %s %q; want %s, short", c.what, name, text, ErrorLimitsExceeded)
		}
	}
	// A big signal to vethd's connection alone, and a big call that wants
	// no reply: dropped.
	sig := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath:        dbus.MakeVariant(ObjectPath("veth1")),
		dbus.FieldInterface:   dbus.MakeVariant("org.example.Attack"),
		dbus.FieldMember:      dbus.MakeVariant("Big"),
		dbus.FieldDestination: dbus.MakeVariant(srv.Names()[0]),
		dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(big)),
	}, Body: []any{big}}
	client.Send(sig, nil)
	obj.Go(ifaceProperties+".Get", dbus.FlagNoReplyExpected, nil, Interface, big)

	// Within the bounds: answered; errors quote 32 bytes at most.
	name, text := callErr(obj.CallWithContext(ctx, ifaceProperties+".Get", 0, Interface, strings.Repeat("\x1b[2J", 2000)).Err)
	if name != errUnknownProperty || len(text) > 200 || strings.Contains(text, "\x1b") {
		t.Errorf("Get with an 8 KiB name: %s %q; want %s, short and escaped", name, text, errUnknownProperty)
	}
	name, text = callErr(obj.CallWithContext(ctx, ifaceProperties+".GetAll", 0, strings.Repeat("i", 8000)).Err)
	if name != errUnknownInterface || len(text) > 200 {
		t.Errorf("GetAll with an 8 KiB interface: %s %q; want %s, short", name, text, errUnknownInterface)
	}
	var v dbus.Variant
	if err := obj.CallWithContext(ctx, ifaceProperties+".Get", 0, Interface, "MTU").Store(&v); err != nil || v.Value() != uint32(1500) {
		t.Errorf("Get MTU after the oversize calls: %v %v", v, err)
	}
}

// TestLimitRefusesOversizeReply: a reply larger than MaxMessage fails the
// call it answers instead of being read.
func TestLimitRefusesOversizeReply(t *testing.T) {
	srv, client := limitServer(t, dbustest.StartOpen(t))
	if err := client.Export(bigReplier{}, "/big", "org.example.Big"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s string
	err := srv.Object(client.Names()[0], "/big").CallWithContext(ctx, "org.example.Big.Reply", 0, uint32(MaxMessage)).Store(&s)
	if name, _ := callErr(err); name != ErrorLimitsExceeded {
		t.Errorf("a %d-byte reply: %v; want %s", MaxMessage, err, ErrorLimitsExceeded)
	}
	if err := srv.Object(client.Names()[0], "/big").CallWithContext(ctx, "org.example.Big.Reply", 0, uint32(1000)).Store(&s); err != nil || len(s) != 1000 {
		t.Errorf("a 1000-byte reply: %d bytes, %v", len(s), err)
	}
}

type bigReplier struct{}

func (bigReplier) Reply(n uint32) (string, *dbus.Error) { return strings.Repeat("r", int(n)), nil }

func TestUnixSocket(t *testing.T) {
	for addr, want := range map[string]string{
		"unix:path=/run/dbus/system_bus_socket":         "/run/dbus/system_bus_socket",
		"unix:path=/tmp/a%20b,guid=1234":                "/tmp/a b",
		"tcp:host=x,port=1;unix:abstract=/tmp/dbus-XYZ": "@/tmp/dbus-XYZ",
		"tcp:host=x,port=1":                             "",
	} {
		got, err := unixSocket(addr)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("unixSocket(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}

func TestQuoteArg(t *testing.T) {
	for in, want := range map[string]string{
		"State":                      `"State"`,
		"a\x1bb":                     `"a\x1bb"`,
		strings.Repeat("x", 40):      `"` + strings.Repeat("x", 32) + `"… (40 bytes)`,
		strings.Repeat("é", 40)[:33]: `"` + strings.Repeat("é", 16) + `"… (33 bytes)`,
	} {
		if got := quoteArg(in); got != want {
			t.Errorf("quoteArg(%q) = %s, want %s", in, got, want)
		}
	}
}

// encodeMsg encodes m with serial (godbus leaves it to the connection).
func encodeMsg(t *testing.T, m *dbus.Message, serial uint32) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := m.EncodeTo(&b, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	p := b.Bytes()
	binary.LittleEndian.PutUint32(p[8:], serial)
	return p
}

// TestLimitInFlight: limitConn hands godbus no more than MaxInFlight
// unanswered method calls (the next waits until one is answered, or
// inFlightWait), and a call that wanted no reply gets one that is not
// sent.
func TestLimitInFlight(t *testing.T) {
	bus, far := net.Pipe()
	defer far.Close()
	lc := newLimitConn(bus)
	defer lc.Close()
	lc.framed.Store(true)
	var sent bytes.Buffer // what limitConn wrote to the socket
	drained := make(chan struct{})
	go func() { io.Copy(&sent, far); close(drained) }()
	call := func(serial uint32, flags dbus.Flags) []byte {
		return encodeMsg(t, &dbus.Message{Type: dbus.TypeMethodCall, Flags: flags, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:   dbus.MakeVariant(dbus.ObjectPath("/x")),
			dbus.FieldMember: dbus.MakeVariant("M"),
			dbus.FieldSender: dbus.MakeVariant(":1.9"),
		}}, serial)
	}
	reply := func(serial uint32) []byte {
		return encodeMsg(t, &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(serial),
			dbus.FieldDestination: dbus.MakeVariant(":1.9"),
		}}, 1000+serial)
	}
	var in bytes.Buffer
	in.Write(call(1, dbus.FlagNoReplyExpected))
	for s := uint32(2); s <= MaxInFlight+1; s++ {
		in.Write(call(s, 0))
	}
	// The bus side of the pipe: net.Pipe has no buffer.
	go func() { far.Write(in.Bytes()) }()

	got := make(chan *dbus.Message, MaxInFlight+1)
	go func() {
		for {
			m, err := dbus.DecodeMessage(lc)
			if err != nil {
				close(got)
				return
			}
			got <- m
		}
	}()
	for s := uint32(1); s <= MaxInFlight; s++ {
		m := <-got
		if m.Serial() != s {
			t.Fatalf("call %d: serial %d", s, m.Serial())
		}
		if m.Flags&dbus.FlagNoReplyExpected != 0 {
			t.Errorf("call %d handed out with NoReplyExpected", s)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("call %d handed out with %d unanswered", m.Serial(), MaxInFlight)
	case <-time.After(inFlightWait / 4):
	}
	// Answering the call that wanted no reply frees a slot and sends
	// nothing; answering another sends its reply.
	start := time.Now()
	if _, err := lc.Write(reply(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Serial() != MaxInFlight+1 || time.Since(start) > inFlightWait/2 {
			t.Errorf("after an answer: call %d after %v", m.Serial(), time.Since(start))
		}
	case <-time.After(inFlightWait / 2):
		t.Fatal("no call handed out after an answer")
	}
	r2 := reply(2)
	if _, err := lc.Write(r2); err != nil {
		t.Fatal(err)
	}
	far.Close()
	lc.Close()
	<-drained
	if !bytes.Equal(sent.Bytes(), r2) {
		t.Errorf("sent %d bytes, want only the reply to call 2 (%d bytes)", sent.Len(), len(r2))
	}
}
