package dbusapi

import (
	"context"
	"encoding/xml"
	"errors"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
)

// wantProps is the D-Bus signature and value of every property of
// newFakeBridge("veth1").
func wantProps() map[string]dbus.Variant {
	return map[string]dbus.Variant{
		"Name":          dbus.MakeVariant("veth1"),
		"Kind":          dbus.MakeVariant("veth"),
		"DataPath":      dbus.MakeVariant("kernel"),
		"Namespace":     dbus.MakeVariant(""),
		"Parent":        dbus.MakeVariant("eth0"),
		"IfIndex":       dbus.MakeVariant(int32(7)),
		"ParentIfIndex": dbus.MakeVariant(int32(2)),
		"MACAddress":    dbus.MakeVariant("02:5e:00:12:34:56"),
		"MACPolicy":     dbus.MakeVariant("persistent"),
		"MTU":           dbus.MakeVariant(uint32(1500)),
		"State":         dbus.MakeVariant("running"),
		"Carrier":       dbus.MakeVariant(false),
		"ParentCarrier": dbus.MakeVariant(true),
		"Promiscuous":   dbus.MakeVariant(true),
		"Offloads":      dbus.MakeVariant([]string{"tso", "gro"}),
		"StartedUsec":   dbus.MakeVariant(uint64(1_700_000_000_123_456)),
		"LastError":     dbus.MakeVariant(""),
		"RxPackets":     dbus.MakeVariant(uint64(10)),
		"RxBytes":       dbus.MakeVariant(uint64(1000)),
		"RxCoalesced":   dbus.MakeVariant(uint64(3)),
		"TxPackets":     dbus.MakeVariant(uint64(20)),
		"TxBytes":       dbus.MakeVariant(uint64(2000)),
		"RxDropped":     dbus.MakeVariant(uint64(7)),
		"TxDropped":     dbus.MakeVariant(uint64(4)),
		"Errors":        dbus.MakeVariant(uint64(1)),
		"RxSplit":       dbus.MakeVariant(uint64(6)),
		"TxSplit":       dbus.MakeVariant(uint64(8)),
		"RxDrops":       dbus.MakeVariant(map[string]uint64{"runt": 2, "spoof": 5}),
		"TxDrops":       dbus.MakeVariant(map[string]uint64{"queue-full": 4}),
	}
}

// wantSignatures are the D-Bus signatures of the properties.
var wantSignatures = map[string]string{
	"Name": "s", "Kind": "s", "DataPath": "s", "Namespace": "s", "Parent": "s", "IfIndex": "i", "ParentIfIndex": "i",
	"MACAddress": "s", "MACPolicy": "s", "MTU": "u", "State": "s",
	"Carrier": "b", "ParentCarrier": "b", "Promiscuous": "b", "Offloads": "as",
	"StartedUsec": "t", "LastError": "s",
	"RxPackets": "t", "RxBytes": "t", "RxCoalesced": "t", "TxPackets": "t",
	"TxBytes": "t", "RxDropped": "t", "TxDropped": "t", "Errors": "t",
	"RxSplit": "t", "TxSplit": "t",
	"RxDrops": "a{st}", "TxDrops": "a{st}",
}

// stateLike are the properties PropertiesChanged carries.
var stateLike = []string{
	"Name", "Kind", "DataPath", "Namespace", "Parent", "IfIndex", "ParentIfIndex", "MACAddress", "MACPolicy",
	"MTU", "State", "Carrier", "ParentCarrier", "Promiscuous", "Offloads",
	"StartedUsec", "LastError",
}

func bridgeObject(conn *dbus.Conn, name string) dbus.BusObject {
	return conn.Object(BusName(name), ObjectPath(name))
}

func getAll(t *testing.T, conn *dbus.Conn, name string) map[string]dbus.Variant {
	t.Helper()
	var all map[string]dbus.Variant
	if err := bridgeObject(conn, name).Call(ifaceProperties+".GetAll", 0, Interface).Store(&all); err != nil {
		t.Fatalf("GetAll: %v", err)
	}
	return all
}

