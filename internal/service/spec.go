package service

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
	"github.com/vethd/vethd/pkg/srcroute"
)

// The storm limiter's default is written in both pkg/config (docs, files)
// and pkg/bridge (what runs): this fails to compile if they differ, as
// it does if "off" is not negative in both.
const (
	_ = uint(config.DefaultBroadcastLimit-bridge.DefaultBroadcastLimit) + uint(bridge.DefaultBroadcastLimit-config.DefaultBroadcastLimit)
	_ = uint(-config.BroadcastLimitOff) + uint(-bridge.BroadcastLimitOff)
)

// The kinds and data paths are named in both pkg/config (files, flags)
// and pkg/bridge (what runs), and bridgeKind and bridgeDataPath convert
// one to the other as they are: this fails to compile ("duplicate key
// false") if a name differs.
func _() {
	_ = map[bool]int{false: 0,
		string(config.KindTAP) == string(bridge.KindTAP) &&
			string(config.KindVeth) == string(bridge.KindVeth) &&
			string(config.DataPathRelay) == string(bridge.DataPathRelay) &&
			string(config.DataPathKernel) == string(bridge.DataPathKernel): 1}
}

// spec is one bridge's resolved configuration.
type spec struct {
	cfg    bridge.Config // Name, Kind, Namespace, Parent, MAC, MTU, CarrierOn, WaitParent, ARPIsolation, BroadcastLimit, DataPath
	policy macaddr.Policy
	route  routeSpec
	file   string // "" in seed mode
}

// routeSpec is a bridge's source routing (SourceRouting=, RouteTable=,
// RoutePriority=), resolved: Table and Priority are never 0.
type routeSpec struct {
	On       bool
	Table    int
	Priority int
}

// newRouteSpec resolves the source routing of the interface name: table 0
// is srcroute.DefaultTable(name), priority 0 srcroute.DefaultPriority. It
// checks both as srcroute does (pkg/config checks the same rules, with
// FILE:LINE; TestRouteLimitsAgree keeps them in step).
func newRouteSpec(name string, off bool, table, priority int) (routeSpec, error) {
	if table == 0 {
		table = srcroute.DefaultTable(name)
	}
	if priority == 0 {
		priority = srcroute.DefaultPriority
	}
	if err := srcroute.CheckTable(table); err != nil {
		return routeSpec{}, err
	}
	if err := srcroute.CheckPriority(priority); err != nil {
		return routeSpec{}, err
	}
	return routeSpec{On: !off, Table: table, Priority: priority}, nil
}

// bridgeKind maps a configured kind ("" is config.DefaultKind) to the
// bridge's.
func bridgeKind(k config.Kind) bridge.Kind {
	if k == "" {
		k = config.DefaultKind
	}
	return bridge.Kind(k)
}

// bridgeDataPath maps a configured data path to the bridge's. "" stays
// "": the bridge applies its kind's default (bridge.DefaultDataPath,
// which agrees with config.DefaultDataPath), and says that it falls back
// to the relay in an info line, not a warning, since no one asked for
// the kernel's.
func bridgeDataPath(dp config.DataPath) bridge.DataPath {
	return bridge.DataPath(dp)
}

// errKernelNeedsVeth is the seed flags' --data-path=kernel without
// --kind=veth (a file's DataPath=kernel without Kind=veth is Parse's
// *config.Error).
var errKernelNeedsVeth = errors.New("kernel needs --kind=veth (a TAP's frames pass through vethd)")

// loadSpecs reads the configuration the mode names; errors are
// *config.Error or MAC resolution errors (KindConfig either way).
func (d *daemon) loadSpecs() ([]spec, error) {
	switch d.cfg.Mode {
	case ModeInstance:
		s, err := d.loadSpec(d.cfg.Instance)
		if err != nil {
			return nil, err
		}
		return []spec{s}, nil
	case ModeAll:
		names, err := config.Names(d.cfg.ConfigDir)
		if err != nil {
			return nil, err
		}
		var specs []spec
		for _, n := range names {
			s, err := d.loadSpec(n)
			if err != nil {
				return nil, err
			}
			if err := tableClash(s, specs); err != nil {
				return nil, err
			}
			if err := macClash(s, specs); err != nil {
				return nil, err
			}
			specs = append(specs, s)
		}
		return specs, nil
	}
	policy, err := macaddr.Parse(d.cfg.MAC)
	if err != nil {
		return nil, fmt.Errorf("-m: %w", err)
	}
	if err := ifname.Validate(d.cfg.Name); err != nil {
		return nil, fmt.Errorf("-v: %w", err)
	}
	if err := ifname.Validate(d.cfg.Parent); err != nil {
		return nil, fmt.Errorf("-e: %w", err)
	}
	kind := config.DefaultKind
	if d.cfg.Kind != "" {
		if kind, err = config.ParseKind(d.cfg.Kind); err != nil {
			return nil, fmt.Errorf("--kind: %w", err)
		}
	}
	var dataPath config.DataPath // "": the kind's default
	if d.cfg.DataPath != "" {
		if dataPath, err = config.ParseDataPath(d.cfg.DataPath); err != nil {
			return nil, fmt.Errorf("--data-path: %w", err)
		}
	}
	if config.CheckDataPath(kind, dataPath) != nil {
		return nil, fmt.Errorf("--data-path: %w", errKernelNeedsVeth)
	}
	ns, err := config.NamespacePath(d.cfg.Namespace)
	if err != nil {
		return nil, fmt.Errorf("--netns: %w", err)
	}
	route, err := newRouteSpec(d.cfg.Name, d.cfg.NoSourceRouting, d.cfg.RouteTable, d.cfg.RoutePriority)
	if err != nil {
		return nil, fmt.Errorf("--route-table/--route-priority: %w", err)
	}
	if policy.Warning != "" {
		d.log.Warn(policy.Warning)
	}
	mac, err := policy.Resolve(d.cfg.Name, d.cfg.MachineIDFile)
	if err != nil {
		return nil, err
	}
	return []spec{{
		cfg: bridge.Config{Name: d.cfg.Name, Kind: bridgeKind(kind), Namespace: ns, Parent: d.cfg.Parent, MAC: mac,
			ARPIsolation: !d.cfg.NoARPIsolation, BroadcastLimit: d.cfg.BroadcastLimit, DataPath: bridgeDataPath(dataPath)},
		policy: policy,
		route:  route,
	}}, nil
}

