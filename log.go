package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// lineHandler is a slog.Handler printing one line per record, the service first:
//
//	2026-11-26T15:30:00Z INFO [web] deployed 3f2a1c9 (2 services changed) key=value
//
// which reads well in journalctl and in a terminal alike. Records carry the
// teams' strings (key file names, commit subjects, compose output, ops as a
// client wrote them), so every control character in any part of a record,
// message included, is written escaped, as Go would quote it ("\n",
// "\x1b"): a record can never end its line early and forge the next.
// Attribute values are quoted when they hold a blank, a quote, a backslash
// or '=', so where one ends is never in doubt either.
type lineHandler struct {
	mu      *sync.Mutex
	w       io.Writer
	level   slog.Level
	service string
	attrs   []slog.Attr
}

func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(&lineHandler{mu: &sync.Mutex{}, w: w, level: level})
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format(time.RFC3339))
	b.WriteByte(' ')
	b.WriteString(r.Level.String())
	b.WriteByte(' ')
	if h.service != "" {
		b.WriteString("[" + escapeControl(h.service) + "] ")
	}
	b.WriteString(escapeControl(r.Message))
	for _, a := range h.attrs {
		writeAttr(&b, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, "", a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// writeAttr writes " key=value", a group's members as " group.key=value".
func writeAttr(b *strings.Builder, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, m := range v.Group() {
			writeAttr(b, prefix+a.Key+".", m)
		}
		return
	}
	if a.Equal(slog.Attr{}) {
		return
	}
	b.WriteString(" " + quoteIfNeeded(prefix+a.Key) + "=" + quoteIfNeeded(v.String()))
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		if a.Key == "service" {
			c.service = a.Value.String()
			continue
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

// WithGroup is not used by pgo; groups are flattened.
func (h *lineHandler) WithGroup(string) slog.Handler { return h }

// quoteIfNeeded quotes s, Go style, when it is empty or holds anything but
// printable characters other than a blank, a quote, a backslash or '='.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \"\\=") || escapeControl(s) != s {
		return strconv.Quote(s)
	}
	return s
}

// escapeControl writes every character of s that is not printable (control
// and format characters, line and paragraph separators, invalid UTF-8) as
// a Go escape, and leaves the rest, blanks included, as it is.
func escapeControl(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
