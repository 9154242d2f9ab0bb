package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/vethd/vethd/pkg/dbusapi"
)

// unitStatus is what vethctl shows of a systemd unit.
type unitStatus struct {
	Name          string // "vethd@veth1.service"
	LoadState     string // loaded, not-found, masked, …
	ActiveState   string // active, reloading, inactive, failed, activating, deactivating
	SubState      string // running, dead, failed, …
	UnitFileState string // enabled, disabled, static, …; "" from ListUnits

	// Only Unit fills these.
	MainPID     uint32
	Result      string    // success, exit-code, signal, …
	StatusText  string    // the service's STATUS= (sd_notify)
	ActiveEnter time.Time // when it last became active; zero if never
}

// unitFile is a unit file and its enablement state.
type unitFile struct {
	Name  string // "vethd@veth1.service"
	State string // enabled, enabled-runtime, disabled, static, masked, …
}

// unitChange is a symlink EnableUnitFiles made or DisableUnitFiles removed.
type unitChange struct {
	Type        string // "symlink" or "unlink"
	Filename    string // the symlink
	Destination string // where it points ("" for unlink)
}

// units is what vethctl needs from systemd's manager
// (org.freedesktop.systemd1 on the system bus). Names are unit names such
// as "vethd@veth1.service". It exists so that tests can replace systemd.
type units interface {
	// ListUnits returns the loaded units whose names match one of
	// patterns, in any state (Manager.ListUnitsByPatterns).
	ListUnits(ctx context.Context, patterns []string) ([]unitStatus, error)
	// ListUnitFiles returns the unit files whose names match one of
	// patterns, with their state (Manager.ListUnitFilesByPatterns).
	ListUnitFiles(ctx context.Context, patterns []string) ([]unitFile, error)
	// Unit returns one unit's state; systemd loads the unit to answer, so
	// an instance of an installed template is "loaded" and "inactive".
	Unit(ctx context.Context, name string) (unitStatus, error)
	// Enable enables the unit in /etc (Manager.EnableUnitFiles, runtime
	// false, force false) and returns the symlinks made.
	Enable(ctx context.Context, name string) ([]unitChange, error)
	// Disable undoes Enable (Manager.DisableUnitFiles, runtime false) and
	// returns the symlinks removed.
	Disable(ctx context.Context, name string) ([]unitChange, error)
	// DaemonReload makes systemd re-read every unit file
	// (Manager.Reload: systemctl daemon-reload).
	DaemonReload(ctx context.Context) error
	// Start queues a start job with mode "replace". With wait, it waits
	// for the job to end, until ctx ends, and returns its result: done,
	// failed, canceled, timeout, dependency or skipped; without, it
	// returns "" once the job is queued.
	Start(ctx context.Context, name string, wait bool) (string, error)
	// Stop is Start for a stop job.
	Stop(ctx context.Context, name string, wait bool) (string, error)
	// ReloadUnit is Start for a reload job (ExecReload=).
	ReloadUnit(ctx context.Context, name string, wait bool) (string, error)
	// ResetFailed resets the unit's failed state (Manager.ResetFailedUnit).
	ResetFailed(ctx context.Context, name string) error
	// UnitByPID returns the name of the unit the process pid belongs to
	// (Manager.GetUnitByPID), "" if it belongs to none.
	UnitByPID(ctx context.Context, pid uint32) (string, error)
}

// bridges is what vethctl needs from the bridges on the bus: dbusapi.Client's
// methods, which busBridges bounds with busTimeout. Names are interface
// names; errors wrap dbusapi.ErrNoSuchBridge, dbusapi.ErrAccessDenied and
// dbusapi.ErrReloadFailed where those apply. It exists so that tests can
// replace the bus.
type bridges interface {
	// List returns the names of the bridges on the bus, sorted.
	List(ctx context.Context) ([]string, error)
	// Get returns a bridge's status and counters (properties: anyone).
	Get(ctx context.Context, name string) (dbusapi.Status, dbusapi.Counters, error)
	// Reload makes the daemon re-read and apply the bridge's file (root);
	// it returns once the daemon applied it, or why it could not.
	Reload(ctx context.Context, name string) error
	// ResetCounters zeroes the bridge's counters (root).
	ResetCounters(ctx context.Context, name string) error
	// Describe returns the daemon's JSON document about the bridge (root).
	Describe(ctx context.Context, name string) (string, error)
	// Owner returns the PID of the process that owns the bridge's bus
	// name (GetConnectionUnixProcessID: anyone), 0 if none does.
	Owner(ctx context.Context, name string) (uint32, error)
}

