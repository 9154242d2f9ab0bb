package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
)

// lineHandler is a slog.Handler that writes one plain line per record:
// "message key=value …". Under systemd (stderr is the journal, as
// $JOURNAL_STREAM says) each line starts with a syslog priority prefix
// ("<6>") that journald turns into the entry's priority, and carries no
// timestamp, which the journal adds; elsewhere lines start with "vethd: ".
type lineHandler struct {
	mu      *sync.Mutex
	w       io.Writer
	journal bool
	level   slog.Leveler
	attrs   string
}

func newLineHandler(w io.Writer, journal bool, level slog.Leveler) *lineHandler {
	return &lineHandler{mu: &sync.Mutex{}, w: w, journal: journal, level: level}
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	if h.journal {
		b.WriteString(priority(r.Level))
	} else {
		b.WriteString("vethd: ")
		if r.Level >= slog.LevelWarn {
			b.WriteString(strings.ToLower(r.Level.String()))
			b.WriteString(": ")
		}
	}
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		writeAttr(&b, a)
	}
	n := *h
	n.attrs = b.String()
	return &n
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }

func writeAttr(b *strings.Builder, a slog.Attr) {
	v := a.Value.String()
	if strings.ContainsAny(v, " \"=") || v == "" {
		v = fmt.Sprintf("%q", v)
	}
	fmt.Fprintf(b, " %s=%s", a.Key, v)
}

// priority returns the sd-daemon(3) prefix for a level.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	default:
		return "<7>"
	}
}

// stderrIsJournal reports whether stderr is connected to the journal:
// $JOURNAL_STREAM holds "device:inode" of the stream systemd set up.
func stderrIsJournal() bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		return false
	}
	return js == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
