package dbusapi

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/vethd/vethd/internal/humanize"
)

const (
	ifaceProperties   = "org.freedesktop.DBus.Properties"
	ifaceIntrospect   = "org.freedesktop.DBus.Introspectable"
	ifacePeer         = "org.freedesktop.DBus.Peer"
	signalPropChanged = ifaceProperties + ".PropertiesChanged"
	annotationEmits   = "org.freedesktop.DBus.Property.EmitsChangedSignal"
)

// Server owns a bridge's bus name and exports its object: the
// io.github.vethd.Bridge1 methods, read-only properties and introspection
// data.
//
// The state-like properties (every field of Status) are kept in a
// *prop.Properties and change only in Update, which signals them all in one
// PropertiesChanged. The counters are read from Bridge.Counters on every Get
// and GetAll and never signalled.
//
// Export sets conn, b, busName, path, counter, queued and props, which do not
// change after; godbus's handler goroutines and the callers of Update and
// Close share the Server.
type Server struct {
	conn    *dbus.Conn
	b       Bridge
	busName string
	path    dbus.ObjectPath
	counter map[string]bool // the names of the counter properties
	queued  bool            // RequestName queued: another connection owned the name

	mu     sync.Mutex       // serializes Update and every use of props; guards closed
	props  *prop.Properties // the state-like properties, as last signalled
	closed bool             // Close was called
}

// Export exports b's object at ObjectPath(b.Status().Name), then requests
// BusName of that name, queueing for it if another connection owns it:
// the bus daemon makes this connection the owner when the other releases
// the name or goes (Queued says whether it had to wait). The name is requested
// without AllowReplacement, so it is never taken away. If this connection
// already owns the name, Export returns an error wrapping ErrNameTaken and
// exports nothing.
//
// Call it once the bridge holds its interface: a process that lost the
// race for an interface must not have held the name in between (the
// winner would be queued behind it).
func Export(conn *dbus.Conn, b Bridge) (*Server, error) {
	st := b.Status()
	s := &Server{
		conn:    conn,
		b:       b,
		busName: BusName(st.Name),
		path:    ObjectPath(st.Name),
		counter: make(map[string]bool),
	}
	// Exporting again on the same connection would replace the first
	// Server's handlers before RequestName could tell us.
	if slices.Contains(conn.Names(), s.busName) {
		return nil, fmt.Errorf("export %s: %s: %w", st.Name, s.busName, ErrNameTaken)
	}

	// The store never signals by itself (SetMust would emit one signal per
	// property); Update emits one for all. Hence EmitFalse here, and the
	// annotations fixed up in introspection below.
	spec := make(map[string]*prop.Prop)
	for name, v := range statusValues(st) {
		spec[name] = &prop.Prop{Value: v, Emit: prop.EmitFalse}
	}
	for name, v := range counterValues(Counters{}) {
		spec[name] = &prop.Prop{Value: v, Emit: prop.EmitFalse}
		s.counter[name] = true
	}
	props, err := prop.Export(conn, s.path, prop.Map{Interface: spec})
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", st.Name, err)
	}
	s.props = props
	if err := s.export(); err != nil {
		s.unexport()
		return nil, fmt.Errorf("export %s: %w", st.Name, err)
	}

	reply, err := conn.RequestName(s.busName, 0)
	if err != nil {
		s.unexport()
		return nil, fmt.Errorf("export %s: request %s: %w", st.Name, s.busName, err)
	}
	switch reply {
	case dbus.RequestNameReplyPrimaryOwner:
		return s, nil
	case dbus.RequestNameReplyInQueue:
		s.queued = true
		return s, nil
	}
	s.unexport()
	return nil, fmt.Errorf("export %s: request %s: %w", st.Name, s.busName, ErrNameTaken)
}

// BusName returns the bus name the Server owns or queues for.
func (s *Server) BusName() string { return s.busName }

// Queued reports whether another connection owned the bus name at
// Export, so that this one was queued for it.
func (s *Server) Queued() bool { return s.queued }

