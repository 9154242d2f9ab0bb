package bridge_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vethd/vethd/pkg/bridge"
)

// A TAP adopted after a restart (its descriptor from systemd's fd store)
// is taken up wherever its interface is: in Config.Namespace, where the
// earlier bridge created it, or in a namespace someone moved it to.
// (Start refused a TAP with a Namespace, and vethd restarted in a loop.)

// restartTAP starts a bridge of cfg, lets move act on it, closes it
// keeping its TAP's descriptor (as the fd store does) and starts another
// of cfg adopting that descriptor; it returns the second bridge and the
// first one's ifindex.
func (h *lcHarness) restartTAP(cfg bridge.Config, move func(index int)) (*bridge.Bridge, int) {
	h.t.Helper()
	b1 := h.start(cfg)
	index := b1.Status().IfIndex
	if move != nil {
		move(index)
		h.wait("the move seen", func(st bridge.Status) bool { return st.Namespace != cfg.Namespace })
	}
	fd, err := b1.TAPFd()
	if err != nil {
		h.t.Fatalf("TAPFd: %v", err)
	}
	b1.Close()
	if _, _, ok := h.n.LookupAway(index); !ok {
		h.t.Fatal("veth0 went with its fd stored")
	}
	cfg.MAC, cfg.TAP = nil, os.NewFile(uintptr(fd), "tap")
	return h.start(cfg), index
}

func TestRestartAdoptsTAPInNamespace(t *testing.T) {
	t.Run("config namespace", func(t *testing.T) {
		h := newLCHarness(t)
		path := filepath.Join(t.TempDir(), "netns", "ctr")
		nsid := h.n.AddNamespace(path)
		cfg := h.config()
		cfg.Namespace = path
		b, index := h.restartTAP(cfg, nil)
		st := b.Status()
		if st.IfIndex != index || st.Namespace != path || st.State != bridge.StateRunning || !bytes.Equal(st.MAC, lcMAC1) {
			t.Errorf("status %+v, want ifindex %d in %s, running", st, index, path)
		}
		if _, where, ok := h.n.LookupAway(index); !ok || where != nsid {
			t.Errorf("veth0 in namespace %d (%v), want %d", where, ok, nsid)
		}
		if !strings.Contains(h.log.String(), "Adopted veth0 in its network namespace "+path) {
			t.Errorf("no word of the adoption:\n%s", h.log)
		}
		lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
	})
	t.Run("moved", func(t *testing.T) {
		h := newLCHarness(t)
		nsid := h.n.AddNamespace(filepath.Join(t.TempDir(), "netns", "other"))
		b, index := h.restartTAP(h.config(), func(index int) { h.n.Move(index, nsid) })
		st := b.Status()
		if want := fmt.Sprintf("netnsid %d", nsid); st.IfIndex != index || st.Namespace != want || st.State != bridge.StateRunning {
			t.Errorf("status %+v, want ifindex %d in %s, running", st, index, want)
		}
		lcFlow(t, h.n.Device("veth0"), h.n.Socket(), lcMAC1)
	})
}
