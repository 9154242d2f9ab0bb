package bridge

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// TestClaimVethKernel: the real claim (an abstract unix socket; no root
// needed) is held by one socket at a time and free again once closed.
func TestClaimVethKernel(t *testing.T) {
	name := fmt.Sprintf("claimtest-%d", os.Getpid())
	c1, err := kernelOpener{}.ClaimVeth(name)
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if c2, err := (kernelOpener{}).ClaimVeth(name); !errors.Is(err, ErrNameInUse) {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("second claim: %v, want ErrNameInUse", err)
	}
	other, err := kernelOpener{}.ClaimVeth(name + "x")
	if err != nil {
		t.Fatalf("claim of another name: %v", err)
	}
	other.Close()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	c3, err := kernelOpener{}.ClaimVeth(name)
	if err != nil {
		t.Fatalf("claim after Close: %v", err)
	}
	c3.Close()
}
