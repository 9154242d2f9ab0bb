// Package journal writes vethd's log lines: one plain line per record,
// "message key=value …", with a syslog priority prefix ("<6>") instead of
// "vethd: " when stderr is systemd's journal.
//
// vethd logs printf-style: every message is formatted in full with
// fmt.Sprintf and carries no slog attributes. Values that may be empty or
// hold spaces are rendered with Quote, as the handler renders attributes,
// so that a line reads the same whichever way it was written.
package journal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// Handler is a slog.Handler that writes one plain line per record:
// "message key=value …". Under systemd (stderr is the journal, as
// $JOURNAL_STREAM says) each line starts with a syslog priority prefix
// ("<6>") that journald turns into the entry's priority, and carries no
// timestamp, which the journal adds; elsewhere lines start with "vethd: ".
// Its methods may be called from any goroutine: mu, shared by the handlers
// WithAttrs derives, serializes the writes to w.
type Handler struct {
	mu      *sync.Mutex
	w       io.Writer
	journal bool
	level   slog.Leveler
	attrs   string
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler returns a handler writing records of level or above to w,
// with priority prefixes if journal.
func NewHandler(w io.Writer, journal bool, level slog.Leveler) *Handler {
	return &Handler{mu: &sync.Mutex{}, w: w, journal: journal, level: level}
}

// Enabled is slog.Handler's Enabled.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle is slog.Handler's Handle.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
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
	b.WriteString(escapeLine(r.Message))
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

// WithAttrs is slog.Handler's WithAttrs.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		writeAttr(&b, a)
	}
	n := *h
	n.attrs = b.String()
	return &n
}

// WithGroup is slog.Handler's WithGroup; groups are not shown.
func (h *Handler) WithGroup(string) slog.Handler { return h }

func writeAttr(b *strings.Builder, a slog.Attr) {
	fmt.Fprintf(b, " %s=%s", a.Key, Quote(a.Value.String()))
}

// Quote renders v as the value of a key=value pair in a log line: as it
// is, or quoted with %q if it is empty, holds a space, '"', '=' or '\\',
// a character that is not printable (control characters, terminal escape
// sequences, Unicode format characters such as U+202E) or is not valid
// UTF-8. %q escapes all of those (\x1b, \u202e, \xff), so a quoted value
// is one line of printable text that reads back with strconv.Unquote.
func Quote(v string) string {
	if v == "" || strings.ContainsAny(v, " \"=\\") || !printable(v) {
		return strconv.Quote(v)
	}
	return v
}

// printable reports whether v is valid UTF-8 made only of printable
// characters (unicode.IsPrint: letters, marks, numbers, punctuation,
// symbols and the ASCII space).
func printable(v string) bool {
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return utf8.ValidString(v)
}

// escapeLine returns s with every character that is not printable, or not
// valid UTF-8, escaped as %q escapes it (a newline as \n, ESC as \x1b), so
// that no message can end its journal line early, forge another one, or
// send escape sequences to the terminal of whoever reads the log. Printable
// text, '"' and '\\' included, is left as it is.
func escapeLine(s string) string {
	if printable(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || !unicode.IsPrint(r) {
			q := strconv.Quote(s[i : i+n])
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
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

// StderrIsJournal reports whether stderr is connected to the journal:
// $JOURNAL_STREAM holds "device:inode" of the stream systemd set up.
func StderrIsJournal() bool {
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
