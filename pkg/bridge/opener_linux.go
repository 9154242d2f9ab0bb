package bridge

import (
	"net"
	"os"
)

// kernelOpener is the Opener of real devices: OpenTAP, AdoptTAP and
// OpenParentSocket, in the calling process's network namespace.
type kernelOpener struct{}

var _ Opener = kernelOpener{}

// CreateTAP creates a TAP with OpenTAP. See Opener.
func (kernelOpener) CreateTAP(name string) (Device, error) {
	t, err := OpenTAP(name)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// AdoptTAP adopts a TAP with AdoptTAP. See Opener.
func (kernelOpener) AdoptTAP(f *os.File) (Device, error) {
	t, err := AdoptTAP(f)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// OpenParentSocket makes mac a member of the parent's hub (one receiving
// socket for all of the process's bridges on the parent, see parentHub),
// with a sending socket of its own. See Opener.
func (kernelOpener) OpenParentSocket(ifindex int, name string, mac net.HardwareAddr) (ParentIO, error) {
	m, err := joinHub(ifindex, name, mac)
	if err != nil {
		return nil, err
	}
	return m, nil
}
