package service

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vethd/vethd/pkg/bridge"
	"github.com/vethd/vethd/pkg/config"
	"github.com/vethd/vethd/pkg/ifname"
	"golang.org/x/sys/unix"
)

// Kind says why Run ended with an error, for the exit code main maps it to.
type Kind int

const (
	// KindFailure is a runtime failure: a bridge could not start or failed
	// (TAP, parent socket, netlink, no such parent, name in use, TAP
	// deleted).
	KindFailure Kind = iota
	// KindPermission is a start refused for lack of CAP_NET_ADMIN/CAP_NET_RAW.
	KindPermission
	// KindConfig is an invalid value (name, MAC address, machine ID) or
	// configuration file.
	KindConfig
)

// Error is why Run ended other than by a signal. Run has logged it already.
type Error struct {
	Kind Kind
	Err  error
}

// Error returns the cause's message.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// startError classifies an error of a bridge's first start (seed and
// instance modes).
func startError(err error) *Error {
	switch {
	case isPermission(err):
		return &Error{Kind: KindPermission, Err: err}
	case errors.Is(err, ifname.ErrInvalid), errors.Is(err, bridge.ErrMTUTooLarge):
		return &Error{Kind: KindConfig, Err: err}
	}
	return &Error{Kind: KindFailure, Err: err}
}

// explain adds the likely remedy to a start-up error.
func explain(err error, cfg bridge.Config) string {
	switch {
	case errors.Is(err, bridge.ErrNoParent):
		return fmt.Sprintf("%v: there is no interface named %s (see 'ip link'; choose one with -e)", err, cfg.Parent)
	case errors.Is(err, bridge.ErrNameInUse):
		return fmt.Sprintf("%v: an interface named %s exists already (another vethd? remove it, or choose another name: -v, or another NAME.conf)", err, cfg.Name)
	case isPermission(err):
		return fmt.Sprintf("%v: vethd needs CAP_NET_ADMIN and CAP_NET_RAW; run it as root", err)
	}
	return err.Error()
}

// publicText is err's text for what any user reads — LastError on D-Bus,
// STATUS= in systemctl status: a configuration error is given as
// config.Error.Public, without the value it refused or any other text of
// the file (a configuration file may be a link to a secret). The journal,
// which root and adm read, gets err.Error(), value and all.
func publicText(err error) string {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	full, inner := err.Error(), ce.Error()
	if i := strings.Index(full, inner); i >= 0 {
		return full[:i] + ce.Public() + full[i+len(inner):]
	}
	return ce.Public()
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}
