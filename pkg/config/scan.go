package config

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"

	"github.com/coreos/go-systemd/v22/unit"
)

// go-systemd's unit parser gives no line numbers. scan reads the same bytes
// line by line, following the same rules, and records the line of each
// section header and each key; lineMap pairs them with what go-systemd
// returned. scan is stricter than go-systemd where go-systemd would read a
// file differently from systemd or from what its author meant, and reports
// those as syntax errors:
//
//   - text before the first section header (go-systemd skips it, but a '['
//     or '#' in it would start a section or a comment mid-line);
//   - a section header not closed on its line (go-systemd reads on into the
//     next lines to find the ']');
//   - a comment line ending in a backslash (go-systemd continues the comment
//     onto the next line, systemd does not);
//   - a line of unit.SYSTEMD_LINE_MAX bytes or more.
//
// Where go-systemd fails, scan fails too, at the line that go-systemd
// choked on or an earlier one.

// scanSection is a section header and the keys that follow it.
type scanSection struct {
	name    string
	line    int
	entries []scanEntry
}

// scanEntry is a key and the line its assignment starts on.
type scanEntry struct {
	key  string
	line int
}

// syntaxError is a syntax error found by scan; cause is go-systemd's error
// for the file, if it failed too.
type syntaxError struct {
	line  int
	msg   string
	cause error
}

func (e *syntaxError) Error() string { return e.msg }
func (e *syntaxError) Unwrap() error { return e.cause }

// scan returns the sections of data with the lines of their headers and
// keys, or the first syntax error.
func scan(data []byte) ([]scanSection, *syntaxError) {
	var secs []scanSection
	inValue := false // the previous line continues into this one
	for n := 1; len(data) > 0; n++ {
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			// go-systemd drops a '\r' before '\n' only at the end of the file.
			l, data = bytes.TrimSuffix(data, []byte{'\r'}), nil
		}
		// Syntax errors name the line, never its text: the error reaches
		// LastError, which every local user may read, and a file that is
		// not a configuration at all (a symlink to a secret) must not be
		// quoted there.
		fail := func(format string, a ...any) ([]scanSection, *syntaxError) {
			return nil, &syntaxError{line: n, msg: fmt.Sprintf(format, a...)}
		}
		if len(l) >= unit.SYSTEMD_LINE_MAX {
			return fail("line is %d bytes long; at most %d allowed", len(l), unit.SYSTEMD_LINE_MAX-1)
		}
		if inValue {
			// A blank line ends a continued value, as does a line without
			// a trailing backslash.
			inValue = len(bytes.TrimSpace(l)) > 0 && bytes.HasSuffix(l, []byte{'\\'})
			continue
		}
		t := bytes.TrimLeftFunc(l, unicode.IsSpace)
		switch {
		case len(t) == 0:
		case t[0] == '#' || t[0] == ';':
			if bytes.HasSuffix(bytes.TrimRight(t, " \t\r"), []byte{'\\'}) {
				return fail("comment line ends with a backslash, which would make the next line part of the comment; remove the backslash")
			}
		case t[0] == '[':
			end := bytes.IndexByte(t, ']')
			if end < 0 {
				return fail("section header has no closing ']'")
			}
			if rest := bytes.TrimSpace(t[end+1:]); len(rest) > 0 {
				return fail("text after the section header; comments go on a line of their own")
			}
			secs = append(secs, scanSection{name: string(t[1:end]), line: n})
		default:
			if len(secs) == 0 {
				return fail("text comes before any section header; the file must begin with [%s]", section)
			}
			eq := bytes.IndexByte(t, '=')
			if eq < 0 || bytes.IndexByte(t[:eq], '\r') >= 0 {
				return fail("not a Key=value line (nor a comment: those begin with '#' or ';')")
			}
			s := &secs[len(secs)-1]
			s.entries = append(s.entries, scanEntry{key: runeString(string(t[:eq])), line: n})
			v := t[eq+1:]
			inValue = len(bytes.TrimSpace(v)) > 0 && bytes.HasSuffix(v, []byte{'\\'})
		}
	}
	return secs, nil
}

// runeString returns s trimmed, with each invalid UTF-8 byte replaced by
// U+FFFD, as go-systemd reads key names rune by rune.
func runeString(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// lines gives the line numbers of what go-systemd parsed.
type lines struct {
	secs []scanSection // nil if scan and go-systemd disagree
}

// lineMap pairs go-systemd's sections with scan's, in order. If they
// disagree (they should not), every line is 0: no line beats a wrong one.
func lineMap(sections []*unit.UnitSection, scanned []scanSection) lines {
	if len(sections) != len(scanned) {
		return lines{}
	}
	for i, s := range sections {
		if s.Section != scanned[i].name || len(s.Entries) != len(scanned[i].entries) {
			return lines{}
		}
		for j, e := range s.Entries {
			if e.Name != scanned[i].entries[j].key {
				return lines{}
			}
		}
	}
	return lines{secs: scanned}
}

// section returns the line of the i-th section header, or 0.
func (l lines) section(i int) int {
	if i < len(l.secs) {
		return l.secs[i].line
	}
	return 0
}

// entry returns the line of the j-th key of the i-th section, or 0.
func (l lines) entry(i, j int) int {
	if i < len(l.secs) && j < len(l.secs[i].entries) {
		return l.secs[i].entries[j].line
	}
	return 0
}
