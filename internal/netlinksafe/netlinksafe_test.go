package netlinksafe

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetryDump(t *testing.T) {
	calls := 0
	v, err := RetryDump(func() (int, error) {
		calls++
		if calls < 3 {
			return 0, fmt.Errorf("link list: %w", netlink.ErrDumpInterrupted)
		}
		return 42, nil
	})
	if v != 42 || err != nil || calls != 3 {
		t.Fatalf("RetryDump = %d, %v after %d calls; want 42, nil after 3", v, err, calls)
	}

	other := errors.New("permission denied")
	calls = 0
	if _, err := RetryDump(func() (int, error) { calls++; return 0, other }); err != other || calls != 1 {
		t.Fatalf("another error: %v after %d calls; want it returned at once", err, calls)
	}

	calls = 0
	_, err = RetryDump(func() (int, error) { calls++; return 0, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != Attempts {
		t.Fatalf("always interrupted: %v after %d calls; want ErrDumpInterrupted after %d", err, calls, Attempts)
	}
}
