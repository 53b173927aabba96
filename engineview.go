package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// containerView is pgod's picture of the compose containers on the engine,
// kept current by the engine's event stream: an idle poll of any number of
// services asks the engine nothing. The picture of a project counts only
// while the stream is connected and no event of that project has come since
// it was taken; otherwise a look asks the engine for that project (one
// request, no process), and keeps the answer when no event came meanwhile.
//
// A container removed outside a deploy (docker rm, a prune) is reported to
// removed at once, so its service is repaired without waiting for its poll.
// A stopped one is not: the stop op stops containers on purpose until the
// next poll, as it always has.
type containerView struct {
	api     *engineAPI
	log     *slog.Logger
	removed func(project string)

	mu      sync.Mutex
	live    bool                 // the stream is connected and listed was taken after it connected
	conn    uint64               // counts connections and losses of the stream
	listed  map[string][]psEntry // by project, as the engine has them
	changed map[string]uint64    // by project: events since the stream connected; listed[p] is current when 0
}

func newContainerView(api *engineAPI, log *slog.Logger, removed func(string)) *containerView {
	return &containerView{api: api, log: log, removed: removed}
}

// containers lists project's containers like worker.containers.
func (v *containerView) containers(ctx context.Context, project string) ([]psEntry, error) {
	v.mu.Lock()
	if v.live && v.changed[project] == 0 {
		ps := slices.Clone(v.listed[project])
		v.mu.Unlock()
		return ps, nil
	}
	conn, seen := v.conn, v.changed[project]
	v.mu.Unlock()

	ps, err := v.api.projectContainers(ctx, project)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if v.live && v.conn == conn && v.changed[project] == seen {
		// No event came while the engine answered: the answer is current
		// until the next one.
		v.listed[project] = slices.Clone(ps)
		delete(v.changed, project)
	}
	v.mu.Unlock()
	return ps, nil
}

// forget has the next look at project ask the engine.
func (v *containerView) forget(project string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.changed != nil {
		v.changed[project]++
	}
}

// eventRetry bounds the wait before the stream is opened again.
const eventRetry = 30 * time.Second

// run follows the event stream until ctx is done, opening it again when it
// breaks. Meanwhile every look asks the engine.
func (v *containerView) run(ctx context.Context) {
	backoff := time.Second
	for {
		began := time.Now()
		err := v.api.events(ctx, v.connected, v.saw)
		v.lost()
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		v.log.Warn("engine events: " + err.Error() + "; asking the engine at every look until the stream is back")
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, eventRetry)
	}
}

// connected takes the whole picture once the stream runs: what changes
// after this list arrives as events. Events are read only after it returns.
func (v *containerView) connected() error {
	ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
	defer cancel()
	listed, err := v.api.composeContainers(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.live, v.listed, v.changed = true, listed, map[string]uint64{}
	v.conn++
	return nil
}

// lost forgets the picture: without events it cannot be kept current.
func (v *containerView) lost() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.live, v.listed, v.changed = false, nil, nil
	v.conn++
}

// saw marks the project of an event as changed and reports a removal.
func (v *containerView) saw(ev engineEvent) {
	project := ev.Actor.Attributes[composeProjectLabel]
	if project == "" || ev.Type != "container" || ignoredAction(ev.Action) {
		return
	}
	v.mu.Lock()
	v.changed[project]++
	v.mu.Unlock()
	if ev.Action == "destroy" && ev.Actor.Attributes[composeOneoffLabel] != "True" && v.removed != nil {
		v.removed(project)
	}
}

// ignoredAction names the events that change nothing the list shows: exec
// sessions, attaches, terminal resizes, copies.
func ignoredAction(action string) bool {
	for _, p := range []string{"exec_", "attach", "detach", "resize", "top", "archive-path", "extract-to-dir", "export", "commit", "copy"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}
