package macaddr

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadMachineIDBounded: a device or an oversized file is refused
// quickly with an error naming it, not read without bound.
func TestReadMachineIDBounded(t *testing.T) {
	start := time.Now()
	_, err := ReadMachineID("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "/dev/zero") || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: error %v, want one naming it as not a regular file", err)
	}
	big := filepath.Join(t.TempDir(), "machine-id")
	if err := os.WriteFile(big, []byte("3d1219c7c4c5404aaa1d2a6d2adfdaa4\n"+strings.Repeat(" ", 2*maxMachineIDSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMachineID(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: error %v, want one saying it is too large", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}
