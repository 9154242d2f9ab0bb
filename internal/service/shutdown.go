package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// shutdownTimeout bounds the question to systemd at SIGTERM: whether it
// stops or restarts the unit.
const shutdownTimeout = time.Second

// restartJobs are the job types under which a SIGTERM is a restart:
// the interfaces stay for the next vethd.
var restartJobs = map[string]bool{"restart": true, "try-restart": true, "reload-or-restart": true}

// keepForRestart decides, at shutdown, whether the bridges are released
// (their interfaces stay for the next vethd: a veth pair outlives the
// process) or closed (the interfaces go). It asks systemd for the job
// under which the unit of this process stops:
//
//	not under systemd (no NOTIFY_SOCKET), no bus,
//	systemd not on the bus or no unit for us    → close
//	job restart, try-restart, reload-or-restart → release
//	any other job (stop), or none (a plain kill) → close
//	the question fails while systemd listens    → release, with a warning
//	                                               (better a stale interface
//	                                               than a lost lease)
//
// Run goroutine only (it uses d.units).
func (d *daemon) keepForRestart() bool {
	if !d.notify.Enabled() || d.units == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	unit, job, err := d.units.Job(ctx, uint32(os.Getpid()))
	switch {
	case errors.Is(err, errNotSystemd):
		return false
	case err != nil:
		d.log.Warn(fmt.Sprintf("Cannot tell whether systemd stops or restarts %s (%v): keeping the interfaces for a restart", unitOr(unit), err))
		return true
	case restartJobs[job]:
		d.log.Info(fmt.Sprintf("systemd restarts %s (job %s): keeping the interfaces for the next vethd", unit, job))
		return true
	}
	return false
}

// unitOr is unit, or "this service" when it is not known.
func unitOr(unit string) string {
	if unit == "" {
		return "this service"
	}
	return unit
}