func TestProperties(t *testing.T) {
	bus := startObjectBus(t)
	srv := bus.Conn(t)
	fake := newFakeBridge("veth1")
	export(t, srv, fake)
	conn := bus.Conn(t)

	// Raw GetAll: exactly these properties, with these values and
	// signatures.
	all := getAll(t, conn, "veth1")
	want := wantProps()
	if got, want := slices.Sorted(maps.Keys(all)), slices.Sorted(maps.Keys(want)); !slices.Equal(got, want) {
		t.Errorf("GetAll properties\n got %v\nwant %v", got, want)
	}
	for name, w := range want {
		g, ok := all[name]
		if !ok {
			continue
		}
		if g.Signature().String() != wantSignatures[name] {
			t.Errorf("%s: signature %s, want %s", name, g.Signature(), wantSignatures[name])
		}
		if !reflect.DeepEqual(g.Value(), w.Value()) {
			t.Errorf("%s = %#v, want %#v", name, g.Value(), w.Value())
		}
	}

	// Get, also with the empty interface name.
	for _, iface := range []string{Interface, ""} {
		var v dbus.Variant
		if err := bridgeObject(conn, "veth1").Call(ifaceProperties+".Get", 0, iface, "MTU").Store(&v); err != nil {
			t.Fatalf("Get(%q, MTU): %v", iface, err)
		}
		if v.Signature().String() != "u" || v.Value() != uint32(1500) {
			t.Errorf("Get(%q, MTU) = %v", iface, v)
		}
	}
	err := bridgeObject(conn, "veth1").Call(ifaceProperties+".Get", 0, Interface, "Nope").Err
	if got := dbusErrorName(err); got != errUnknownProperty {
		t.Errorf("Get(Nope): error %v, want %s", err, errUnknownProperty)
	}
	err = bridgeObject(conn, "veth1").Call(ifaceProperties+".GetAll", 0, "org.example.Nope").Err
	if got := dbusErrorName(err); got != errUnknownInterface {
		t.Errorf("GetAll(org.example.Nope): error %v, want %s", err, errUnknownInterface)
	}

	// Through the client.
	st, ctr, err := NewClient(conn).Get(context.Background(), "veth1")
	if err != nil {
		t.Fatalf("Client.Get: %v", err)
	}
	if want := fake.Status(); !reflect.DeepEqual(st, want) {
		t.Errorf("Client.Get status\n got %+v\nwant %+v", st, want)
	}
	if want := fake.Counters(); !reflect.DeepEqual(ctr, want) {
		t.Errorf("Client.Get counters\n got %+v\nwant %+v", ctr, want)
	}
}

func TestIntrospect(t *testing.T) {
	bus := startObjectBus(t)
	export(t, bus.Conn(t), newFakeBridge("veth1"))
	conn := bus.Conn(t)

	var data string
	if err := bridgeObject(conn, "veth1").Call(ifaceIntrospect+".Introspect", 0).Store(&data); err != nil {
		t.Fatalf("Introspect: %v", err)
	}
	var node introspect.Node
	if err := xml.Unmarshal([]byte(data), &node); err != nil {
		t.Fatalf("parse introspection data: %v\n%s", err, data)
	}
	ifaces := make(map[string]introspect.Interface)
	for _, i := range node.Interfaces {
		ifaces[i.Name] = i
	}
	for _, name := range []string{ifaceIntrospect, ifaceProperties, ifacePeer, Interface} {
		if _, ok := ifaces[name]; !ok {
			t.Errorf("interface %s missing", name)
		}
	}
	bridge := ifaces[Interface]

	var methods []string
	for _, m := range bridge.Methods {
		methods = append(methods, m.Name)
		switch m.Name {
		case "Describe":
			if len(m.Args) != 1 || m.Args[0].Type != "s" || m.Args[0].Direction != "out" {
				t.Errorf("Describe args = %+v, want one out s", m.Args)
			}
		default:
			if len(m.Args) != 0 {
				t.Errorf("%s args = %+v, want none", m.Name, m.Args)
			}
		}
	}
	if want := []string{"Describe", "Reload", "ResetCounters"}; !slices.Equal(methods, want) {
		t.Errorf("methods = %v, want %v", methods, want)
	}

	props := make(map[string]introspect.Property)
	for _, p := range bridge.Properties {
		props[p.Name] = p
	}
	if got, want := slices.Sorted(maps.Keys(props)), slices.Sorted(maps.Keys(wantSignatures)); !slices.Equal(got, want) {
		t.Errorf("properties\n got %v\nwant %v", got, want)
	}
	for name, p := range props {
		if p.Type != wantSignatures[name] {
			t.Errorf("property %s type %s, want %s", name, p.Type, wantSignatures[name])
		}
		if p.Access != "read" {
			t.Errorf("property %s access %s, want read", name, p.Access)
		}
		emits := "false"
		if slices.Contains(stateLike, name) {
			emits = "true"
		}
		if len(p.Annotations) != 1 || p.Annotations[0].Name != annotationEmits || p.Annotations[0].Value != emits {
			t.Errorf("property %s annotations %+v, want %s=%s", name, p.Annotations, annotationEmits, emits)
		}
	}
}

