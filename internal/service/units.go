package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/pkg/dbusapi"
)

// Coexistence of the two units (docs/design.md, "Coexistence"): a bridge
// NAME runs in vethd@NAME.service when that unit is enabled or running,
// and in vethd.service (vethd --all) otherwise. vethd --all asks systemd
// which instances claim their bridge (Units.Claim) at start, at each
// reload and when a bridge's name is in use; vethd --instance NAME finds
// who owns NAME's bus name (Units.Owner) and, if it is vethd.service,
// has it reload (Units.Reload), which makes it hand NAME over.

// Unit names.
const (
	allUnit        = "vethd.service" // vethd --all
	instancePrefix = "vethd@"        // vethd@NAME.service: vethd --instance NAME
	unitSuffix     = ".service"
)

// instanceUnit returns the unit of vethd --instance name.
func instanceUnit(name string) string { return instancePrefix + name + unitSuffix }

// unitable reports whether name is, as it is, the instance of a unit
// vethd@NAME.service whose %i passes it to --instance: only characters
// valid in unit names that systemd-escape leaves alone (vethctl's rule).
// A bridge with another name cannot have an instance unit of its own.
func unitable(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !(alnum || c == '_' || c == '-' || (c == '.' && i > 0)) {
			return false
		}
	}
	return name != ""
}

// unitsTimeout bounds each question to systemd or the bus.
const unitsTimeout = 5 * time.Second

// Units is what the service asks systemd's manager (org.freedesktop.systemd1)
// and the bus about which unit runs a bridge. The Run goroutine makes one
// per bus connection (Config.Units) and is its only user.
type Units interface {
	// Claim returns the state of vethd@NAME.service, the instance unit
	// of the bridge name; a unit that does not exist has the zero Claim.
	Claim(ctx context.Context, name string) (Claim, error)
	// Owner returns the process that owns the bridge name's bus name
	// and the unit systemd says that process belongs to
	// (GetConnectionUnixProcessID, Manager.GetUnitByPID); pid 0 if no
	// one owns the name, unit "" if systemd does not know the process.
	Owner(ctx context.Context, name string) (pid uint32, unit string, err error)
	// Reload queues a reload job of unit (systemctl reload), in mode
	// "fail": it is refused, not queued, while another job of unit is
	// pending (a stop, say). It does not wait for the job.
	Reload(ctx context.Context, unit string) error
	// Job returns the unit that process pid belongs to and the type of
	// the job systemd runs for that unit ("stop", "restart", …; "" if
	// none). The error wraps errNotSystemd when there is no systemd on
	// the bus or it knows no unit for pid.
	Job(ctx context.Context, pid uint32) (unit, jobType string, err error)
}

// errNotSystemd says that vethd does not run as a systemd unit: systemd
// is not on the bus, or it knows no unit for the process.
var errNotSystemd = errors.New("not run by systemd")

// Claim is the state of an instance unit vethd@NAME.service.
type Claim struct {
	UnitFileState string // enabled, enabled-runtime, disabled, masked, …; "" without a unit file
	ActiveState   string // active, activating, inactive, failed, …; "" if not loaded
}

// Claims reports whether the instance unit claims its bridge: it is
// enabled (it runs NAME from boot on), or it is running, starting,
// reloading or stopping it. A disabled unit that is inactive or failed
// claims nothing.
func (c Claim) Claims() bool {
	if strings.HasPrefix(c.UnitFileState, "enabled") {
		return true
	}
	switch c.ActiveState {
	case "active", "activating", "reloading", "deactivating":
		return true
	}
	return false
}

// String is "enabled, active", as the log says it.
func (c Claim) String() string {
	f, a := c.UnitFileState, c.ActiveState
	if f == "" {
		f = "no unit file"
	}
	if a == "" {
		a = "inactive"
	}
	return f + ", " + a
}

