package dbusapi

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestErrorName(t *testing.T) {
	const noUnit = "org.freedesktop.systemd1.NoSuchUnit"
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("x"), ""},
		{dbus.Error{Name: noUnit}, noUnit},
		{fmt.Errorf("get x: %w", dbus.Error{Name: noUnit}), noUnit},
		{fmt.Errorf("get x: %w", &dbus.Error{Name: noUnit}), noUnit},
		{fmt.Errorf("get x: %w", (*dbus.Error)(nil)), ""},
	} {
		if got := ErrorName(tc.err); got != tc.want {
			t.Errorf("ErrorName(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestIsAccessDenied(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{fmt.Errorf("reload veth1: %w", ErrAccessDenied), true},
		{fmt.Errorf("enable x: %w", dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}), true},
		{fmt.Errorf("enable x: %w", &dbus.Error{Name: "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"}), true},
		{fmt.Errorf("enable x: %w", dbus.Error{Name: "org.freedesktop.PolicyKit1.Error.NotAuthorized"}), true},
		{fmt.Errorf("enable x: %w", dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}), false},
		{fmt.Errorf("reload veth1: %w", ErrNoSuchBridge), false},
		{fs.ErrPermission, false}, // a file's refusal is not the bus's
	} {
		if got := IsAccessDenied(tc.err); got != tc.want {
			t.Errorf("IsAccessDenied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestCallErrorMapping: the client maps the bus daemon's errors to this
// package's, keeping the operation and the bridge in the message.
func TestCallErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		is   error
		text string
	}{
		{dbus.Error{Name: errServiceUnknown}, ErrNoSuchBridge, "reload veth1: no such bridge"},
		{dbus.Error{Name: errNameHasNoOwner}, ErrNoSuchBridge, "reload veth1: no such bridge"},
		{dbus.Error{Name: errUnknownObject}, ErrNoSuchBridge, "reload veth1: no such bridge"},
		{dbus.Error{Name: errAccessDenied, Body: []any{"Reload requires uid 0"}}, ErrAccessDenied, "reload veth1: access denied"},
		{dbus.Error{Name: ErrorReloadFailed, Body: []any{"no parent"}}, ErrReloadFailed, "reload veth1: reload failed: no parent"},
		{errors.New("boom"), nil, "reload veth1: boom"},
	} {
		err := callError("reload", "veth1", tc.err)
		if err.Error() != tc.text || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("callError(%v) = %v, want %q wrapping %v", tc.err, err, tc.text, tc.is)
		}
	}
}