func TestCountersLive(t *testing.T) {
	bus := startObjectBus(t)
	fake := newFakeBridge("veth1")
	export(t, bus.Conn(t), fake)
	conn := bus.Conn(t)
	client := NewClient(conn)

	fake.setCounters(func(c *Counters) {
		c.RxPackets = 11
		c.TxBytes = 123456789012
		c.RxDrops = map[string]uint64{"oversize": 3} // "runt" and "spoof" gone
	})
	_, ctr, err := client.Get(context.Background(), "veth1")
	if err != nil {
		t.Fatal(err)
	}
	if ctr.RxPackets != 11 || ctr.TxBytes != 123456789012 || !maps.Equal(ctr.RxDrops, map[string]uint64{"oversize": 3}) {
		t.Errorf("counters not live: %+v", ctr)
	}
	var v dbus.Variant
	if err := bridgeObject(conn, "veth1").Call(ifaceProperties+".Get", 0, Interface, "RxDropped").Store(&v); err != nil {
		t.Fatal(err)
	}
	if v.Value() != uint64(3) {
		t.Errorf("RxDropped = %v, want 3", v)
	}
	all := getAll(t, conn, "veth1")
	if all["RxPackets"].Value() != uint64(11) || all["RxDropped"].Value() != uint64(3) {
		t.Errorf("GetAll counters not live: RxPackets %v RxDropped %v", all["RxPackets"], all["RxDropped"])
	}
}

func TestMethodsAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		skip(t, "Reload and ResetCounters need uid 0")
	}
	bus := startObjectBus(t)
	fake := newFakeBridge("veth1")
	export(t, bus.Conn(t), fake)
	client := NewClient(bus.Conn(t))

	if err := client.Reload(context.Background(), "veth1"); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := client.ResetCounters(context.Background(), "veth1"); err != nil {
		t.Fatalf("ResetCounters: %v", err)
	}
	doc, err := client.Describe(context.Background(), "veth1")
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if doc != `{"name":"veth1"}` {
		t.Errorf("Describe = %q", doc)
	}
	if r, c, d := fake.calls(); r != 1 || c != 1 || d != 1 {
		t.Errorf("fake saw %d reloads, %d resets, %d describes; want 1 each", r, c, d)
	}
	_, ctr, err := client.Get(context.Background(), "veth1")
	if err != nil {
		t.Fatal(err)
	}
	if ctr.RxPackets != 0 || len(ctr.RxDrops) != 0 {
		t.Errorf("counters after reset: %+v", ctr)
	}

	// A failed Reload is ReloadFailed with the bridge's message, and the
	// new LastError is visible right away.
	fake.mu.Lock()
	fake.reloadErr = errors.New("parent eth9 not found")
	fake.mu.Unlock()
	err = client.Reload(context.Background(), "veth1")
	if !errors.Is(err, ErrReloadFailed) || !strings.Contains(err.Error(), "parent eth9 not found") {
		t.Errorf("failed Reload: error %v, want ErrReloadFailed with the message", err)
	}
	st, _, err := client.Get(context.Background(), "veth1")
	if err != nil {
		t.Fatal(err)
	}
	if st.LastError != "parent eth9 not found" {
		t.Errorf("LastError after failed Reload = %q", st.LastError)
	}
}