// Bus names and paths of systemd's manager and of the bus itself.
const (
	systemdDest       = "org.freedesktop.systemd1"
	systemdPath       = dbus.ObjectPath("/org/freedesktop/systemd1")
	systemdManager    = "org.freedesktop.systemd1.Manager"
	systemdUnit       = "org.freedesktop.systemd1.Unit"
	errNoSuchUnit     = "org.freedesktop.systemd1.NoSuchUnit"
	errFileNotFound   = "org.freedesktop.DBus.Error.FileNotFound" // GetUnitFileState of no unit file
	errNameNoOwner    = "org.freedesktop.DBus.Error.NameHasNoOwner"
	errNoUnitForPID   = "org.freedesktop.systemd1.NoUnitForPID"
	errServiceUnknown = "org.freedesktop.DBus.Error.ServiceUnknown" // no systemd on this bus
	systemdJob        = "org.freedesktop.systemd1.Job"
	systemdService    = "org.freedesktop.systemd1.Service"
	// ReloadUnit refused to a user polkit does not authorize, and
	// without polkit.
	errInteractiveAuth = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
	errAccessDenied    = "org.freedesktop.DBus.Error.AccessDenied"
)

// busUnits is Units over a connection to the system bus.
type busUnits struct {
	conn *dbus.Conn
}

var _ Units = (*busUnits)(nil)

// newBusUnits is the default Config.Units.
func newBusUnits(conn *dbus.Conn) Units { return &busUnits{conn: conn} }

func (u *busUnits) manager() dbus.BusObject { return u.conn.Object(systemdDest, systemdPath) }

// Claim is Units' Claim. Equivalent to: `systemctl is-enabled
// vethd@NAME.service` and `systemctl is-active vethd@NAME.service`.
func (u *busUnits) Claim(ctx context.Context, name string) (Claim, error) {
	unit := instanceUnit(name)
	var c Claim
	err := u.manager().CallWithContext(ctx, systemdManager+".GetUnitFileState", 0, unit).Store(&c.UnitFileState)
	if err != nil && !isDBusError(err, errNoSuchUnit) && !isDBusError(err, errFileNotFound) {
		return Claim{}, fmt.Errorf("ask systemd whether %s is enabled: %w", unit, err)
	}
	var path dbus.ObjectPath
	err = u.manager().CallWithContext(ctx, systemdManager+".GetUnit", 0, unit).Store(&path)
	if isDBusError(err, errNoSuchUnit) {
		return c, nil // not loaded: not running
	}
	if err != nil {
		return Claim{}, fmt.Errorf("ask systemd about %s: %w", unit, err)
	}
	v, err := u.property(ctx, path, systemdUnit, "ActiveState")
	if err != nil {
		return Claim{}, fmt.Errorf("ask systemd whether %s is active: %w", unit, err)
	}
	c.ActiveState, _ = v.Value().(string)
	return c, nil
}

// Owner is Units' Owner. Equivalent to: `busctl status
// io.github.vethd.Bridge1.LABEL` (PID, Unit).
func (u *busUnits) Owner(ctx context.Context, name string) (uint32, string, error) {
	busName := dbusapi.BusName(name)
	var pid uint32
	err := u.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, busName).Store(&pid)
	switch {
	case isDBusError(err, errNameNoOwner):
		return 0, "", nil
	case err != nil:
		return 0, "", fmt.Errorf("ask the bus who owns %s: %w", busName, err)
	}
	var path dbus.ObjectPath
	err = u.manager().CallWithContext(ctx, systemdManager+".GetUnitByPID", 0, pid).Store(&path)
	switch {
	case isDBusError(err, errNoUnitForPID), isDBusError(err, errNoSuchUnit):
		return pid, "", nil
	case err != nil:
		return pid, "", fmt.Errorf("ask systemd which unit PID %d belongs to: %w", pid, err)
	}
	v, err := u.property(ctx, path, systemdUnit, "Id")
	if err != nil {
		return pid, "", fmt.Errorf("ask systemd which unit PID %d belongs to: %w", pid, err)
	}
	unit, _ := v.Value().(string)
	return pid, unit, nil
}

