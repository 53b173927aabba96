package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestLogForgedLine: a team string with a newline in the message or in an
// attribute stays on its record's line, escaped, and the service stays named.
func TestLogForgedLine(t *testing.T) {
	const forged = "\n2026-01-01T00:00:00Z INFO [other] deployed"
	var out bytes.Buffer
	log := newLogger(&out, false).With("service", "web")
	log.Warn("ssh/a.pub"+forged+".pub: skipped", "subject", "fix"+forged, forged, "v")
	got := out.String()
	if n := strings.Count(got, "\n"); n != 1 || !strings.HasSuffix(got, "\n") {
		t.Fatalf("one record gave %d lines:\n%s", n, got)
	}
	for _, want := range []string{" WARN [web] ssh/a.pub\\n2026-01-01T00:00:00Z INFO [other] deployed.pub: skipped ",
		`subject="fix\n2026-01-01T00:00:00Z INFO [other] deployed"`, `"\n2026-01-01T00:00:00Z INFO [other] deployed"=v`} {
		if !strings.Contains(got, want) {
			t.Errorf("log line lacks %s:\n%s", want, got)
		}
	}
}

func TestLogEscapesEveryControlCharacter(t *testing.T) {
	var out bytes.Buffer
	log := newLogger(&out, true)
	log.Info("a\rb\x1b[2Jc\td\u2028e\u202ef\xffg", "k", "x\r\x00y", "plain", "ok", "empty", "", "group.ok", "a=b")
	got := out.String()
	want := ` INFO a\rb\x1b[2Jc\td\u2028e\u202ef\xffg k="x\r\x00y" plain=ok empty="" group.ok="a=b"` + "\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("got  %q\nwant suffix %q", got, want)
	}
	for i := 0; i < len(got)-1; i++ {
		if got[i] < 0x20 || got[i] == 0x7f {
			t.Errorf("raw control byte %#x at %d in %q", got[i], i, got)
		}
	}
}

func TestLogServiceFirst(t *testing.T) {
	var out bytes.Buffer
	newLogger(&out, false).With("service", "web", "commit", "3f2a1c9").Info("deployed 3f2a1c9 (2 services changed)", "n", 2)
	if got := out.String(); !strings.Contains(got, " INFO [web] deployed 3f2a1c9 (2 services changed) commit=3f2a1c9 n=2\n") {
		t.Errorf("got %q", got)
	}
	out.Reset()
	newLogger(&out, false).Debug("hidden")
	if out.Len() != 0 {
		t.Errorf("debug record written without --debug: %q", out.String())
	}
}
