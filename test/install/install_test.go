// Package install tests the Makefile's install and uninstall in a copy of
// the tree (it needs no root; as root it also checks that `make install`
// in a tree of another user leaves no file of root's there). It creates
// no namespace and touches nothing outside its temporary directories.
package install

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeGo is the go command make is given: a script that "builds" by
// writing the -o file (the Makefile's rules are under test, not Go's, and
// a real build of a copy would take long). Written by builtTree.
var fakeGo string

const fakeGoScript = `#!/bin/sh
# go build ... -o FILE ./cmd/X: writes FILE.
[ "$1" = build ] || { echo "fake go: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	if [ "$1" = -o ]; then mkdir -p "$(dirname "$2")" && echo "built $3" >"$2" && exit 0; fi
	shift
done
echo "fake go: no -o" >&2; exit 2
`

// copyTree copies from (a tree) into a new directory and returns it; with
// all, everything (cp -a keeps the times: built binaries stay fresh),
// else what the Makefile uses from the repository.
func copyTree(t *testing.T, from string, all bool) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dst := filepath.Join(t.TempDir(), "tree")
	if all {
		if out, err := exec.Command("cp", "-a", from, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
		return dst
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"Makefile", "VERSION", "go.mod", "go.sum", "cmd", "internal", "pkg", "dist", "docs"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(from, p), filepath.Join(dst, p)).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v: %s", p, err, out)
		}
	}
	return dst
}

// built is a copy of the repository in which `make` ran (with fakeGo),
// shared by the tests, which copy it to change it.
var built struct {
	once sync.Once
	dir  string
	out  string
	err  error
}

// builtTree returns a fresh copy of built.
func builtTree(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		var tmp string
		if tmp, built.err = os.MkdirTemp("", "vethd-install-test-"); built.err != nil {
			return
		}
		fakeGo = filepath.Join(tmp, "go")
		if built.err = os.WriteFile(fakeGo, []byte(fakeGoScript), 0o755); built.err != nil {
			return
		}
		built.dir = filepath.Join(tmp, "tree")
		if built.err = os.Mkdir(built.dir, 0o755); built.err != nil {
			return
		}
		for _, p := range []string{"Makefile", "VERSION", "go.mod", "go.sum", "cmd", "internal", "pkg", "dist", "docs"} {
			var out []byte
			if out, built.err = exec.Command("cp", "-a", filepath.Join("..", "..", p), filepath.Join(built.dir, p)).CombinedOutput(); built.err != nil {
				built.out = string(out)
				return
			}
		}
		os.RemoveAll(filepath.Join(built.dir, "bin"))
		built.out, built.err = mk(t, built.dir)
	})
	if built.err != nil {
		t.Fatalf("make in a copy of the tree: %v\n%s", built.err, built.out)
	}
	return copyTree(t, built.dir, true)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(filepath.Dir(built.dir))
	}
	os.Exit(code)
}

// mk runs make ARGS… in dir with the go command, and returns its output.
func mk(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	c := exec.Command("make", append([]string{"-C", dir, "GO=" + fakeGo}, args...)...)
	c.Env = append(os.Environ(), "MAKEFLAGS=")
	out, err := c.CombinedOutput()
	return string(out), err
}

// listTree returns every path under root, relative to it.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestInstallDoesNotRebuild: after `make`, `make install` builds nothing
// (the binaries are files newer than the sources), and a source changed
// since makes it build again.
func TestInstallDoesNotRebuild(t *testing.T) {
	tree := builtTree(t)
	dest := t.TempDir()
	out, err := mk(t, tree, "-n", "install", "DESTDIR="+dest)
	if err != nil {
		t.Fatalf("make -n install: %v\n%s", err, out)
	}
	if strings.Contains(out, " build ") {
		t.Errorf("make -n install after make builds:\n%s", out)
	}
	// A source newer than the binaries: built again.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(filepath.Join(tree, "pkg", "config", "config.go"), later, later); err != nil {
		t.Fatal(err)
	}
	out, err = mk(t, tree, "-n", "install", "DESTDIR="+dest)
	if err != nil || !strings.Contains(out, " build -ldflags") || !strings.Contains(out, "-o bin/vethd ./cmd/vethd") {
		t.Errorf("make -n install after a change does not build vethd: %v\n%s", err, out)
	}
}

