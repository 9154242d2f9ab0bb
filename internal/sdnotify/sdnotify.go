// Package sdnotify talks sd_notify(3) to systemd: readiness, status,
// reloading, stopping, the watchdog and the fd store (FDSTORE=1 with the
// descriptor sent over SCM_RIGHTS), and takes the descriptors systemd
// passes back at start ($LISTEN_FDS).
//
// Plain messages go through go-systemd's daemon.SdNotify; messages that
// carry a descriptor are sent here, as go-systemd does not offer them.
// The passed descriptors are taken here too (listenFiles, as go-systemd's
// activation.Files does it): that package also holds TLS listeners, and
// importing it links crypto/tls into vethd, 1.3 MB of binary and 0.8 MiB
// of resident memory per process (docs/design.md, "Map of the house").
// Package sdnotifytest is a fake notify socket for tests.
package sdnotify

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends sd_notify messages to the socket in $NOTIFY_SOCKET. The
// zero Notifier (and one made without $NOTIFY_SOCKET: not started by
// systemd) is disabled: every method does nothing. It holds no state
// beyond what New read, so its methods may be called from any goroutine.
type Notifier struct {
	socket    string
	noFDStore bool
}

// New returns a Notifier for the environment systemd set up:
// $NOTIFY_SOCKET and $FDSTORE.
func New() *Notifier {
	return &Notifier{socket: os.Getenv("NOTIFY_SOCKET"), noFDStore: os.Getenv("FDSTORE") == "0"}
}

// Enabled reports whether systemd listens.
func (n *Notifier) Enabled() bool { return n.socket != "" }

// NoFDStore reports whether systemd said that it keeps no descriptors for
// this service ($FDSTORE=0: FileDescriptorStoreMax=0, systemd ≥ 254).
func (n *Notifier) NoFDStore() bool { return n.noFDStore }

// Send sends state, e.g. "READY=1\nSTATUS=…".
func (n *Notifier) Send(state string) error {
	if !n.Enabled() {
		return nil
	}
	_, err := sddaemon.SdNotify(false, state)
	return err
}

// Status returns the message STATUS=s, with s made one line.
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// Reloading returns the message RELOADING=1 with the monotonic timestamp
// systemd 253+ wants with it.
func Reloading() string {
	return "RELOADING=1\n" + sddaemon.SdNotifyMonotonicUsec()
}

// StoreFD hands fd to systemd's fd store under name (FDSTORE=1, FDNAME=):
// systemd keeps a copy across a restart of the service and gives it back in
// $LISTEN_FDS. Storing the same descriptor again is harmless. fd stays
// the caller's.
func (n *Notifier) StoreFD(name string, fd int) error {
	if !n.Enabled() {
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

// RemoveFD asks systemd to close the stored descriptors named name
// (FDSTOREREMOVE=1).
func (n *Notifier) RemoveFD(name string) error {
	return n.Send("FDSTOREREMOVE=1\nFDNAME=" + name)
}

// WatchdogInterval returns how often systemd expects WATCHDOG=1 (0: never),
// from $WATCHDOG_USEC and $WATCHDOG_PID.
func (n *Notifier) WatchdogInterval() time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

// StoredFDs takes the descriptors systemd passed at start ($LISTEN_FDS,
// named by $LISTEN_FDNAMES), by name, and unsets those variables. Of two
// with the same name, the last is kept and the other closed.
func StoredFDs() map[string]*os.File {
	m := map[string]*os.File{}
	for _, f := range listenFiles() {
		if old, ok := m[f.Name()]; ok {
			old.Close()
		}
		m[f.Name()] = f
	}
	return m
}

// listenFdsStart is SD_LISTEN_FDS_START, the first passed descriptor.
const listenFdsStart = 3

// listenFiles returns the descriptors systemd passed to this process
// (sd_listen_fds(3): $LISTEN_PID is this process, $LISTEN_FDS of them
// from fd 3 on, named by the colon-separated $LISTEN_FDNAMES, else
// LISTEN_FD_N), each close-on-exec, and unsets the three variables;
// exactly what go-systemd's activation.Files(true) does.
func listenFiles() []*os.File {
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil
	}
	nfds, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || nfds <= 0 {
		return nil
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	files := make([]*os.File, 0, nfds)
	for fd := listenFdsStart; fd < listenFdsStart+nfds; fd++ {
		syscall.CloseOnExec(fd)
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i := fd - listenFdsStart; i < len(names) && names[i] != "" {
			name = names[i]
		}
		files = append(files, os.NewFile(uintptr(fd), name))
	}
	return files
}