// loadSpec reads ConfigDir/NAME.conf and resolves its MAC address. It is
// the instances' env.loadSpec (not in seed mode), so it may be called from
// any goroutine: it reads only d.cfg and d.log.
func (d *daemon) loadSpec(name string) (spec, error) {
	c, err := config.Load(config.Path(d.cfg.ConfigDir, name))
	if err != nil {
		return spec{}, err
	}
	if c.MAC.Warning != "" {
		d.log.Warn(fmt.Sprintf("%s: %s", c.File, c.MAC.Warning))
	}
	mac, err := c.MAC.Resolve(c.Name, d.cfg.MachineIDFile)
	if err != nil {
		return spec{}, fmt.Errorf("%s: %w", c.File, err)
	}
	ns, err := config.NamespacePath(c.Namespace)
	if err != nil { // Load checked it
		return spec{}, &config.Error{File: c.File, Key: "Namespace", Err: err}
	}
	route, err := newRouteSpec(c.Name, c.NoSourceRouting, c.RouteTable, c.RoutePriority)
	if err != nil { // Load checked it
		return spec{}, &config.Error{File: c.File, Key: "RouteTable", Err: err}
	}
	return spec{
		cfg: bridge.Config{
			Name: c.Name, Kind: bridgeKind(c.Kind), Namespace: ns, Parent: c.Parent, MAC: mac, MTU: c.MTU,
			CarrierOn: c.Carrier == config.CarrierOn, WaitParent: true,
			ARPIsolation: !c.NoARPIsolation, BroadcastLimit: c.BroadcastLimit, DataPath: bridgeDataPath(c.DataPath),
		},
		policy: c.MAC,
		route:  route,
		file:   c.File,
	}, nil
}

// tableClash fails, with a *config.Error naming both files, if s routes
// its interface through a table that one of others uses too: each
// interface needs a table of its own (in one process; srcroute.New finds
// a clash with another process's bridge, ErrTableInUse). Bridges whose
// interface lives in another namespace or without source routing use none.
func tableClash(s spec, others []spec) error {
	if !routesHere(s) {
		return nil
	}
	for _, o := range others {
		if o.cfg.Name == s.cfg.Name || !routesHere(o) || o.route.Table != s.route.Table {
			continue
		}
		return &config.Error{File: s.file, Key: "RouteTable", Err: &config.ValueError{
			Shown: fmt.Sprintf("table %d", s.route.Table), Subject: "its table",
			Problem: fmt.Sprintf("is %s's too (%s); each interface needs a table of its own: set RouteTable= in one of them", o.cfg.Name, o.file)}}
	}
	return nil
}

// macClash fails, with a *config.Error naming both files, if s gives its
// interface the MAC address of one of others: two interfaces of one
// process with one address would both take the frames sent to it (an
// explicit MACAddress= in two files; a persistent or random one is the
// interface's own). Only a file can clash: in seed mode there is one
// bridge.
func macClash(s spec, others []spec) error {
	if len(s.cfg.MAC) == 0 {
		return nil
	}
	for _, o := range others {
		if o.cfg.Name == s.cfg.Name || !bytes.Equal(o.cfg.MAC, s.cfg.MAC) {
			continue
		}
		return &config.Error{File: s.file, Key: "MACAddress", Err: &config.ValueError{
			Shown: s.cfg.MAC.String(), Subject: "its address",
			Problem: fmt.Sprintf("is %s's too (%s); two interfaces with one address would both take its frames: give one of them another MACAddress=", o.cfg.Name, o.file)}}
	}
	return nil
}

// routesHere reports whether s keeps source routing in vethd's own
// namespace: it is on and the interface is created there.
func routesHere(s spec) bool { return s.route.On && s.cfg.Namespace == "" }

// checkSpec is env.checkSpec in --all mode: s must not share its routing
// table or its MAC address with another bridge of this process. Run
// goroutine only (it reads the instances).
func (d *daemon) checkSpec(s spec) error {
	var others []spec
	for _, in := range d.list() {
		in.mu.Lock()
		others = append(others, in.spec)
		in.mu.Unlock()
	}
	if err := tableClash(s, others); err != nil {
		return err
	}
	return macClash(s, others)
}