func TestPropertiesChanged(t *testing.T) {
	bus := startObjectBus(t)
	fake := newFakeBridge("veth1")
	server := export(t, bus.Conn(t), fake)
	conn := bus.Conn(t)

	if err := conn.AddMatchSignal(
		dbus.WithMatchSender(BusName("veth1")),
		dbus.WithMatchObjectPath(ObjectPath("veth1")),
		dbus.WithMatchInterface(ifaceProperties),
		dbus.WithMatchMember("PropertiesChanged"),
	); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	next := func() *dbus.Signal {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case sig := <-signals:
				if sig.Name == signalPropChanged && sig.Path == ObjectPath("veth1") {
					return sig
				}
			case <-timeout:
				t.Fatal("no PropertiesChanged")
			}
		}
	}
	check := func(sig *dbus.Signal, want map[string]any) {
		t.Helper()
		var (
			iface       string
			changed     map[string]dbus.Variant
			invalidated []string
		)
		if err := dbus.Store(sig.Body, &iface, &changed, &invalidated); err != nil {
			t.Fatalf("PropertiesChanged body %v: %v", sig.Body, err)
		}
		if iface != Interface || len(invalidated) != 0 {
			t.Errorf("PropertiesChanged(%s, …, %v), want (%s, …, [])", iface, invalidated, Interface)
		}
		got := make(map[string]any)
		for k, v := range changed {
			got[k] = v.Value()
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("changed properties\n got %v\nwant %v", got, want)
		}
	}

	fake.setStatus(func(st *Status) { st.Carrier = true })
	server.Update()
	check(next(), map[string]any{"Carrier": true})

	// The kernel refused the programs at a re-attach: the bridge relays.
	fake.setStatus(func(st *Status) { st.DataPath = "relay" })
	server.Update()
	check(next(), map[string]any{"DataPath": "relay"})

	// The interface moved into another namespace (a container).
	fake.setStatus(func(st *Status) { st.Namespace = "netnsid 3" })
	server.Update()
	check(next(), map[string]any{"Namespace": "netnsid 3"})

	// Nothing changed: no signal. Signals from one sender arrive in order,
	// so the next one must be the one for the change below.
	server.Update()
	fake.setStatus(func(st *Status) {
		st.State = "degraded"
		st.ParentCarrier = false
		st.Offloads = []string{"tso"}
		st.LastError = "parent carrier lost"
	})
	fake.setCounters(func(c *Counters) { c.RxPackets++ }) // counters are not signalled
	server.Update()
	check(next(), map[string]any{
		"State":         "degraded",
		"ParentCarrier": false,
		"Offloads":      []string{"tso"},
		"LastError":     "parent carrier lost",
	})

	all := getAll(t, conn, "veth1")
	if all["State"].Value() != "degraded" || !reflect.DeepEqual(all["Offloads"].Value(), []string{"tso"}) {
		t.Errorf("GetAll after Update: State %v Offloads %v", all["State"], all["Offloads"])
	}

	server.Update()
	select {
	case sig := <-signals:
		if sig.Name == signalPropChanged {
			t.Errorf("unexpected PropertiesChanged %v", sig.Body)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

func TestSetRefused(t *testing.T) {
	bus := startObjectBus(t)
	fake := newFakeBridge("veth1")
	export(t, bus.Conn(t), fake)
	obj := bridgeObject(bus.Conn(t), "veth1")

	err := obj.Call(ifaceProperties+".Set", 0, Interface, "MTU", dbus.MakeVariant(uint32(9000))).Err
	if got := dbusErrorName(err); got != errPropertyReadOnly {
		t.Errorf("Set(MTU): error %v, want %s", err, errPropertyReadOnly)
	}
	err = obj.Call(ifaceProperties+".Set", 0, Interface, "Nope", dbus.MakeVariant("x")).Err
	if got := dbusErrorName(err); got != errUnknownProperty {
		t.Errorf("Set(Nope): error %v, want %s", err, errUnknownProperty)
	}
	var v dbus.Variant
	if err := obj.Call(ifaceProperties+".Get", 0, Interface, "MTU").Store(&v); err != nil || v.Value() != uint32(1500) {
		t.Errorf("MTU after Set = %v, %v; want 1500", v, err)
	}
}

// TestNameQueued: a second connection exporting the same bridge queues
// for its name and owns it once the first lets it go (issue 9 item 3: with
// DoNotQueue the survivor of a start race never got the name); the same
// connection exporting it twice is refused.
func TestNameQueued(t *testing.T) {
	bus := startObjectBus(t)
	conn := bus.Conn(t)
	fake := newFakeBridge("veth1")
	first := export(t, conn, fake)
	if first.Queued() {
		t.Error("first export queued")
	}

	if _, err := Export(conn, newFakeBridge("veth1")); !errors.Is(err, ErrNameTaken) {
		t.Errorf("Export again on the same connection: error %v, want ErrNameTaken", err)
	}
	conn2 := bus.Conn(t)
	fake2 := newFakeBridge("veth1")
	second := export(t, conn2, fake2)
	if !second.Queued() {
		t.Error("second export not queued")
	}
	// The first export answers.
	if _, err := NewClient(bus.Conn(t)).Describe(context.Background(), "veth1"); err != nil {
		t.Errorf("Describe of the first export: %v", err)
	}
	if _, _, d := fake.calls(); d != 1 {
		t.Errorf("first fake saw %d describes, want 1", d)
	}

	// The first goes: the bus hands the name to the second.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	var owner string
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, BusName("veth1")).Store(&owner); err != nil || owner != conn2.Names()[0] {
		t.Errorf("owner after the first closed: %q %v, want %s", owner, err, conn2.Names()[0])
	}
	if _, err := NewClient(bus.Conn(t)).Describe(context.Background(), "veth1"); err != nil {
		t.Errorf("Describe of the second export: %v", err)
	}
	if _, _, d := fake2.calls(); d != 1 {
		t.Errorf("second fake saw %d describes, want 1", d)
	}
}

func TestClientListAndClose(t *testing.T) {
	bus := startObjectBus(t)
	conn := bus.Conn(t)
	var servers []*Server
	for _, name := range []string{"veth1", "my-br.0", "1a"} {
		servers = append(servers, export(t, conn, newFakeBridge(name)))
	}
	client := NewClient(bus.Conn(t))

	list, err := client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1a", "my-br.0", "veth1"}; !slices.Equal(list, want) {
		t.Errorf("List = %v, want %v", list, want)
	}
	st, _, err := client.Get(context.Background(), "my-br.0")
	if err != nil || st.Name != "my-br.0" {
		t.Errorf("Get(my-br.0) = %q, %v", st.Name, err)
	}

	if err := servers[0].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := servers[0].Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	servers[0].Update() // no-op after Close
	list, err = client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1a", "my-br.0"}; !slices.Equal(list, want) {
		t.Errorf("List after Close = %v, want %v", list, want)
	}
	// The object is gone too, not only the name. (godbus keeps the empty
	// path, so the error may be UnknownInterface.)
	err = conn.Object(conn.Names()[0], ObjectPath("veth1")).Call(ifaceProperties+".GetAll", 0, Interface).Err
	if got := dbusErrorName(err); got != errUnknownObject && got != errUnknownInterface {
		t.Errorf("GetAll on the closed object: error %v, want %s or %s", err, errUnknownObject, errUnknownInterface)
	}

	for _, op := range []func() error{
		func() error { _, _, err := client.Get(context.Background(), "veth1"); return err },
		func() error { return client.Reload(context.Background(), "veth1") },
		func() error { return client.ResetCounters(context.Background(), "nope") },
		func() error { _, err := client.Describe(context.Background(), "nope"); return err },
	} {
		if err := op(); !errors.Is(err, ErrNoSuchBridge) || !strings.Contains(err.Error(), "veth1") && !strings.Contains(err.Error(), "nope") {
			t.Errorf("call to a missing bridge: error %v, want ErrNoSuchBridge naming it", err)
		}
	}
}
