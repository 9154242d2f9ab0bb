package integration

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBadInput: invalid command lines make vethd exit non-zero with a
// message naming the problem, and leave no TAP behind.
func TestBadInput(t *testing.T) {
	l := NewLAN(t, LANConfig{})
	before, _ := l.Host.Promiscuity(t, "eth0")
	for _, c := range []struct {
		name string
		args []string
		code int      // the documented exit status (vethd(8))
		want []string // one of them in stderr, case-insensitive
	}{
		{"multicast MAC", []string{"-v", "veth1", "-e", "eth0", "-m", "01:00:5e:00:00:01"}, 78, []string{"multicast"}},
		{"all-zero MAC", []string{"-v", "veth1", "-e", "eth0", "-m", "00:00:00:00:00:00"}, 78, []string{"zero"}},
		{"malformed MAC", []string{"-v", "veth1", "-e", "eth0", "-m", "02:11:22:33:44"}, 78, []string{"mac"}},
		{"name too long", []string{"-v", "veth123456789012", "-e", "eth0"}, 78, []string{"too long", "at most 15"}},
		{"no such parent", []string{"-v", "veth1", "-e", "nosuch0"}, 1, []string{"no such parent"}},
		{"long flags, no such parent", []string{"--name", "veth1", "--parent", "nosuch0"}, 1, []string{"no such parent"}},
		{"name in use", []string{"-v", "eth0", "-e", "eth0"}, 1, []string{"already in use"}},
		{"unknown flag", []string{"-v", "veth1", "--frobnicate"}, 2, []string{"frobnicate"}},
		{"stray argument", []string{"-v", "veth1", "eth0"}, 2, []string{"unexpected argument"}},
		{"not root", []string{"-v", "veth1", "-e", "eth0"}, 77, []string{"cap_net_admin"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p *Proc
			if c.name == "not root" {
				// Drop to nobody without capabilities: vethd must say what it lacks.
				needTools(t, "setpriv")
				needVethd(t)
				argv := append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
					"--inh-caps=-all", "--bounding-set=-all", vethdBin}, c.args...)
				p = startProc(t, l.Host, "vethd as nobody", argv...)
			} else {
				p = l.SpawnVethd(t, c.args...)
			}
			st := p.Wait(10 * time.Second)
			if st == nil {
				t.Fatalf("vethd %s still running after 10 s", strings.Join(c.args, " "))
			}
			out := p.Output()
			if st.ExitCode() != c.code {
				t.Errorf("vethd %s: exit %v, want exit status %d\n%s", strings.Join(c.args, " "), st, c.code, out)
			}
			if !slices.ContainsFunc(c.want, func(w string) bool { return strings.Contains(strings.ToLower(out), w) }) {
				t.Errorf("vethd %s: message mentions none of %q:\n%s", strings.Join(c.args, " "), c.want, out)
			}
			if links := l.Host.LinkNames(t); !slices.Equal(sorted(links), []string{"eth0", "lo"}) {
				t.Errorf("links left in the host namespace: %v, want [eth0 lo]", links)
			}
			if n, _ := l.Host.Promiscuity(t, "eth0"); n != before {
				t.Errorf("eth0 promiscuity %d, want %d", n, before)
			}
			t.Logf("%s", out)
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
