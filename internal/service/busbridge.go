package service

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/dbusapi"
)

// busBridge is an instance as its D-Bus object sees it. Its methods run on
// D-Bus handler goroutines and, through Server.Update, on the Run
// goroutine; Reload is handed to the Run goroutine, so that it never runs
// at the same time as another reload.
type busBridge struct {
	in *instance
	// reload runs the instance's reload on the Run goroutine and returns
	// its error.
	reload func() error
}

var _ dbusapi.Bridge = (*busBridge)(nil)

// Status is dbusapi.Bridge's Status.
func (b *busBridge) Status() dbusapi.Status { return b.in.status() }

// Counters is dbusapi.Bridge's Counters.
func (b *busBridge) Counters() dbusapi.Counters { return b.in.counters() }

// Reload is dbusapi.Bridge's Reload.
func (b *busBridge) Reload() error { return b.reload() }

// ResetCounters is dbusapi.Bridge's ResetCounters.
func (b *busBridge) ResetCounters() {
	if br := b.in.bridge(); br != nil {
		br.Counters().Reset()
		b.in.env.log.Info(fmt.Sprintf("Counters of %s reset", b.in.name))
	}
}

// Describe is dbusapi.Bridge's Describe: configuration, status and
// counters as one JSON document.
func (b *busBridge) Describe() string {
	in := b.in
	in.mu.Lock()
	s := in.spec
	in.mu.Unlock()
	carrier := "follow"
	if s.cfg.CarrierOn {
		carrier = "on"
	}
	mtu := "inherit"
	if s.cfg.MTU != 0 {
		mtu = fmt.Sprint(s.cfg.MTU)
	}
	arp := "no"
	if s.cfg.ARPIsolation {
		arp = "yes"
	}
	routing := "no"
	if s.route.On {
		routing = "yes"
	}
	dataPath := s.cfg.DataPath // as configured; the one in use is the status's
	if dataPath == "" {
		dataPath = bridge.DefaultDataPath(s.cfg.Kind)
	}
	doc := map[string]any{
		"version": in.env.version,
		"pid":     os.Getpid(),
		"config": map[string]any{
			"file": s.file, "parent": s.cfg.Parent, "mac_address": s.policy.String(),
			"mtu": mtu, "carrier": carrier, "arp_isolation": arp,
			"source_routing": routing, "route_table": s.route.Table, "route_priority": s.route.Priority,
			"kind": string(s.cfg.Kind), "data_path": string(dataPath), "namespace": s.cfg.Namespace,
		},
		"status":   in.status(),
		"counters": in.counters(),
	}
	out, _ := json.MarshalIndent(doc, "", "  ")
	return string(out)
}
