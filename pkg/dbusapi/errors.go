package dbusapi

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/godbus/dbus/v5"
)

// D-Bus error names: the bus daemon's and the standard interfaces' (which
// the server returns and the client maps), and polkit's. They live here
// only; vethctl asks ErrorName and IsAccessDenied.
const (
	errAccessDenied        = "org.freedesktop.DBus.Error.AccessDenied"
	errInteractiveAuth     = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
	errServiceUnknown      = "org.freedesktop.DBus.Error.ServiceUnknown"
	errNameHasNoOwner      = "org.freedesktop.DBus.Error.NameHasNoOwner"
	errUnknownObject       = "org.freedesktop.DBus.Error.UnknownObject"
	errUnknownInterface    = "org.freedesktop.DBus.Error.UnknownInterface"
	errUnknownProperty     = "org.freedesktop.DBus.Error.UnknownProperty"
	errPropertyReadOnly    = "org.freedesktop.DBus.Error.PropertyReadOnly"
	errPolkitNotAuthorized = "org.freedesktop.PolicyKit1.Error.NotAuthorized"
)

// asError returns the D-Bus error in err's chain: a dbus.Error, as godbus
// returns them, or a non-nil *dbus.Error.
func asError(err error) (dbus.Error, bool) {
	var de dbus.Error
	if errors.As(err, &de) {
		return de, true
	}
	var dp *dbus.Error
	if errors.As(err, &dp) && dp != nil {
		return *dp, true
	}
	return dbus.Error{}, false
}

// ErrorName returns the name of the D-Bus error in err's chain
// ("org.freedesktop.systemd1.NoSuchUnit", …), or "" if there is none.
func ErrorName(err error) string {
	de, _ := asError(err)
	return de.Name
}

// IsAccessDenied reports whether err is a refusal: ErrAccessDenied (from
// Client), or a D-Bus error by which the bus policy or a service refused
// the call (AccessDenied), or by which polkit did (NotAuthorized, or
// InteractiveAuthorizationRequired where it would have asked).
func IsAccessDenied(err error) bool {
	switch ErrorName(err) {
	case errAccessDenied, errInteractiveAuth, errPolkitNotAuthorized:
		return true
	}
	return errors.Is(err, ErrAccessDenied)
}

// maxQuoted is how much of a caller's string an error quotes.
const maxQuoted = 32

// quoteArg quotes s, a string a caller sent, for an error message: Go
// escaped, and cut to its first maxQuoted bytes (its length said) if
// longer, so that no error echoes what a caller sent at length.
func quoteArg(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:maxQuoted]), len(s))
}
