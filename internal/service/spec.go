package service

import (
	"fmt"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
)

// spec is one bridge's resolved configuration.
type spec struct {
	cfg    bridge.Config // Name, Parent, MAC, MTU, CarrierOn, WaitParent, ARPIsolation
	policy macaddr.Policy
	file   string // "" in seed mode
}

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
	if policy.Warning != "" {
		d.log.Warn(policy.Warning)
	}
	mac, err := policy.Resolve(d.cfg.Name, d.cfg.MachineIDFile)
	if err != nil {
		return nil, err
	}
	return []spec{{
		cfg:    bridge.Config{Name: d.cfg.Name, Parent: d.cfg.Parent, MAC: mac, ARPIsolation: !d.cfg.NoARPIsolation},
		policy: policy,
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
	return spec{
		cfg: bridge.Config{
			Name: c.Name, Parent: c.Parent, MAC: mac, MTU: c.MTU,
			CarrierOn: c.Carrier == config.CarrierOn, WaitParent: true,
			ARPIsolation: !c.NoARPIsolation,
		},
		policy: c.MAC,
		file:   c.File,
	}, nil
}