// Reload is Units' Reload. Equivalent to: `systemctl reload --no-block
// --job-mode=fail UNIT`. The units run vethd as the user vethd, whom
// systemd does not let manage units (polkit: "Interactive authentication
// required"; no polkit: "Access denied"): then Reload does what the
// unit's ExecReload= does, SIGHUP to its main process (`systemctl kill
// -s HUP --kill-whom=main UNIT`), which kill(2) allows to a process of
// the same user.
func (u *busUnits) Reload(ctx context.Context, unit string) error {
	var job dbus.ObjectPath
	err := u.manager().CallWithContext(ctx, systemdManager+".ReloadUnit", 0, unit, "fail").Store(&job)
	if isDBusError(err, errInteractiveAuth) || isDBusError(err, errAccessDenied) {
		err = u.hangUpMain(ctx, unit)
	}
	if err != nil {
		return fmt.Errorf("reload %s: %w", unit, err)
	}
	return nil
}

// hangUpMain sends SIGHUP to the main process of unit.
func (u *busUnits) hangUpMain(ctx context.Context, unit string) error {
	var path dbus.ObjectPath
	if err := u.manager().CallWithContext(ctx, systemdManager+".GetUnit", 0, unit).Store(&path); err != nil {
		return fmt.Errorf("ask systemd about %s: %w", unit, err)
	}
	v, err := u.property(ctx, path, systemdService, "MainPID")
	if err != nil {
		return fmt.Errorf("ask systemd for the main PID of %s: %w", unit, err)
	}
	pid, _ := v.Value().(uint32)
	if pid == 0 {
		return fmt.Errorf("%s has no main process", unit)
	}
	if err := syscall.Kill(int(pid), syscall.SIGHUP); err != nil {
		return fmt.Errorf("send SIGHUP to PID %d of %s: %w", pid, unit, err)
	}
	return nil
}

// Job is Units' Job. Equivalent to: `systemctl show -p Id,Job` of the
// unit of pid, then `busctl get-property org.freedesktop.systemd1 JOB
// org.freedesktop.systemd1.Job JobType`.
func (u *busUnits) Job(ctx context.Context, pid uint32) (string, string, error) {
	var path dbus.ObjectPath
	err := u.manager().CallWithContext(ctx, systemdManager+".GetUnitByPID", 0, pid).Store(&path)
	switch {
	case isDBusError(err, errNoUnitForPID), isDBusError(err, errNoSuchUnit),
		isDBusError(err, errServiceUnknown), isDBusError(err, errNameNoOwner):
		return "", "", fmt.Errorf("ask systemd which unit PID %d belongs to: %w (%w)", pid, errNotSystemd, err)
	case err != nil:
		return "", "", fmt.Errorf("ask systemd which unit PID %d belongs to: %w", pid, err)
	}
	v, err := u.property(ctx, path, systemdUnit, "Id")
	if err != nil {
		return "", "", fmt.Errorf("ask systemd which unit PID %d belongs to: %w", pid, err)
	}
	unit, _ := v.Value().(string)
	// Job is (uo): the job's id and path, id 0 for none.
	v, err = u.property(ctx, path, systemdUnit, "Job")
	if err != nil {
		return unit, "", fmt.Errorf("ask systemd for the job of %s: %w", unit, err)
	}
	fields, _ := v.Value().([]any)
	if len(fields) != 2 {
		return unit, "", fmt.Errorf("ask systemd for the job of %s: Job is %s, not (uo)", unit, v.Signature())
	}
	id, _ := fields[0].(uint32)
	jobPath, _ := fields[1].(dbus.ObjectPath)
	if id == 0 {
		return unit, "", nil
	}
	v, err = u.property(ctx, jobPath, systemdJob, "JobType")
	if err != nil {
		return unit, "", fmt.Errorf("ask systemd for the type of job %d of %s: %w", id, unit, err)
	}
	t, _ := v.Value().(string)
	return unit, t, nil
}

// property reads the property iface.name of systemd's object path.
func (u *busUnits) property(ctx context.Context, path dbus.ObjectPath, iface, name string) (dbus.Variant, error) {
	var v dbus.Variant
	err := u.conn.Object(systemdDest, path).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, iface, name).Store(&v)
	return v, err
}

// isDBusError reports whether err is the D-Bus error name.
func isDBusError(err error, name string) bool { return err != nil && dbusapi.ErrorName(err) == name }
