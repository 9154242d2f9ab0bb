package dbusapi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/godbus/dbus/v5"
)

// Client is vethctl's view of the bridges on a bus. Its methods take a
// context (which bounds the call) and a bridge's interface name, and
// return errors that wrap ErrNoSuchBridge, ErrAccessDenied or
// ErrReloadFailed where those apply (and the context's error when it
// ended the call).
type Client struct {
	conn *dbus.Conn
}

// NewClient returns a Client that talks over conn.
func NewClient(conn *dbus.Conn) *Client { return &Client{conn: conn} }

// List returns the interface names of every bridge on the bus (owners of
// NamePrefix+label), sorted.
func (c *Client) List(ctx context.Context) ([]string, error) {
	var names []string
	if err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		return nil, fmt.Errorf("list bridges: %w", err)
	}
	var bridges []string
	for _, n := range names {
		label, ok := strings.CutPrefix(n, NamePrefix)
		if !ok || label == "" || strings.Contains(label, ".") {
			continue
		}
		bridges = append(bridges, UnescapeLabel(label))
	}
	slices.Sort(bridges)
	return bridges, nil
}

// Get returns the bridge's status and counters, read with one GetAll.
// Properties the daemon does not have are left zero.
func (c *Client) Get(ctx context.Context, name string) (Status, Counters, error) {
	var all map[string]dbus.Variant
	if err := c.call(ctx, name, ifaceProperties+".GetAll", Interface).Store(&all); err != nil {
		return Status{}, Counters{}, callError("get", name, err)
	}
	d := decoder{props: all}
	st := Status{
		Name:          get[string](&d, "Name"),
		Kind:          get[string](&d, "Kind"),
		DataPath:      get[string](&d, "DataPath"),
		Namespace:     get[string](&d, "Namespace"),
		Parent:        get[string](&d, "Parent"),
		IfIndex:       get[int32](&d, "IfIndex"),
		ParentIfIndex: get[int32](&d, "ParentIfIndex"),
		MACAddress:    get[string](&d, "MACAddress"),
		MACPolicy:     get[string](&d, "MACPolicy"),
		MTU:           get[uint32](&d, "MTU"),
		State:         get[string](&d, "State"),
		Carrier:       get[bool](&d, "Carrier"),
		ParentCarrier: get[bool](&d, "ParentCarrier"),
		Promiscuous:   get[bool](&d, "Promiscuous"),
		Offloads:      get[[]string](&d, "Offloads"),
		StartedUsec:   get[uint64](&d, "StartedUsec"),
		LastError:     get[string](&d, "LastError"),
	}
	ctr := Counters{
		RxPackets:   get[uint64](&d, "RxPackets"),
		RxBytes:     get[uint64](&d, "RxBytes"),
		RxCoalesced: get[uint64](&d, "RxCoalesced"),
		TxPackets:   get[uint64](&d, "TxPackets"),
		TxBytes:     get[uint64](&d, "TxBytes"),
		Errors:      get[uint64](&d, "Errors"),
		RxSplit:     get[uint64](&d, "RxSplit"),
		TxSplit:     get[uint64](&d, "TxSplit"),
		RxDrops:     get[map[string]uint64](&d, "RxDrops"),
		TxDrops:     get[map[string]uint64](&d, "TxDrops"),
	}
	if d.err != nil {
		return Status{}, Counters{}, fmt.Errorf("get %s: %w", name, d.err)
	}
	return st, ctr, nil
}

// Reload asks the daemon to re-read and apply the bridge's configuration.
func (c *Client) Reload(ctx context.Context, name string) error {
	if err := c.call(ctx, name, Interface+".Reload").Err; err != nil {
		return callError("reload", name, err)
	}
	return nil
}

// ResetCounters asks the daemon to zero the bridge's counters.
func (c *Client) ResetCounters(ctx context.Context, name string) error {
	if err := c.call(ctx, name, Interface+".ResetCounters").Err; err != nil {
		return callError("reset counters of", name, err)
	}
	return nil
}

// Describe returns the daemon's JSON description of the bridge.
func (c *Client) Describe(ctx context.Context, name string) (string, error) {
	var doc string
	if err := c.call(ctx, name, Interface+".Describe").Store(&doc); err != nil {
		return "", callError("describe", name, err)
	}
	return doc, nil
}

func (c *Client) call(ctx context.Context, name, method string, args ...any) *dbus.Call {
	obj := c.conn.Object(BusName(name), ObjectPath(name))
	return obj.CallWithContext(ctx, method, dbus.FlagNoAutoStart, args...)
}

// callError wraps err, from operation op on bridge name, mapping D-Bus
// error names to this package's errors.
func callError(op, name string, err error) error {
	de, ok := asError(err)
	if !ok {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	switch de.Name {
	case errServiceUnknown, errNameHasNoOwner, errUnknownObject:
		return fmt.Errorf("%s %s: %w", op, name, ErrNoSuchBridge)
	case errAccessDenied:
		return fmt.Errorf("%s %s: %w", op, name, ErrAccessDenied)
	case ErrorReloadFailed:
		return fmt.Errorf("%s %s: %w: %s", op, name, ErrReloadFailed, errorMessage(de))
	}
	return fmt.Errorf("%s %s: %w", op, name, de)
}

// errorMessage returns a D-Bus error's message: its first string argument.
func errorMessage(e dbus.Error) string {
	if len(e.Body) > 0 {
		if s, ok := e.Body[0].(string); ok {
			return s
		}
	}
	return e.Name
}

// decoder takes typed values out of a GetAll reply and remembers the first
// type mismatch.
type decoder struct {
	props map[string]dbus.Variant
	err   error
}

func get[T any](d *decoder, name string) T {
	var zero T
	v, ok := d.props[name]
	if !ok {
		return zero
	}
	t, ok := v.Value().(T)
	if !ok && d.err == nil {
		d.err = fmt.Errorf("property %s has type %s, want %s", name, v.Signature(), dbus.SignatureOf(zero))
	}
	return t
}