// busTimeout bounds every call on the bus, and the connection to it, as
// systemctl's default (DBUS_DEFAULT_TIMEOUT) does. Waiting for a systemd
// job is not a call: --timeout bounds that.
const busTimeout = 25 * time.Second

// callContext returns ctx bounded by timeout, for one bus call.
func callContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, timeout)
}

// callError rewords the error of a bus call that got no answer before
// its deadline; other errors are returned as they are.
func callError(err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer on the bus within %s: %w", timespan(timeout), err)
	}
	return err
}

// connectContext returns the context of a bus connection's lifetime:
// godbus closes the connection when it ends. It ends with ctx, and after
// busTimeout unless connected is called first, which bounds the
// handshake (authentication, Hello, AddMatch) that godbus does without a
// deadline. cancel ends it; call it when the connection is closed.
func connectContext(ctx context.Context) (cctx context.Context, connected func(), cancel context.CancelFunc) {
	cctx, cancel = context.WithCancel(ctx)
	t := time.AfterFunc(busTimeout, cancel)
	return cctx, func() { t.Stop() }, cancel
}

// connectError is noBus for a connection that failed, saying so if it
// was for want of an answer within busTimeout.
func connectError(cctx, ctx context.Context, err error) error {
	if cctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: no answer within %s", errNoBus, timespan(busTimeout))
	}
	return noBus(err)
}

// errNoBus wraps the error of a failed connection to the system bus.
var errNoBus = errors.New("cannot connect to the system bus")

// noBus wraps the error of a failed connection to the system bus.
func noBus(err error) error {
	if os.Getenv("DBUS_SYSTEM_BUS_ADDRESS") == "" && err.Error() == "system bus not found" {
		// godbus's words when no socket exists.
		return fmt.Errorf("%w: no /run/dbus/system_bus_socket (is dbus running?)", errNoBus)
	}
	return fmt.Errorf("%w: %w", errNoBus, err)
}

// systemd is units over go-systemd's connection to the system bus. Each
// call has a deadline of timeout. It is used from one goroutine.
type systemd struct {
	c       *sd.Conn
	timeout time.Duration
	cancel  context.CancelFunc // ends the connection's context
}

// openSystemd connects to systemd over the system bus (two connections:
// go-systemd receives job signals on its own).
func openSystemd(ctx context.Context) (units, error) {
	cctx, connected, cancel := connectContext(ctx)
	c, err := sd.NewSystemConnectionContext(cctx)
	connected()
	if err != nil {
		err = connectError(cctx, ctx, err)
		cancel()
		return nil, err
	}
	return &systemd{c: c, timeout: busTimeout, cancel: cancel}, nil
}

var (
	_ units     = (*systemd)(nil)
	_ io.Closer = (*systemd)(nil) // app.close closes it
)

func (s *systemd) Close() error {
	s.c.Close()
	s.cancel()
	return nil
}

func (s *systemd) ListUnits(ctx context.Context, patterns []string) ([]unitStatus, error) {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	list, err := s.c.ListUnitsByPatternsContext(ctx, nil, patterns)
	if err != nil {
		return nil, fmt.Errorf("list systemd units: %w", callError(err, s.timeout))
	}
	out := make([]unitStatus, 0, len(list))
	for _, u := range list {
		out = append(out, unitStatus{Name: u.Name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState})
	}
	return out, nil
}

func (s *systemd) ListUnitFiles(ctx context.Context, patterns []string) ([]unitFile, error) {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	list, err := s.c.ListUnitFilesByPatternsContext(ctx, nil, patterns)
	if err != nil {
		return nil, fmt.Errorf("list systemd unit files: %w", callError(err, s.timeout))
	}
	out := make([]unitFile, 0, len(list))
	for _, f := range list {
		out = append(out, unitFile{Name: path.Base(f.Path), State: f.Type})
	}
	return out, nil
}