// TestUninstallRemovesWhatInstallMade: install into an empty DESTDIR
// (twice: a reinstall), then uninstall, leaves the DESTDIR as it was; a
// directory that was there before install stays, also if empty, and the
// guide and the metrics units are installed.
func TestUninstallRemovesWhatInstallMade(t *testing.T) {
	tree := builtTree(t)
	for _, prefix := range []string{"/usr", "/usr/local"} {
		t.Run(prefix, func(t *testing.T) {
			dest := t.TempDir()
			// There before: the system's, never removed.
			for _, d := range []string{"etc/dhcp", "usr/share/doc/other"} {
				if err := os.MkdirAll(filepath.Join(dest, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			before := listTree(t, dest)
			for i := 0; i < 2; i++ {
				if out, err := mk(t, tree, "install", "DESTDIR="+dest, "PREFIX="+prefix); err != nil {
					t.Fatalf("make install: %v\n%s", err, out)
				}
			}
			installed := listTree(t, dest)
			for _, want := range []string{
				prefix + "/share/doc/vethd/guide.md",
				prefix + "/lib/systemd/system/vethd-metrics.service",
				prefix + "/lib/systemd/system/vethd-metrics.timer",
				prefix + "/sbin/vethd",
			} {
				if !slices.Contains(installed, strings.TrimPrefix(want, "/")) {
					t.Errorf("install put no %s", want)
				}
			}
			man, err := os.ReadFile(filepath.Join(dest, prefix, "share/man/man8/vethd.8"))
			if err != nil || !strings.Contains(string(man), prefix+"/share/doc/vethd/guide.md") {
				t.Errorf("vethd.8 does not point to %s/share/doc/vethd/guide.md: %v", prefix, err)
			}
			if out, err := mk(t, tree, "uninstall", "DESTDIR="+dest, "PREFIX="+prefix); err != nil {
				t.Fatalf("make uninstall: %v\n%s", err, out)
			}
			if after := listTree(t, dest); !slices.Equal(after, before) {
				t.Errorf("after uninstall\n  %s\nwant what was there before\n  %s", strings.Join(after, "\n  "), strings.Join(before, "\n  "))
			}
		})
	}
}

// TestInstallAsRootInAnotherUsersTree: `make install` as root in a tree
// of another user (nobody) with no binaries refuses to build, saying to
// run make as that user first; with fresh binaries it installs them; in
// neither case is a file of root's left in the tree.
func TestInstallAsRootInAnotherUsersTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (to make the tree nobody's)")
	}
	tree := builtTree(t)
	bins := filepath.Join(filepath.Dir(tree), "bin")
	if err := os.Rename(filepath.Join(tree, "bin"), bins); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	chownTree := func(owner string) {
		if out, err := exec.Command("chown", "-R", owner, tree).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	rootsFiles := func() []string {
		var own []string
		filepath.WalkDir(tree, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if fi, err := os.Lstat(p); err == nil && fi.Sys().(*syscall.Stat_t).Uid != nobody {
				own = append(own, p)
			}
			return nil
		})
		return own
	}
	chownTree("65534:65534")
	dest := t.TempDir()
	out, err := mk(t, tree, "install", "DESTDIR="+dest)
	if err == nil || !strings.Contains(out, "run 'make' as nobody first") {
		t.Errorf("make install as root in nobody's tree without binaries: %v, want a refusal saying to run make as nobody:\n%s", err, out)
	}
	if own := rootsFiles(); len(own) > 0 {
		t.Errorf("root's files left in the tree: %q", own)
	}

	// Built first (here the shared build, given to nobody, as `make` by
	// nobody would leave it): install only installs.
	if err := os.Rename(bins, filepath.Join(tree, "bin")); err != nil {
		t.Fatal(err)
	}
	chownTree("65534:65534")
	if out, err := mk(t, tree, "install", "DESTDIR="+dest); err != nil || strings.Contains(out, " build ") {
		t.Errorf("make install with fresh binaries: %v\n%s", err, out)
	}
	if own := rootsFiles(); len(own) > 0 {
		t.Errorf("root's files left in the tree: %q", own)
	}
}
