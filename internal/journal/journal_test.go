package journal

import (
	"bytes"
	"log/slog"
	"testing"
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