func (s *systemd) Unit(ctx context.Context, name string) (unitStatus, error) {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	p, err := s.c.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return unitStatus{}, fmt.Errorf("get properties of %s: %w", name, callError(err, s.timeout))
	}
	u := unitStatus{
		Name:          name,
		LoadState:     prop[string](p, "LoadState"),
		ActiveState:   prop[string](p, "ActiveState"),
		SubState:      prop[string](p, "SubState"),
		UnitFileState: prop[string](p, "UnitFileState"),
	}
	if us := prop[uint64](p, "ActiveEnterTimestamp"); us != 0 {
		u.ActiveEnter = time.UnixMicro(int64(us))
	}
	// The service's own properties; a unit that is not-found has none.
	if sp, err := s.c.GetUnitTypePropertiesContext(ctx, name, "Service"); err == nil {
		u.MainPID = prop[uint32](sp, "MainPID")
		u.Result = prop[string](sp, "Result")
		u.StatusText = prop[string](sp, "StatusText")
	}
	return u, nil
}

// prop returns p[name] if it has type T, else T's zero value.
func prop[T any](p map[string]any, name string) T {
	v, _ := p[name].(T)
	return v
}

func (s *systemd) Enable(ctx context.Context, name string) ([]unitChange, error) {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	_, changes, err := s.c.EnableUnitFilesContext(ctx, []string{name}, false, false)
	if err != nil {
		return nil, fmt.Errorf("enable %s: %w", name, callError(err, s.timeout))
	}
	out := make([]unitChange, 0, len(changes))
	for _, c := range changes {
		out = append(out, unitChange(c))
	}
	return out, nil
}

func (s *systemd) Disable(ctx context.Context, name string) ([]unitChange, error) {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	changes, err := s.c.DisableUnitFilesContext(ctx, []string{name}, false)
	if err != nil {
		return nil, fmt.Errorf("disable %s: %w", name, callError(err, s.timeout))
	}
	out := make([]unitChange, 0, len(changes))
	for _, c := range changes {
		out = append(out, unitChange(c))
	}
	return out, nil
}

func (s *systemd) DaemonReload(ctx context.Context) error {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	if err := s.c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("reload systemd (daemon-reload): %w", callError(err, s.timeout))
	}
	return nil
}

func (s *systemd) Start(ctx context.Context, name string, wait bool) (string, error) {
	return s.job(ctx, "start", s.c.StartUnitContext, name, wait)
}

func (s *systemd) Stop(ctx context.Context, name string, wait bool) (string, error) {
	return s.job(ctx, "stop", s.c.StopUnitContext, name, wait)
}

func (s *systemd) ReloadUnit(ctx context.Context, name string, wait bool) (string, error) {
	return s.job(ctx, "reload", s.c.ReloadUnitContext, name, wait)
}

// job queues a job with queue (mode "replace") and, with wait, waits for
// JobRemoved until ctx ends. The error of a wait cut short wraps
// ctx.Err().
func (s *systemd) job(ctx context.Context, op string,
	queue func(ctx context.Context, name, mode string, ch chan<- string) (int, error), name string, wait bool) (string, error) {
	// Buffered: go-systemd's signal loop must never block on us, also
	// after we gave up waiting. Nil: go-systemd does not track the job.
	var ch chan string
	if wait {
		ch = make(chan string, 1)
	}
	cctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	if _, err := queue(cctx, name, "replace", ch); err != nil {
		return "", fmt.Errorf("%s %s: %w", op, name, callError(err, s.timeout))
	}
	if !wait {
		return "", nil
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return "", fmt.Errorf("%s %s: %w", op, name, ctx.Err())
	}
}

func (s *systemd) ResetFailed(ctx context.Context, name string) error {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	if err := s.c.ResetFailedUnitContext(ctx, name); err != nil {
		return fmt.Errorf("reset-failed %s: %w", name, callError(err, s.timeout))
	}
	return nil
}

