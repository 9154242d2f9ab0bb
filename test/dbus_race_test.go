package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/vethd/vethd/pkg/dbusapi"
	"github.com/vethd/vethd/pkg/dbusapi/dbustest"
)

// TestStartRaceBusName is issue 9 item 3: two vethd for one interface name
// started at once, 20 rounds, on a bus like the system bus with vethd's
// policy. Every round exactly one survives, it runs the bridge, and it
// owns the bus name (the loser used to take the name first and release
// it on exit, and the winner never asked again: 4 rounds in 10 left no
// owner). The survivor relays (ping through veth1) in the first and the
// last round.
func TestStartRaceBusName(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	needVethd(t)
	bus := dbustest.StartIn(t, l.Dir, dbustest.PolicyFile(t))
	conn := bus.Conn(t)
	c := dbusapi.NewClient(conn)
	const rounds = 20
	owned := 0
	for round := 1; round <= rounds; round++ {
		var ps [2]*Proc
		var wg sync.WaitGroup
		for i := range ps {
			wg.Go(func() {
				ps[i] = startProcWith(t, l.Host, fmt.Sprintf("vethd %d/%d", round, i), func(c *exec.Cmd) {
					c.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus.Addr)
				}, vethdBin, "-v", "veth1", "-e", "eth0")
			})
		}
		wg.Wait()

		// One exits (the interface is taken), one runs.
		var alive *Proc
		err := poll(10*time.Second, func() (bool, string) {
			a, b := ps[0].Running(), ps[1].Running()
			switch {
			case a && !b:
				alive = ps[0]
			case b && !a:
				alive = ps[1]
			default:
				return false, fmt.Sprintf("running: %v %v", a, b)
			}
			return true, ""
		})
		if err != nil {
			t.Fatalf("round %d: %v\n%s\n%s", round, err, ps[0].Output(), ps[1].Output())
		}
		if err := alive.WaitLine("Attached veth1 into eth0", 10*time.Second); err != nil {
			t.Fatalf("round %d: the survivor: %v", round, err)
		}
		var pid uint32
		err = poll(3*time.Second, func() (bool, string) {
			err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, dbusapi.BusName("veth1")).Store(&pid)
			return err == nil && int(pid) == alive.Pid(), fmt.Sprintf("owner PID %d (%v), survivor %d", pid, err, alive.Pid())
		})
		if err != nil {
			t.Errorf("round %d: %v", round, err)
		} else {
			owned++
		}
		if st, _, err := c.Get(context.Background(), "veth1"); err != nil || st.State != "running" {
			t.Errorf("round %d: the owner says %+v %v", round, st, err)
		}
		if round == 1 || round == rounds {
			l.SetStatic(t, "veth1", 50)
			l.Host.WaitPing(t, 10*time.Second, "-I", "veth1", l.Router4.String())
		}
		alive.Stop(3 * time.Second)
		if err := poll(5*time.Second, func() (bool, string) { return l.Host.Link("veth1") == nil, "veth1 still there" }); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	t.Logf("%d of %d rounds: the survivor owned %s", owned, rounds, dbusapi.BusName("veth1"))
}
