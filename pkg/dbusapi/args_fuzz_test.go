package dbusapi

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// fuzzMembers are the method calls FuzzArgs picks from (by index), each
// as interface and member; an index past the end uses the fuzzed
// interface and member instead.
var fuzzMembers = [][2]string{
	{ifaceProperties, "Get"},
	{ifaceProperties, "GetAll"},
	{ifaceProperties, "Set"},
	{Interface, "Describe"},
	{Interface, "Reload"},
	{Interface, "ResetCounters"},
	{ifaceIntrospect, "Introspect"},
	{ifacePeer, "Ping"},
	{Interface, "Get"}, // a Properties member on the wrong interface
}

// maxErrorText bounds the text of any error vethd's object answers: the
// longest fixed message plus maxQuoted bytes of a caller's string, quoted
// (at most 4 bytes each), and its length.
const maxErrorText = 512

// FuzzArgs sends method calls with any arguments to a Server exported on
// a connection made as vethd makes its own (ConnectSystemBus: through the
// limitConn that bounds what it reads), over a private dbus-daemon: any
// interface and member, any property and interface names — short, or
// padded past MaxMessage — and extra arguments of the wrong types.
// Whatever comes in, the call is answered within 5 s (by a reply, or an
// error that godbus or the limitConn makes); an error's text is valid
// UTF-8 and at most maxErrorText bytes whatever the caller sent (the
// issue 9 item 1 hole: a 30 MiB property name echoed back); Get answers
// only the object's properties, with GetAll's signature; Set is always
// refused; and the object still answers afterwards.
func FuzzArgs(f *testing.F) {
	for _, seed := range []struct {
		member     uint8
		iface      string
		member2    string
		arg1, arg2 string
		pad        uint32
		extra      uint8
	}{
		{0, "", "", Interface, "MTU", 0, 0},
		{0, "", "", Interface, "RxDrops", 0, 0},
		{0, "", "", "", "Name", 0, 0},
		{0, "", "", Interface, "NoSuchProperty", 0, 0},
		{0, "", "", Interface, "x", 70000, 0},
		{0, "", "", "org.example.Other", "MTU", 0, 0},
		{0, "", "", Interface, "\x1b[31mred\u2028", 100, 0},
		{1, "", "", Interface, "", 0, 0},
		{1, "", "", "x", "", 60000, 0},
		{2, "", "", Interface, "MTU", 0, 0},
		{3, "", "", "", "", 0, 1},
		{4, "", "", "", "", 0, 0},
		{6, "", "", "", "", 0, 0},
		{8, "", "", Interface, "MTU", 0, 0},
		{255, "org.example.Nope", "Frobnicate", "a", "b", 0, 3},
		{255, ifaceProperties, "GetAll", "", "", 0, 0},
	} {
		f.Add(seed.member, seed.iface, seed.member2, seed.arg1, seed.arg2, seed.pad, seed.extra)
	}

	bus := dbustest.StartOpen(f)
	old, had := os.LookupEnv("DBUS_SYSTEM_BUS_ADDRESS")
	os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	srvConn, err := ConnectSystemBus()
	if had {
		os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", old)
	} else {
		os.Unsetenv("DBUS_SYSTEM_BUS_ADDRESS")
	}
	if err != nil {
		f.Fatalf("ConnectSystemBus: %v", err)
	}
	f.Cleanup(func() { srvConn.Close() })
	srv, err := Export(srvConn, newFakeBridge("veth1"))
	if err != nil {
		f.Fatalf("Export: %v", err)
	}
	f.Cleanup(func() { srv.Close() })
	conn := bus.Conn(f)
	obj := conn.Object(BusName("veth1"), ObjectPath("veth1"))

	// GetAll's signature of each property: what Get must match.
	var all map[string]dbus.Variant
	if err := obj.Call(ifaceProperties+".GetAll", 0, Interface).Store(&all); err != nil {
		f.Fatalf("GetAll: %v", err)
	}

	f.Fuzz(func(t *testing.T, member uint8, iface, member2, arg1, arg2 string, pad uint32, extra uint8) {
		method := iface + "." + member2
		if int(member) < len(fuzzMembers) {
			method = fuzzMembers[member][0] + "." + fuzzMembers[member][1]
		}
		// Past MaxMessage (64 KiB) and a little more, no further.
		if pad %= 80 << 10; pad > 0 {
			arg2 += strings.Repeat("p", int(pad))
		}
		args := []any{arg1, arg2}
		switch method {
		case ifaceProperties + ".GetAll":
			args = args[:1]
		case ifaceProperties + ".Set":
			args = append(args, dbus.MakeVariant(arg1))
		}
		for i := range extra % 4 {
			args = append(args, []any{uint32(i), arg1, []byte(arg2), dbus.MakeVariant(int16(i))}[i])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		call := obj.CallWithContext(ctx, method, 0, args...)
		if errors.Is(call.Err, context.DeadlineExceeded) {
			t.Fatalf("%s(%d args, %d bytes): no answer within 5 s", method, len(args), len(arg1)+len(arg2))
		}
		var de dbus.Error
		if call.Err != nil && !errors.As(call.Err, &de) {
			// Refused by godbus before it was sent (invalid UTF-8, a bad
			// interface or member name): nothing reached the server.
			return
		}
		if call.Err != nil {
			text := strings.Join(func() []string {
				var s []string
				for _, b := range de.Body {
					if str, ok := b.(string); ok {
						s = append(s, str)
					}
				}
				return s
			}(), " ")
			if len(text) > maxErrorText || !utf8.ValidString(text) {
				t.Fatalf("%s(%d args, %d bytes): error %s of %d bytes (valid UTF-8: %v): %.200q",
					method, len(args), len(arg1)+len(arg2), de.Name, len(text), utf8.ValidString(text), text)
			}
		}
		switch method {
		case ifaceProperties + ".Get":
			if call.Err != nil {
				break
			}
			want, ok := all[arg2]
			if !ok || (arg1 != "" && arg1 != Interface) {
				t.Fatalf("Get(%q, %.80q) answered %v: not a property of %s", arg1, arg2, call.Body, Interface)
			}
			if len(call.Body) != 1 {
				t.Fatalf("Get(%q, %q): %d values", arg1, arg2, len(call.Body))
			}
			if v, ok := call.Body[0].(dbus.Variant); !ok || v.Signature() != want.Signature() {
				t.Fatalf("Get(%q, %q) = %v, GetAll's signature is %s", arg1, arg2, call.Body[0], want.Signature())
			}
		case ifaceProperties + ".Set":
			if call.Err == nil {
				t.Fatalf("Set(%q, %.80q) succeeded", arg1, arg2)
			}
		}
		// Still there, and still itself.
		var name dbus.Variant
		if err := obj.CallWithContext(ctx, ifaceProperties+".Get", 0, Interface, "Name").Store(&name); err != nil || name.Value() != "veth1" {
			t.Fatalf("after %s(%d args, %d bytes): Get Name = %v, %v", method, len(args), len(arg1)+len(arg2), name, err)
		}
	})
}
