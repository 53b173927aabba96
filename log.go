package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// lineHandler is a slog.Handler printing one line per event, the service first:
//
//	2026-11-26T15:30:00Z INFO [web] deployed 3f2a1c9 (2 services changed)
//
// which reads well in journalctl and in a terminal alike.
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
		fmt.Fprintf(&b, "[%s] ", h.service)
	}
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%s", a.Key, quoteIfNeeded(a.Value.String()))
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), nil...)
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

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