// export replaces the Properties handler that prop.Export installed with
// one that serves live counters, and exports the methods and the
// introspection data.
func (s *Server) export() error {
	m := methods{s}
	ps := s.props.Introspection(Interface)
	for i := range ps {
		if !s.counter[ps[i].Name] {
			ps[i].Annotations = []introspect.Annotation{{Name: annotationEmits, Value: "true"}}
		}
	}
	slices.SortFunc(ps, func(a, b introspect.Property) int { return cmp.Compare(a.Name, b.Name) })
	node := &introspect.Node{
		Name: string(s.path),
		Interfaces: []introspect.Interface{
			introspect.IntrospectData,
			prop.IntrospectData,
			peerIntrospection(),
			{Name: Interface, Methods: introspect.Methods(m), Properties: ps},
		},
	}
	if err := s.conn.Export(properties{s}, s.path, ifaceProperties); err != nil {
		return err
	}
	if err := s.conn.Export(m, s.path, Interface); err != nil {
		return err
	}
	return s.conn.Export(introspect.NewIntrospectable(node), s.path, ifaceIntrospect)
}

// unexport removes everything export and prop.Export exported.
func (s *Server) unexport() {
	for _, iface := range []string{ifaceIntrospect, Interface, ifaceProperties} {
		_ = s.conn.Export(nil, s.path, iface) // fails only for an invalid path
	}
}

// Update re-reads the bridge's Status and emits one
// org.freedesktop.DBus.Properties.PropertiesChanged carrying every
// state-like property that changed since the last Update (none: no signal).
// Call it after any change to what Status returns; calls are cheap when
// nothing changed. It must not be called with a lock held that Status
// needs. After Close it does nothing.
func (s *Server) Update() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	changed := make(map[string]dbus.Variant)
	for name, v := range statusValues(s.b.Status()) {
		if reflect.DeepEqual(s.props.GetMust(Interface, name), v) {
			continue
		}
		s.props.SetMust(Interface, name, v) // EmitFalse: no signal
		changed[name] = dbus.MakeVariant(v)
	}
	if len(changed) == 0 {
		return
	}
	// Fails only when the connection is closed; nobody to tell then.
	_ = s.conn.Emit(s.path, signalPropChanged, Interface, changed, []string{})
}

// Close releases the bus name (or leaves its queue) and unexports the
// object. Calling it again does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	_, err := s.conn.ReleaseName(s.busName)
	s.unexport()
	if err != nil {
		return fmt.Errorf("close %s: release name: %w", s.busName, err)
	}
	return nil
}

// statusValues returns the state-like properties of st by D-Bus name, with
// values of their D-Bus types and Offloads copied (never nil).
func statusValues(st Status) map[string]any {
	offloads := []string{}
	if st.Offloads != nil {
		offloads = slices.Clone(st.Offloads)
	}
	return map[string]any{
		"Name":          st.Name,
		"Kind":          st.Kind,
		"DataPath":      st.DataPath,
		"Namespace":     st.Namespace,
		"Parent":        st.Parent,
		"IfIndex":       st.IfIndex,
		"ParentIfIndex": st.ParentIfIndex,
		"MACAddress":    st.MACAddress,
		"MACPolicy":     st.MACPolicy,
		"MTU":           st.MTU,
		"State":         st.State,
		"Carrier":       st.Carrier,
		"ParentCarrier": st.ParentCarrier,
		"Promiscuous":   st.Promiscuous,
		"Offloads":      offloads,
		"StartedUsec":   st.StartedUsec,
		"LastError":     st.LastError,
	}
}

// counterValues returns the counter properties of c by D-Bus name, with the
// maps copied (never nil).
func counterValues(c Counters) map[string]any {
	rx, tx := cloneDrops(c.RxDrops), cloneDrops(c.TxDrops)
	return map[string]any{
		"RxPackets":   c.RxPackets,
		"RxBytes":     c.RxBytes,
		"RxCoalesced": c.RxCoalesced,
		"TxPackets":   c.TxPackets,
		"TxBytes":     c.TxBytes,
		"Errors":      c.Errors,
		"RxSplit":     c.RxSplit,
		"TxSplit":     c.TxSplit,
		"RxDropped":   humanize.Sum(rx),
		"TxDropped":   humanize.Sum(tx),
		"RxDrops":     rx,
		"TxDrops":     tx,
	}
}

func cloneDrops(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return maps.Clone(m)
}

// properties is the org.freedesktop.DBus.Properties handler of a bridge
// object: state-like values from the *prop.Properties, counters live from
// the bridge, Set always refused.
type properties struct{ s *Server }

