// Package ci tests the test command's own scripts: the restatement of the
// failing tests' messages at the end of scripts/test.sh's output. It
// needs no root and creates nothing outside its temporary directories.
package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// failing is a test package whose TestLong fails with the reason, then
// dumps a long log (as the end-to-end tests dump journals), and whose
// TestSub fails in a subtest; TestOK passes and logs.
const failing = `package failing

import (
	"fmt"
	"strings"
	"testing"
)

func TestOK(t *testing.T) { t.Log("all is well") }

func TestLong(t *testing.T) {
	defer func() {
		var b []string
		for i := 0; i < 500; i++ {
			b = append(b, fmt.Sprintf("journal line %d", i))
		}
		t.Logf("--- journal ---\n%s", strings.Join(b, "\n"))
		for i := 0; i < 300; i++ {
			t.Logf("dump %d", i)
		}
	}()
	t.Log("booted")
	t.Errorf("the reason: %s", "veth1 has no carrier")
}

func TestSub(t *testing.T) {
	t.Run("inner", func(t *testing.T) { t.Fatal("inner reason") })
}
`

// TestRestateFailures runs go test on the failing package, with and
// without -v, and checks that scripts/restate-failures.awk puts each
// failing test's reason in the last lines of the output, and names
// neither the passing test nor the lines of the long dump beyond its
// bound.
func TestRestateFailures(t *testing.T) {
	awk, err := filepath.Abs("../../scripts/restate-failures.awk")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":          "module failing\n\ngo 1.22\n",
		"failing_test.go": failing,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, verbose := range []bool{true, false} {
		args := []string{"test", "-count=1"}
		if verbose {
			args = append(args, "-v")
		}
		cmd := exec.Command("go", append(args, "./...")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("go test of the failing package passed:\n%s", out)
		}
		awkCmd := exec.Command("awk", "-f", awk)
		awkCmd.Stdin = strings.NewReader(string(out))
		restated, err := awkCmd.Output()
		if err != nil {
			t.Fatalf("awk: %v", err)
		}
		got := string(restated)
		lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
		t.Logf("-v=%v: %d lines of go test output, restated in %d:\n%s", verbose, strings.Count(string(out), "\n"), len(lines), got)
		for _, want := range []string{
			"--- FAIL: TestLong",
			"failing_test.go:23: the reason: veth1 has no carrier",
			"--- FAIL: TestSub/inner",
			"inner reason",
			"FAIL\tfailing",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("-v=%v: the restatement lacks %q", verbose, want)
			}
		}
		if strings.Contains(got, "TestOK") || strings.Contains(got, "all is well") {
			t.Errorf("-v=%v: the restatement names the passing test", verbose)
		}
		if strings.Contains(got, "dump 100") || len(lines) > 60 {
			t.Errorf("-v=%v: the restatement is not bounded (%d lines)", verbose, len(lines))
		}
		if strings.Contains(got, "journal line") {
			// A message's continuation lines (the journal) are left out.
			t.Errorf("-v=%v: the restatement keeps continuation lines", verbose)
		}
	}
}
