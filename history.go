package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The history of a service is its deploy attempts, one JSON object a line
// in <dir>/.pgo/<name>/history.jsonl, appended as they end. It is bounded:
// past twice maxHistory lines the file is rewritten with the newest
// maxHistory. A torn last line (a crash mid-append) is skipped on reading.

// maxHistory is how many attempts a service's history keeps.
const maxHistory = 200

// Bounds on what one entry holds; subjects and reasons come from the team.
const (
	maxHistorySubject = 120
	maxHistoryReason  = 300
)

// historyEntry is one deploy attempt.
type historyEntry struct {
	Commit  string    `json:"commit"`
	Subject string    `json:"subject,omitempty"`
	At      time.Time `json:"at"`
	Trigger string    `json:"trigger"`            // poll, webhook, git pull, up, rollback, ...
	Key     string    `json:"key,omitempty"`      // the SSH op's key fingerprint
	KeyFile string    `json:"key_file,omitempty"` // the line that let it in: "ssh/alice.pub:1"
	Result  string    `json:"result"`             // a deploy result: ok, rejected, failed, rolled_back, unhealthy, timeout
	Reason  string    `json:"reason,omitempty"`   // why it did not deploy, one line
}

// history is the attempts file of one service.
type history struct {
	path string
	max  int
}

// add appends e, and rewrites the file when it has grown past twice max.
func (h history) add(e historyEntry) error {
	e.Subject = oneLine(e.Subject, maxHistorySubject)
	e.Reason = oneLine(e.Reason, maxHistoryReason)
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(h.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	entries, err := h.read()
	if err != nil || len(entries) <= 2*h.max {
		return err
	}
	return h.rewrite(entries[len(entries)-h.max:])
}

// read returns every entry, oldest first, skipping lines that do not parse.
func (h history) read() ([]historyEntry, error) {
	data, err := os.ReadFile(h.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []historyEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var e historyEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Commit != "" {
			entries = append(entries, e)
		}
	}
	return entries, nil
}

func (h history) rewrite(entries []historyEntry) error {
	var b bytes.Buffer
	for _, e := range entries {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b.Write(append(line, '\n'))
	}
	return writeFileAtomic(h.path, b.Bytes(), 0o600)
}

// newest returns the last n entries, newest first.
func (h history) newest(n int) ([]historyEntry, error) {
	entries, err := h.read()
	if err != nil {
		return nil, err
	}
	entries = entries[max(0, len(entries)-n):]
	slices.Reverse(entries)
	return entries, nil
}

// deployedBefore finds the commit under prefix that deployed successfully
// before: the one commit of the ok entries that starts with prefix.
func (h history) deployedBefore(prefix string) (historyEntry, error) {
	entries, err := h.newest(h.max * 2)
	if err != nil {
		return historyEntry{}, err
	}
	var found []historyEntry
	var other *historyEntry
	for i, e := range entries {
		if !strings.HasPrefix(e.Commit, prefix) {
			continue
		}
		if e.Result != resultOK {
			if other == nil {
				other = &entries[i]
			}
			continue
		}
		if !slices.ContainsFunc(found, func(f historyEntry) bool { return f.Commit == e.Commit }) {
			found = append(found, e)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var names []string
		for _, f := range found {
			names = append(names, short(f.Commit))
		}
		return historyEntry{}, fmt.Errorf("commit %s is ambiguous: it starts %s; give more of the hash", prefix, strings.Join(names, ", "))
	case other != nil:
		return historyEntry{}, fmt.Errorf("commit %s never deployed successfully (its last attempt: %s); see history", short(other.Commit), other.Result)
	}
	return historyEntry{}, fmt.Errorf("no commit %s in the history of deploys that worked; see history", prefix)
}

// formatHistory renders entries as status does, one attempt a line and
// the reason of one that did not deploy below it.
func formatHistory(entries []historyEntry) string {
	if len(entries) == 0 {
		return "no deploy attempts yet\n"
	}
	var b strings.Builder
	for _, e := range entries {
		by := e.Trigger
		if e.KeyFile != "" {
			by += " by " + e.KeyFile
		}
		fmt.Fprintf(&b, "%s  %s  %-11s  %-24s  %s\n", short(e.Commit), e.At.UTC().Format(time.RFC3339),
			e.Result, escapeControl(by), escapeControl(orDash(e.Subject)))
		if e.Reason != "" && e.Result != resultOK {
			fmt.Fprintf(&b, "         %s\n", escapeControl(e.Reason))
		}
	}
	return b.String()
}

// oneLine folds s into one line of at most limit bytes, cut on a rune boundary.
func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
