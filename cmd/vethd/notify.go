package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notifier talks sd_notify(3) to systemd: readiness, status, watchdog and
// the fd store. Without $NOTIFY_SOCKET (not started by systemd) every
// method does nothing. Plain messages go through go-systemd's
// sddaemon.SdNotify; messages that carry a descriptor (FDSTORE=1) are sent
// here with SCM_RIGHTS, which go-systemd does not offer.
type notifier struct {
	socket string
}

func newNotifier() *notifier { return &notifier{socket: os.Getenv("NOTIFY_SOCKET")} }

// enabled reports whether systemd listens.
func (n *notifier) enabled() bool { return n.socket != "" }

// send sends state, e.g. "READY=1\nSTATUS=…".
func (n *notifier) send(state string) error {
	if !n.enabled() {
		return nil
	}
	_, err := sddaemon.SdNotify(false, state)
	return err
}

// status sends STATUS=s (one line).
func (n *notifier) status(s string) error {
	return n.send("STATUS=" + strings.ReplaceAll(s, "\n", " "))
}

// reloading sends RELOADING=1 with the monotonic timestamp systemd 253+
// wants for it.
func (n *notifier) reloading() error {
	return n.send("RELOADING=1\n" + sddaemon.SdNotifyMonotonicUsec())
}

// storeFD hands f to systemd's fd store under name (FDSTORE=1, FDNAME=):
// systemd keeps it across a restart of the service and gives it back in
// $LISTEN_FDS. Storing the same descriptor again is harmless.
func (n *notifier) storeFD(name string, fd int) error {
	if !n.enabled() {
		return nil
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("store fd %s: %w", name, err)
	}
	defer unix.Close(sock)
	// x/sys reads a leading '@' as an abstract socket, as systemd means it.
	to := &unix.SockaddrUnix{Name: n.socket}
	msg := "FDSTORE=1\nFDNAME=" + name
	if err := unix.Sendmsg(sock, []byte(msg), unix.UnixRights(fd), to, 0); err != nil {
		return fmt.Errorf("store fd %s: %w", name, err)
	}
	return nil
}

// removeFD asks systemd to close the stored descriptors named name.
func (n *notifier) removeFD(name string) error {
	return n.send("FDSTOREREMOVE=1\nFDNAME=" + name)
}

// watchdogInterval returns how often systemd expects WATCHDOG=1 (0: never).
func (n *notifier) watchdogInterval() time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

// storedFDs takes the descriptors systemd passed at start ($LISTEN_FDS,
// named by $LISTEN_FDNAMES), by name, and unsets those variables.
func storedFDs() map[string]*os.File {
	m := map[string]*os.File{}
	for _, f := range activation.Files(true) {
		if old, ok := m[f.Name()]; ok {
			old.Close() // the same name twice: keep the last
		}
		m[f.Name()] = f
	}
	return m
}
