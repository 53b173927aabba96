package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHistoryNewestFirstAndBounded(t *testing.T) {
	h := history{path: filepath.Join(t.TempDir(), "history.jsonl"), max: 5}
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for i := range 12 {
		commit := strings.Repeat(string(rune('a'+i)), 40)
		if err := h.add(historyEntry{Commit: commit, At: at.Add(time.Duration(i) * time.Minute), Trigger: "poll", Result: resultOK}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := h.read()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) > 2*h.max {
		t.Errorf("%d entries on disk, want at most %d", len(all), 2*h.max)
	}
	newest, _ := h.newest(3)
	if len(newest) != 3 || newest[0].Commit[0] != 'l' || newest[2].Commit[0] != 'j' {
		t.Errorf("newest 3: %+v", newest)
	}
}

func TestHistorySkipsATornLine(t *testing.T) {
	h := history{path: filepath.Join(t.TempDir(), "history.jsonl"), max: maxHistory}
	h.add(historyEntry{Commit: strings.Repeat("a", 40), Result: resultOK})
	f, _ := os.OpenFile(h.path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"commit":"bbbb`)
	f.Close()
	entries, err := h.newest(10)
	if err != nil || len(entries) != 1 {
		t.Errorf("after a torn line: %+v, %v", entries, err)
	}
}

func TestHistoryDeployedBefore(t *testing.T) {
	h := history{path: filepath.Join(t.TempDir(), "history.jsonl"), max: maxHistory}
	good1, good2 := "abcd111"+strings.Repeat("0", 33), "abcd222"+strings.Repeat("0", 33)
	bad := "eeee333" + strings.Repeat("0", 33)
	for _, e := range []historyEntry{{Commit: good1, Result: resultOK}, {Commit: good2, Result: resultOK}, {Commit: bad, Result: resultRejected}, {Commit: good1, Result: resultOK}} {
		h.add(e)
	}
	if e, err := h.deployedBefore("abcd1"); err != nil || e.Commit != good1 {
		t.Errorf("abcd1: %+v, %v", e, err)
	}
	if _, err := h.deployedBefore("abcd"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("abcd: %v, want ambiguous", err)
	}
	if _, err := h.deployedBefore("eeee"); err == nil || !strings.Contains(err.Error(), "never deployed successfully") {
		t.Errorf("eeee: %v", err)
	}
	if _, err := h.deployedBefore("ffff"); err == nil || !strings.Contains(err.Error(), "no commit ffff") {
		t.Errorf("ffff: %v", err)
	}
}

func TestFormatHistory(t *testing.T) {
	entries := []historyEntry{
		{Commit: strings.Repeat("b", 40), At: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), Trigger: "git pull", KeyFile: "ssh/alice.pub:1",
			Result: resultRejected, Subject: "evil \x1b[2J subject", Reason: "privileged is not allowed"},
		{Commit: strings.Repeat("a", 40), Trigger: "poll", Result: resultOK, Subject: "first"},
	}
	out := formatHistory(entries)
	for _, want := range []string{"bbbbbbb", "git pull by ssh/alice.pub:1", "rejected", "\n         privileged is not allowed\n", "aaaaaaa"} {
		if !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("a control character from a commit subject reached the terminal:\n%q", out)
	}
	if got := oneLine("a\nb  "+strings.Repeat("é", 100), 10); got != "a b ééé…" {
		t.Errorf("oneLine: %q", got)
	}
}
