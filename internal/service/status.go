package service

import (
	"fmt"
	"strings"

	"github.com/vethd/vethd/internal/humanize"
	"github.com/vethd/vethd/pkg/bridge"
)

// statusLine is the STATUS= text systemctl status shows. Run goroutine only.
func (d *daemon) statusLine() string {
	ins := d.list()
	if len(ins) == 0 {
		return "No bridges configured in " + d.cfg.ConfigDir
	}
	if len(ins) == 1 {
		return ins[0].statusText()
	}
	var parts []string
	var rx, tx uint64
	for _, in := range ins {
		st := in.status()
		parts = append(parts, in.name+" "+st.State)
		c := in.counters()
		rx += c.RxPackets
		tx += c.TxPackets
	}
	return fmt.Sprintf("%d bridges: %s; rx %d packets, tx %d packets", len(ins), strings.Join(parts, ", "), rx, tx)
}

// statusText describes one bridge in a line.
func (in *instance) statusText() string {
	st := in.status()
	c := in.counters()
	traffic := fmt.Sprintf("rx %d packets (%s), tx %d packets (%s)", c.RxPackets, humanize.Bytes(c.RxBytes), c.TxPackets, humanize.Bytes(c.TxBytes))
	switch st.State {
	case string(bridge.StateRunning):
		return fmt.Sprintf("%s running on %s, mac %s; %s", st.Name, st.Parent, st.MACAddress, traffic)
	case string(bridge.StateDegraded):
		return fmt.Sprintf("%s degraded: parent %s has no carrier; %s", st.Name, st.Parent, traffic)
	case string(bridge.StateWaitingParent):
		return fmt.Sprintf("%s waiting for parent %s to appear", st.Name, st.Parent)
	case string(bridge.StateWaitingNamespace):
		return fmt.Sprintf("%s waiting for network namespace %s to appear", st.Name, st.Namespace)
	}
	if st.LastError != "" {
		return fmt.Sprintf("%s %s (last error: %s)", st.Name, st.State, st.LastError)
	}
	return st.Name + " " + st.State
}
