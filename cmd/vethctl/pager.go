package main

import (
	"io"
	"os"
	"os/exec"
	"strings"
)

// pager is a running pager that the command's output goes to.
type pager struct {
	a      *app
	stdout io.Writer // what a.stdout was before
	w      io.WriteCloser
	cmd    *exec.Cmd
}

// pagerCommand returns the pager command line to run, or "" for none,
// as systemd's tools choose it (systemd's pager.c): $SYSTEMD_PAGER, else
// $PAGER; a set but empty value, or "cat", means no pager; with neither
// set, the first of pager (Debian's alternative), less and more that is
// installed. lookPath finds a program in $PATH.
func pagerCommand(lookupEnv func(string) (string, bool), lookPath func(string) (string, error)) string {
	for _, k := range []string{"SYSTEMD_PAGER", "PAGER"} {
		if v, ok := lookupEnv(k); ok {
			v = strings.TrimSpace(v)
			if v == "" || v == "cat" {
				return ""
			}
			return v
		}
	}
	for _, p := range []string{"pager", "less", "more"} {
		if _, err := lookPath(p); err == nil {
			return p
		}
	}
	return ""
}

// pagerEnv returns the pager's environment: env with LESS set to
// $SYSTEMD_LESS, or to systemd's "FRSXMK" (quit if one screen, raw colours,
// chop long lines, no termcap init, long prompt, quit on Ctrl-C).
func pagerEnv(env []string, lookupEnv func(string) (string, bool)) []string {
	less, ok := lookupEnv("SYSTEMD_LESS")
	if !ok {
		less = "FRSXMK"
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LESS=") {
			out = append(out, kv)
		}
	}
	return append(out, "LESS="+less)
}

// startPager runs the pager (pagerCommand) with the command's output
// as its input and vethctl's standard output as its own, and points
// a.stdout at it. It returns nil, and leaves a.stdout alone, if there is
// no pager or it cannot start.
func (a *app) startPager() *pager {
	lookupEnv := a.lookupEnv
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	line := pagerCommand(lookupEnv, exec.LookPath)
	if line == "" {
		return nil
	}
	// As systemd does: through sh, so that "less -R" works.
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Env = pagerEnv(os.Environ(), lookupEnv)
	cmd.Stdout = a.stdout
	// The pager's errors go to vethctl's stderr if that is a file (a
	// terminal). Any other writer would be copied to by a goroutine of
	// exec while vethctl writes its own errors to it.
	if f, ok := a.stderr.(*os.File); ok {
		cmd.Stderr = f
	}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil
	}
	if err := cmd.Start(); err != nil {
		a.warn("start pager %q: %v", line, err)
		return nil
	}
	p := &pager{a: a, stdout: a.stdout, w: w, cmd: cmd}
	a.stdout = w
	return p
}

// wait ends the pager's input, waits until the pager quits, and gives
// a.stdout back. Output the pager did not read (the user quit) is lost,
// as with any pager.
func (p *pager) wait() {
	_ = p.w.Close()
	_ = p.cmd.Wait()
	p.a.stdout = p.stdout
}
