package journal

import (
	"bytes"
	"log/slog"
	"strconv"
	"testing"
	"unicode"
)

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	slog.New(NewHandler(&buf, false, slog.LevelInfo)).Info("Attached veth1 into eth0", "mac", "02:11:22:33:44:55", "note", "two words")
	if got, want := buf.String(), "vethd: Attached veth1 into eth0 mac=02:11:22:33:44:55 note=\"two words\"\n"; got != want {
		t.Fatalf("plain line = %q, want %q", got, want)
	}
	buf.Reset()
	l := slog.New(NewHandler(&buf, true, slog.LevelInfo))
	l.Error("boom")
	l.Warn("careful")
	l.Debug("hidden")
	if got, want := buf.String(), "<3>boom\n<4>careful\n"; got != want {
		t.Fatalf("journal lines = %q, want %q", got, want)
	}
	buf.Reset()
	slog.New(NewHandler(&buf, false, slog.LevelInfo)).With("a", "b").Warn("w", "c", 1)
	if got, want := buf.String(), "vethd: warn: w a=b c=1\n"; got != want {
		t.Fatalf("with attrs = %q, want %q", got, want)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":           `""`,
		"csum,tso4":  "csum,tso4",
		"two words":  `"two words"`,
		`say "x"`:    `"say \"x\""`,
		"a=b":        `"a=b"`,
		"25ms":       "25ms",
		"02:00:5e:1": "02:00:5e:1",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestStderrIsJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	if StderrIsJournal() {
		t.Fatal("no JOURNAL_STREAM, yet journal")
	}
	t.Setenv("JOURNAL_STREAM", "1:2")
	if StderrIsJournal() {
		t.Fatal("JOURNAL_STREAM names another stream, yet journal")
	}
}

// TestQuoteNonPrintable: control characters, terminal escape sequences,
// Unicode format characters and invalid UTF-8 are quoted and escaped, so
// that a logged value is one line of printable text that reads back as it
// was.
func TestQuoteNonPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"veth\x1b[31mred": `"veth\x1b[31mred"`,
		"a\nforged=line":  `"a\nforged=line"`,
		"tab\there":       `"tab\there"`,
		"bell\a":          `"bell\a"`,
		"nul\x00":         `"nul\x00"`,
		"del\x7f":         `"del\x7f"`,
		"c1\u009b31m":     `"c1\u009b31m"`,
		"rtl\u202eevil":   `"rtl\u202eevil"`,
		"bad\xffutf8":     `"bad\xffutf8"`,
		"cut\xe2\x82":     `"cut\xe2\x82"`,
		`back\slash`:      `"back\\slash"`,
		"café":            "café",
		"\ufffd":          "\ufffd",
	} {
		got := Quote(in)
		if got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
			continue
		}
		if back, err := strconv.Unquote(got); got != in && (err != nil || back != in) {
			t.Errorf("Quote(%q) = %s does not read back: %q, %v", in, got, back, err)
		}
		for _, r := range got {
			if !unicode.IsPrint(r) {
				t.Errorf("Quote(%q) = %q holds the non-printable %U", in, got, r)
			}
		}
	}
}

// TestHandlerEscapesMessage: a message that holds a newline, an escape
// sequence or invalid UTF-8 (an error text quoting what someone else
// wrote) is written as one line of printable text.
func TestHandlerEscapesMessage(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewHandler(&buf, true, slog.LevelInfo))
	l.Error("set veth1 up: bad\n<0>forged emergency \x1b]0;title\a \xff end")
	l.Info(`quotes "stay" and \ too, café`)
	want := `<3>set veth1 up: bad\n<0>forged emergency \x1b]0;title\a \xff end` + "\n" +
		`<6>quotes "stay" and \ too, café` + "\n"
	if got := buf.String(); got != want {
		t.Fatalf("lines = %q, want %q", got, want)
	}
}