func (s *systemd) UnitByPID(ctx context.Context, pid uint32) (string, error) {
	ctx, cancel := callContext(ctx, s.timeout)
	defer cancel()
	name, err := s.c.GetUnitNameByPID(ctx, pid)
	if dbusapi.ErrorName(err) == errNameNoUnitForPID {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("ask systemd which unit PID %d belongs to: %w", pid, callError(err, s.timeout))
	}
	return name, nil
}

// busBridges is bridges over its own connection to the system bus: a
// dbusapi.Client with a deadline of timeout for every call. It is used
// from one goroutine.
type busBridges struct {
	conn    *dbus.Conn
	c       *dbusapi.Client
	timeout time.Duration
	cancel  context.CancelFunc // ends the connection's context
}

// openBridges connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS or
// /run/dbus/system_bus_socket).
func openBridges(ctx context.Context) (bridges, error) {
	cctx, connected, cancel := connectContext(ctx)
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(cctx))
	connected()
	if err != nil {
		err = connectError(cctx, ctx, err)
		cancel()
		return nil, err
	}
	return &busBridges{conn: conn, c: dbusapi.NewClient(conn), timeout: busTimeout, cancel: cancel}, nil
}

var (
	_ bridges   = (*busBridges)(nil)
	_ io.Closer = (*busBridges)(nil) // app.close closes it
)

func (b *busBridges) Close() error {
	err := b.conn.Close()
	b.cancel()
	return err
}

func (b *busBridges) List(ctx context.Context) ([]string, error) {
	ctx, cancel := callContext(ctx, b.timeout)
	defer cancel()
	names, err := b.c.List(ctx)
	return names, callError(err, b.timeout)
}

func (b *busBridges) Get(ctx context.Context, name string) (dbusapi.Status, dbusapi.Counters, error) {
	ctx, cancel := callContext(ctx, b.timeout)
	defer cancel()
	st, c, err := b.c.Get(ctx, name)
	return st, c, callError(err, b.timeout)
}

func (b *busBridges) Reload(ctx context.Context, name string) error {
	ctx, cancel := callContext(ctx, b.timeout)
	defer cancel()
	return callError(b.c.Reload(ctx, name), b.timeout)
}

func (b *busBridges) ResetCounters(ctx context.Context, name string) error {
	ctx, cancel := callContext(ctx, b.timeout)
	defer cancel()
	return callError(b.c.ResetCounters(ctx, name), b.timeout)
}

func (b *busBridges) Describe(ctx context.Context, name string) (string, error) {
	ctx, cancel := callContext(ctx, b.timeout)
	defer cancel()
	doc, err := b.c.Describe(ctx, name)
	return doc, callError(err, b.timeout)
}

func (b *busBridges) Owner(ctx context.Context, name string) (uint32, error) {
	ctx, cancel := callContext(ctx, b.timeout)
	defer cancel()
	var pid uint32
	err := b.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, dbusapi.BusName(name)).Store(&pid)
	if dbusapi.ErrorName(err) == errNameHasNoOwner {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ask the bus which process runs %s: %w", name, callError(err, b.timeout))
	}
	return pid, nil
}

// D-Bus error names that vethctl tells apart.
const (
	errNameNoSuchUnit   = "org.freedesktop.systemd1.NoSuchUnit"       // systemd: no such unit
	errNameNoUnitForPID = "org.freedesktop.systemd1.NoUnitForPID"     // systemd: a process in no unit
	errNameHasNoOwner   = "org.freedesktop.DBus.Error.NameHasNoOwner" // the bus: no one owns the name
)

// isAccessDenied reports whether err is a refusal: by the bus policy, the
// daemon, polkit (dbusapi.IsAccessDenied), or the file system.
func isAccessDenied(err error) bool {
	return dbusapi.IsAccessDenied(err) || errors.Is(err, fs.ErrPermission)
}

// isNoSuch reports whether err says a bridge or unit does not exist.
func isNoSuch(err error) bool {
	return errors.Is(err, dbusapi.ErrNoSuchBridge) || dbusapi.ErrorName(err) == errNameNoSuchUnit
}
