package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// asUnprivileged runs f as a reader without the right to read others'
// files: as a user, as it is; as root, on a locked OS thread that has
// dropped CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (capabilities are per
// thread; the thread ends with its goroutine, never reused).
func asUnprivileged(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		f()
		return
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread goes with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		drop := uint32(1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH)
		data[0].Effective &^= drop
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("drop CAP_DAC_OVERRIDE: %v", err)
	}
}

// othersOnly makes path readable to its owner only, and the owner someone
// else where it can (root: uid and gid 65534); as a user the mode is 0
// instead, which its owner cannot read either.
func othersOnly(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	} else {
		mode = 0
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(path, 0o755) }) // (so that TempDir's removal can go in)
}

// TestLoadUnreadable: a file or directory vethd may not read is a
// file-level error (Line 0, fs.ErrPermission) whose text, the journal's
// and the public one alike, says how to let the user vethd read it.
func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "veth1.conf")
	if err := os.WriteFile(path, []byte("[Bridge]\nParent=eth0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	othersOnly(t, path, 0o600)
	var err error
	asUnprivileged(t, func() { _, err = Load(path) })
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 0 || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Load = %v, want a file-level *Error wrapping fs.ErrPermission", err)
	}
	want := path + ": open: permission denied (vethd runs as the user vethd: give the file mode 0644, or 0640 and the group vethd: chown root:vethd " + path + "; its directory needs mode 0755)"
	if got := err.Error(); got != want {
		t.Errorf("Load error\n%s\nwant\n%s", got, want)
	}
	if got := ce.Public(); got != want {
		t.Errorf("Public\n%s\nwant\n%s", got, want)
	}

	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	othersOnly(t, sub, 0o700)
	var names []string
	asUnprivileged(t, func() { names, err = Names(sub) })
	if !errors.Is(err, fs.ErrPermission) || names != nil {
		t.Fatalf("Names = %q, %v; want fs.ErrPermission", names, err)
	}
	if want := sub + ": open: permission denied (vethd runs as the user vethd: give the directory mode 0755)"; err.Error() != want {
		t.Errorf("Names error\n%s\nwant\n%s", err, want)
	}

	// Other errors get no hint.
	_, err = Load(filepath.Join(dir, "veth2.conf"))
	if err == nil || strings.Contains(err.Error(), "user vethd") {
		t.Errorf("Load of a missing file = %v, want no hint", err)
	}
}
