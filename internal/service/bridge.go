package service

import "github.com/vethd/vethd/pkg/bridge"

// Bridge is what the service needs of a running bridge; *bridge.Bridge is
// one. Its methods are called from the Run goroutine, supervisor
// goroutines and D-Bus handlers at once.
type Bridge interface {
	// Status returns a snapshot of the bridge's state.
	Status() bridge.Status
	// Counters returns the live counters.
	Counters() *bridge.Counters
	// Reconfigure applies a changed configuration; on error nothing changed.
	Reconfigure(bridge.Config) error
	// Health returns nil while the relay and the link watcher respond.
	Health() error
	// Wait blocks until the bridge fails (and returns why) or is closed (nil).
	Wait() error
	// Close stops the bridge and removes its interface; it is idempotent.
	Close() error
	// Release stops the bridge like Close but leaves its interface for
	// the next vethd (a restart, a handover): a veth pair stays, a TAP
	// stays while the fd store holds it.
	Release() error
	// TAPFd returns a new descriptor of the TAP, which the caller closes;
	// for a veth pair the error wraps errors.ErrUnsupported.
	TAPFd() (int, error)
}

var _ Bridge = (*bridge.Bridge)(nil)

// StartFunc starts a bridge, with bridge.Start's contract: it owns
// cfg.TAP from then on (and closes it on error), and returns ErrNoParent,
// ErrNameInUse, ErrNotTAP as bridge.Start does.
type StartFunc func(cfg bridge.Config) (Bridge, error)

// startBridge is the default StartFunc: bridge.Start.
func startBridge(cfg bridge.Config) (Bridge, error) {
	b, err := bridge.Start(cfg)
	if err != nil {
		return nil, err // not a nil *bridge.Bridge in a non-nil Bridge
	}
	return b, nil
}
