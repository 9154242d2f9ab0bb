// Package netlinksafe retries netlink dumps that the kernel interrupted, as
// containernetworking/plugins' pkg/netlinksafe does: a dump (a link, address
// or route list) that raced with a change ends with NLM_F_DUMP_INTR, which
// vishvananda/netlink reports as ErrDumpInterrupted with partial results.
package netlinksafe

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// Attempts is how many times RetryDump calls f at most.
const Attempts = 10

// RetryDump calls f again while it fails with netlink.ErrDumpInterrupted,
// up to Attempts times, and returns the last result.
func RetryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range Attempts {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