// Get implements org.freedesktop.DBus.Properties.Get.
func (p properties) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	if err := checkInterface(iface); err != nil {
		return dbus.Variant{}, err
	}
	if p.s.counter[name] {
		return dbus.MakeVariant(counterValues(p.s.b.Counters())[name]), nil
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	v, err := p.s.props.Get(Interface, name)
	if err != nil {
		return dbus.Variant{}, unknownProperty(name)
	}
	return detach(v), nil
}

// GetAll implements org.freedesktop.DBus.Properties.GetAll.
func (p properties) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if err := checkInterface(iface); err != nil {
		return nil, err
	}
	counters := counterValues(p.s.b.Counters())
	p.s.mu.Lock()
	all, err := p.s.props.GetAll(Interface)
	if err == nil {
		for name, v := range all {
			all[name] = detach(v)
		}
	}
	p.s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for name, v := range counters {
		all[name] = dbus.MakeVariant(v)
	}
	return all, nil
}

// Set implements org.freedesktop.DBus.Properties.Set: every property is
// read-only.
func (p properties) Set(iface, name string, _ dbus.Variant) *dbus.Error {
	if err := checkInterface(iface); err != nil {
		return err
	}
	p.s.mu.Lock()
	_, err := p.s.props.Get(Interface, name)
	p.s.mu.Unlock()
	if err != nil {
		return unknownProperty(name)
	}
	return dbus.NewError(errPropertyReadOnly, []any{fmt.Sprintf("property %s is read-only", name)})
}

// detach copies a slice value out of the *prop.Properties, where a later
// SetMust may overwrite it in place while the reply is being encoded.
// p.s.mu must be held.
func detach(v dbus.Variant) dbus.Variant {
	if ss, ok := v.Value().([]string); ok {
		return dbus.MakeVariant(slices.Clone(ss))
	}
	return v
}

func checkInterface(iface string) *dbus.Error {
	if iface != "" && iface != Interface {
		return dbus.NewError(errUnknownInterface, []any{fmt.Sprintf("unknown interface %s", quoteArg(iface))})
	}
	return nil
}

func unknownProperty(name string) *dbus.Error {
	return dbus.NewError(errUnknownProperty, []any{fmt.Sprintf("unknown property %s", quoteArg(name))})
}

// methods are the io.github.vethd.Bridge1 methods. godbus exports every
// method that returns *dbus.Error, so this type has these and no others.
type methods struct{ s *Server }

// Reload re-reads and applies the bridge's configuration; root only.
func (m methods) Reload(sender dbus.Sender) *dbus.Error {
	if err := m.s.requireRoot(sender, "Reload"); err != nil {
		return err
	}
	err := m.s.b.Reload()
	m.s.Update() // State, MTU, LastError, … may have changed
	if err != nil {
		return dbus.NewError(ErrorReloadFailed, []any{err.Error()})
	}
	return nil
}

// ResetCounters zeroes the bridge's counters; root only.
func (m methods) ResetCounters(sender dbus.Sender) *dbus.Error {
	if err := m.s.requireRoot(sender, "ResetCounters"); err != nil {
		return err
	}
	m.s.b.ResetCounters()
	return nil
}

// Describe returns a JSON document describing the bridge.
func (m methods) Describe() (string, *dbus.Error) {
	return m.s.b.Describe(), nil
}

// requireRoot returns AccessDenied unless sender's UID, as the bus daemon
// knows it, is 0. It backs up the bus policy.
func (s *Server) requireRoot(sender dbus.Sender, method string) *dbus.Error {
	var uid uint32
	err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		return dbus.NewError(errAccessDenied, []any{fmt.Sprintf("%s: cannot get the caller's uid: %v", method, err)})
	}
	if uid != 0 {
		return dbus.NewError(errAccessDenied, []any{fmt.Sprintf("%s requires uid 0, caller has uid %d", method, uid)})
	}
	return nil
}

// peerIntrospection describes org.freedesktop.DBus.Peer, which godbus
// answers for every object.
func peerIntrospection() introspect.Interface {
	return introspect.Interface{
		Name: ifacePeer,
		Methods: []introspect.Method{
			{Name: "Ping"},
			{Name: "GetMachineId", Args: []introspect.Arg{{Name: "machine_uuid", Type: "s", Direction: "out"}}},
		},
	}
}
