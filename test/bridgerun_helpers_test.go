package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bridgerun (test/internal/bridgerun) runs one bridge of pkg/bridge as a
// process inside a test namespace: the way to drive the veth kind and the
// namespace transitions before vethd's own flags for them exist.
var (
	bridgerunOnce sync.Once
	bridgerunBin  string
	bridgerunErr  error
)

// needBridgerun builds test/internal/bridgerun under suiteRoot (once) and
// returns its path.
func needBridgerun(t *testing.T) string {
	t.Helper()
	bridgerunOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		out := filepath.Join(suiteRoot, "bridgerun")
		cmd := exec.Command(goBin, "build", "-o", out, "./test/internal/bridgerun")
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			bridgerunErr = fmt.Errorf("go build ./test/internal/bridgerun: %w\n%s", err, b)
			return
		}
		bridgerunBin = out
	})
	if bridgerunErr != nil {
		t.Fatal(bridgerunErr)
	}
	return bridgerunBin
}

// StartBridge runs a bridge of kind for veth1 on eth0 with mac in the host
// namespace and waits until it has started; it is stopped at cleanup.
func (l *LAN) StartBridge(t *testing.T, kind, mac string, extra ...string) *Proc {
	t.Helper()
	bin := needBridgerun(t)
	args := append([]string{bin, "-kind", kind, "-mac", mac}, extra...)
	p := startProc(t, l.Host, "bridgerun "+strings.Join(args[1:], " "), args...)
	if err := p.WaitLine("Started veth1", 10*time.Second); err != nil {
		t.Fatalf("bridgerun: %v\n%s", err, p.Output())
	}
	return p
}
