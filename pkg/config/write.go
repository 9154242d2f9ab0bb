package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes b.Marshal() to path with mode 0644, creating path's
// directory with mode 0755 if it does not exist (whatever the umask).
// Without replace it fails, with an error wrapping fs.ErrExist, if path
// exists; with replace it replaces path atomically (a temporary file in
// the same directory, synced, then renamed over path).
func Write(path string, b *Bridge, replace bool) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	var f *os.File
	var err error
	if replace {
		f, err = os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := f.Name()
	_, err = f.Write(b.Marshal())
	if err == nil {
		err = f.Chmod(0o644) // whatever the umask; CreateTemp makes 0600
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && replace {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
