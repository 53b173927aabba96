package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// health answers /healthz: the daemon's main loop (signals and config
// reloads) and the poll loop of each service beat regularly and say how
// long they may stay silent. The daemon is healthy while every
// loop's last beat is younger than its max age. A stuck loop (a deadlock,
// a git fetch that never returns) turns /healthz to 503 and names the loop.
type health struct {
	now func() time.Time // time.Now; tests substitute a clock

	mu    sync.Mutex
	beats map[string]heartbeat
}

type heartbeat struct {
	last   time.Time
	maxAge time.Duration
}

func newHealth() *health {
	return &health{now: time.Now, beats: map[string]heartbeat{}}
}

// beat records that loop is alive and must beat again within maxAge.
func (h *health) beat(loop string, maxAge time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.beats[loop] = heartbeat{last: h.now(), maxAge: maxAge}
}

// forget drops a loop that ended on purpose (a service removed from the config).
func (h *health) forget(loop string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.beats, loop)
}

// stale returns the loops whose last beat is too old, sorted, each with how
// long it has been silent.
func (h *health) stale() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var stale []string
	for loop, b := range h.beats {
		if age := now.Sub(b.last); age > b.maxAge {
			stale = append(stale, fmt.Sprintf("%s: no heartbeat for %s (limit %s)", loop, age.Round(time.Second), b.maxAge))
		}
	}
	sort.Strings(stale)
	return stale
}

// ServeHTTP answers 200 "ok" when every loop is alive, 503 with the stale loops otherwise.
func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if stale := h.stale(); len(stale) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy\n%s\n", strings.Join(stale, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}
