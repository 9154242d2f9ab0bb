package service

import (
	"context"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// TestSplitAndDropsExported: the bridge's BIG TCP split counters reach the
// bus (RxSplit, TxSplit, read back by dbusapi.Client, as vethctl reads
// them), and the exit line has them and the nonzero drops by reason.
func TestSplitAndDropsExported(t *testing.T) {
	bus := dbustest.StartOpen(t)
	h := newHarness(t)
	h.writeConf("veth1", "[Bridge]\nParent=eth0\n")
	cfg := h.config(ModeInstance)
	cfg.ConnectBus = func() (*dbus.Conn, error) { return dbus.Connect(bus.Addr) }
	cfg.BusRetry = 10 * time.Millisecond
	h.run(cfg)
	b := h.start.nextStarted(t)
	h.ready(0)

	c := &b.counters
	c.RxSplit.Add(5)
	c.TxSplit.Add(2)
	c.RxDrops[bridge.DropOversize].Add(1)
	c.RxDrops[bridge.DropRunt].Add(2)
	c.TxDrops[bridge.DropNoParent].Add(4)

	client := dbusapi.NewClient(bus.Conn(t))
	var ctr dbusapi.Counters
	waitFor(t, "veth1 on the bus", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		_, ctr, err = client.Get(ctx, "veth1")
		return err == nil
	})
	if ctr.RxSplit != 5 || ctr.TxSplit != 2 || ctr.RxDrops["oversize"] != 1 || ctr.RxDrops["runt"] != 2 ||
		ctr.TxDrops["no-parent"] != 4 {
		t.Errorf("counters on the bus: %+v", ctr)
	}

	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	h.log.WaitLine(t, "vethd: Detached veth1 from eth0 rx_packets=0 rx_bytes=0 rx_coalesced=0 rx_split=5 "+
		"tx_packets=0 tx_bytes=0 tx_split=2 dropped=7 rx_drop_runt=2 rx_drop_oversize=1 tx_drop_no_parent=4 errors=0 took=")
}

func TestDropFields(t *testing.T) {
	for _, tc := range []struct {
		m    map[string]uint64
		want string
	}{
		{nil, ""},
		{map[string]uint64{"runt": 0, "oversize": 0}, ""},
		{map[string]uint64{"oversize": 1, "runt": 2, "write-error": 3}, " rx_drop_runt=2 rx_drop_oversize=1 rx_drop_write_error=3"},
	} {
		if got := dropFields("rx", tc.m); got != tc.want {
			t.Errorf("dropFields(rx, %v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}
