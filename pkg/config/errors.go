package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vethd/vethd/pkg/ifname"
	"github.com/vethd/vethd/pkg/macaddr"
)

// What errors reveal. A configuration file may be a symbolic link to any
// file (say one of root's key=value secrets), and vethd's LastError
// (D-Bus) and STATUS= (systemctl status) are readable by every user. So an
// Error has two texts: Error, for the journal (root and adm), quotes the
// value that was refused; Public, for what any user reads, names the
// file, the line, the key and the problem, but no text taken from the
// file: no value, no unknown key's or section's name, none of a line that
// does not parse.

// ValueError is a value that a key cannot take. Error quotes the value;
// Problem, what Public shows, does not.
type ValueError struct {
	// Shown is the value as Error shows it: quoted (%q, so control
	// characters are escaped) or, for a plain number, as it is.
	Shown string
	// Problem is what is wrong, in words that follow the value and quote
	// none of it: `is out of range: an MTU is 68 to 65521, or "inherit"`.
	Problem string
	// Detail, if not "", follows Problem in Error only: it may quote
	// the value (" (MTU=1500)").
	Detail string
	// Subject is what Public puts in the value's place; "" is "the value".
	Subject string
	// Err is what the error wraps (ifname.ErrInvalid, …), or nil.
	Err error
}

// Error returns "SHOWN PROBLEM[DETAIL]".
func (e *ValueError) Error() string { return e.Shown + " " + e.Problem + e.Detail }

// Unwrap returns Err.
func (e *ValueError) Unwrap() error { return e.Err }

// public returns "the value PROBLEM" (or Subject's).
func (e *ValueError) public() string {
	s := e.Subject
	if s == "" {
		s = "the value"
	}
	return s + " " + e.Problem
}

// badValue returns the *ValueError of v, shown quoted.
func badValue(v, problem string, args ...any) *ValueError {
	return &ValueError{Shown: strconv.Quote(v), Problem: fmt.Sprintf(problem, args...)}
}

// badNumber returns the *ValueError of v, a plain number, shown as it is.
func badNumber(v, problem string, args ...any) *ValueError {
	return &ValueError{Shown: v, Problem: fmt.Sprintf(problem, args...)}
}

// publicText is an error whose Public text is pub (unknown keys and
// sections, go-systemd's syntax errors, which may quote the line).
type publicText struct {
	err error
	pub string
}

func (e *publicText) Error() string  { return e.err.Error() }
func (e *publicText) Unwrap() error  { return e.err }
func (e *publicText) public() string { return e.pub }

// safe returns an error of msg, which quotes nothing from the file.
func safe(msg string) error { return &publicText{err: errors.New(msg), pub: msg} }

// publicError is what an error implements whose text, or another one it
// offers, quotes nothing from the file.
type publicError interface{ public() string }

func (e *syntaxError) public() string { return e.msg } // (scan quotes none of the line)

// Public returns the error as any user may read it: "FILE:LINE: KEY=:
// PROBLEM", without the value that was refused or any other text from
// the file (see ValueError). An unknown key is not named. The journal
// gets Error.
func (e *Error) Public() string {
	p := *e
	if p.Key != "" && !slices.Contains(knownKeys, p.Key) {
		p.Key = "" // an unknown key's name is the file's text too
	}
	p.Err = errors.New(publicProblem(e))
	return p.Error()
}

// publicProblem is the message of e.Err as Public shows it.
func publicProblem(e *Error) string {
	var pe publicError
	switch {
	case e.Err == nil:
		return ""
	case errors.As(e.Err, &pe):
		return pe.public() + commentHint(e.Err)
	case errors.Is(e.Err, ifname.ErrInvalid):
		return "the value is not a valid interface name (at most 15 bytes of printable UTF-8, no '/', ':', '%' or white space)" + commentHint(e.Err)
	case errors.Is(e.Err, macaddr.ErrInvalid):
		return "the value is not a usable MAC address: want persistent, random or a unicast address like 02:00:5e:10:00:01" + commentHint(e.Err)
	case e.Key == "" && e.Line == 0:
		// About the file itself (missing, unreadable, not a regular
		// file, too large, a bad name): no text of it is quoted.
		return e.Err.Error()
	}
	return "the value is not valid (the journal has the details)"
}

// errCommentHint is what withHint adds: the value looks like it carries a
// trailing comment.
type commentHintError struct {
	err error
	c   byte
}

func (e *commentHintError) Error() string { return e.err.Error() + e.hint() }
func (e *commentHintError) Unwrap() error { return e.err }
func (e *commentHintError) hint() string {
	return fmt.Sprintf("; '%c' starts a comment only at the beginning of a line, so put comments on a line of their own", e.c)
}

// commentHint returns the hint withHint added to err, or "".
func commentHint(err error) string {
	var h *commentHintError
	if errors.As(err, &h) {
		return h.hint()
	}
	return ""
}

// withHint adds to err, about value v, a hint when v looks like it carries
// a trailing comment: unit-file syntax has none.
func withHint(err error, v string) error {
	for i := 1; i < len(v); i++ {
		if (v[i] == '#' || v[i] == ';') && (v[i-1] == ' ' || v[i-1] == '\t') {
			return &commentHintError{err: err, c: v[i]}
		}
	}
	return err
}

// unknownKey is the error of an assignment to a key that is not one of
// knownKeys.
func unknownKey(key string) error {
	msg := "unknown key; known keys are " + strings.Join(knownKeys, ", ")
	for _, k := range knownKeys {
		if strings.EqualFold(k, key) {
			msg += "; did you mean " + k + "= (keys are case-sensitive)?"
		}
	}
	return safe(msg)
}
