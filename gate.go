package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The health gate: after up, a deploy is good only once every container
// that should run runs, and every one with a healthcheck is healthy. A
// container that exits non-zero or restarts over and over fails it at once;
// one still unhealthy or not ready at the deadline fails it then.

// defaultHealthTimeout is how long a deploy's containers have to become
// ready when pgo.toml sets no health_timeout.
const defaultHealthTimeout = 2 * time.Minute

// healthPoll is how often the gate looks at the containers.
const healthPoll = 500 * time.Millisecond

// readySettle is how long a running container must have run before it
// counts as ready: one that crashes right after it starts, and is
// restarted by its policy, looks "running" at a look in between.
const readySettle = 3 * time.Second

// crashRestarts is how many restarts during the gate count as a crash loop.
const crashRestarts = 2

// logLines is how many of a failed container's last log lines are kept.
const logLines = 20

// containerHealth is one container as docker inspect reports it.
type containerHealth struct {
	psEntry
	Restarts  int
	ExitCode  int
	StartedAt time.Time // the last start; zero when docker does not say
}

// inspectFormat asks docker inspect for a containerHealth per line.
// Unlike docker ps, docker inspect does not read "\t" in the template: the tabs are real.
const inspectFormat = "{{.Name}}\t{{index .Config.Labels \"com.docker.compose.service\"}}\t{{.Config.Image}}\t" +
	"{{.State.Status}}\t{{if .State.Health}}{{.State.Health.Status}}{{end}}\t{{.RestartCount}}\t{{.State.ExitCode}}\t{{.State.StartedAt}}"

func parseInspect(out string) ([]containerHealth, error) {
	var cs []containerHealth
	for _, f := range tabRows(out) {
		if len(f) != 8 {
			return nil, fmt.Errorf("docker inspect: unexpected line %q", strings.Join(f, "\t"))
		}
		restarts, err1 := strconv.Atoi(f[5])
		code, err2 := strconv.Atoi(f[6])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("docker inspect: unexpected line %q", strings.Join(f, "\t"))
		}
		started, _ := time.Parse(time.RFC3339Nano, f[7]) // "0001-01-01T00:00:00Z" before the first start
		cs = append(cs, containerHealth{psEntry: psEntry{Name: strings.TrimPrefix(f[0], "/"), Service: f[1], Image: f[2],
			State: f[3], Health: f[4]}, Restarts: restarts, ExitCode: code, StartedAt: started})
	}
	return cs, nil
}

// inspectContainers reports the project's containers as the gate needs them.
func (w *worker) inspectContainers(ctx context.Context) ([]containerHealth, error) {
	if w.d.engine != nil {
		return w.d.engine.inspectContainers(ctx, w.svc.Name)
	}
	ps, err := w.containers(ctx)
	if err != nil || len(ps) == 0 {
		return nil, err
	}
	args := []string{"inspect", "--type", "container", "--format", inspectFormat, "--"}
	for _, e := range ps {
		args = append(args, e.Name)
	}
	cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, args...)
	var stdout bytes.Buffer
	stderr := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("docker inspect: %s", lastLines(strings.TrimSpace(stderr.String()), 3))
	}
	return parseInspect(stdout.String())
}

// healthVerdict is one look at a project's containers.
type healthVerdict struct {
	failed    string   // why the deploy failed for good, "" if it has not
	culprit   string   // the container that failed it, for its logs
	waiting   []string // what is not ready yet
	pending   string   // the first container not ready yet, for its logs
	unhealthy string   // a container whose healthcheck fails now, for the verdict at the deadline
	settling  bool     // a ready container started less than readySettle ago
}

// ready: nothing failed and nothing is waiting. A ready verdict passes the
// gate once settled, or at the deadline.
func (v healthVerdict) ready() bool { return v.failed == "" && len(v.waiting) == 0 }

func (v healthVerdict) settled() bool { return v.ready() && !v.settling }

// judgeHealth looks at the containers of services once, at now. baseline
// holds each container's restart count when the gate first saw it.
func judgeHealth(services map[string]projectService, cs []containerHealth, baseline map[string]int, now time.Time) healthVerdict {
	var v healthVerdict
	byService := map[string][]containerHealth{}
	for _, c := range cs {
		byService[c.Service] = append(byService[c.Service], c)
		if _, ok := baseline[c.Name]; !ok {
			baseline[c.Name] = c.Restarts
		}
	}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		s := services[name]
		if len(s.Profiles) > 0 {
			continue
		}
		want := 1
		if s.Deploy != nil && s.Deploy.Replicas != nil {
			want = *s.Deploy.Replicas
		}
		have := byService[name]
		if len(have) < want {
			v.waiting = append(v.waiting, fmt.Sprintf("%s: %d of %d containers", name, len(have), want))
		}
		for _, c := range have {
			restarts := c.Restarts - baseline[c.Name]
			switch {
			case restarts >= crashRestarts:
				v.failed, v.culprit = fmt.Sprintf("%s restarts repeatedly (%d restarts, last exit status %d)", c.Name, restarts, c.ExitCode), c.Name
			case c.State == "exited" && c.ExitCode != 0:
				v.failed, v.culprit = fmt.Sprintf("%s exited with status %d", c.Name, c.ExitCode), c.Name
			case c.State == "exited":
				// a one-shot that finished
			case c.State == "running" && c.Health == "healthy":
				// its healthcheck says it is ready
			case c.State == "running" && c.Health == "":
				v.settling = v.settling || now.Sub(c.StartedAt) < readySettle
			case c.State == "running" && c.Health == "unhealthy":
				v.unhealthy = c.Name
				v.wait(c.Name, "unhealthy")
			case c.State == "running":
				v.wait(c.Name, "health "+c.Health)
			default:
				v.wait(c.Name, c.State)
			}
			if v.failed != "" {
				return v
			}
		}
	}
	return v
}

func (v *healthVerdict) wait(container, state string) {
	v.waiting = append(v.waiting, container+" is "+state)
	if v.pending == "" {
		v.pending = container
	}
}

// healthTimeout is the service's deadline for a deploy's containers:
// pgo.toml's health_timeout, lowered by x-pgo health_timeout of project.
func (w *worker) healthTimeout(project []byte) time.Duration {
	limit := w.svc.HealthTimeout
	if limit <= 0 {
		limit = defaultHealthTimeout
	}
	if d := xPgoHealthTimeout(project); d > 0 && d < limit {
		limit = d
	}
	return limit
}

// xPgoHealthTimeout reads x-pgo: {health_timeout: 30s}, 0 when unset or unreadable.
func xPgoHealthTimeout(project []byte) time.Duration {
	var p struct {
		XPgo struct {
			HealthTimeout string `json:"health_timeout"`
		} `json:"x-pgo"`
	}
	if json.Unmarshal(project, &p) != nil {
		return 0
	}
	d, err := time.ParseDuration(p.XPgo.HealthTimeout)
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

// awaitHealthy is the health gate on project, just brought up. It returns
// nil once the containers are ready, and otherwise a deployError
// (unhealthy or timeout) and the failing container's last log lines.
func (w *worker) awaitHealthy(ctx context.Context, project []byte) (*deployError, []string) {
	services, err := projectServices(project)
	if err != nil {
		return deployFailure(resultFailed, "%v", err), nil
	}
	limit := w.healthTimeout(project)
	deadline := time.Now().Add(limit)
	baseline := map[string]int{}
	var v healthVerdict
	for {
		cs, err := w.inspectContainers(ctx)
		if err != nil {
			v = healthVerdict{waiting: []string{err.Error()}}
		}
		if err == nil {
			v = judgeHealth(services, cs, baseline, time.Now())
			w.record(psEntries(cs), services)
			switch {
			case v.failed != "":
				return deployFailure(resultUnhealthy, "unhealthy: %s", v.failed), w.lastLogs(ctx, v.culprit)
			case v.settled():
				return nil, nil
			}
		} else if ctx.Err() != nil {
			return deployFailure(resultTimeout, "timeout: %v", ctx.Err()), nil
		}
		if time.Now().After(deadline) {
			break
		}
		if pauseCtx(ctx, healthPoll) != nil {
			return deployFailure(resultTimeout, "timeout while waiting for the containers: %s", strings.Join(v.waiting, ", ")), nil
		}
	}
	if v.ready() {
		return nil, nil // ready, if not settled yet, at the end of a short health_timeout
	}
	if v.unhealthy != "" {
		return deployFailure(resultUnhealthy, "unhealthy after %s: %s", limit, strings.Join(v.waiting, ", ")), w.lastLogs(ctx, v.unhealthy)
	}
	return deployFailure(resultTimeout, "timeout: not ready after %s: %s", limit, strings.Join(v.waiting, ", ")), w.lastLogs(ctx, v.pending)
}

// pauseCtx waits d, or less when ctx ends; the health gates poll with it.
func pauseCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// lastLogs returns the last log lines of a container, nil when there is none.
func (w *worker) lastLogs(ctx context.Context, container string) []string {
	if container == "" {
		return nil
	}
	return w.logTail(ctx, "logs", "--tail", strconv.Itoa(logLines), "--", container)
}

// logTail runs docker with args, a command that prints logs, and returns
// its last logLines lines, secrets redacted; nil when it fails or prints
// nothing. It has its own deadline: a deploy that failed shows them also
// when the client left.
func (w *worker) logTail(ctx context.Context, args ...string) []string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commandTimeout)
	defer cancel()
	cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, args...)
	out := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return nil
	}
	text := strings.TrimRight(redact(out.String(), w.secrets), "\n")
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	return lines[max(0, len(lines)-logLines):]
}

func psEntries(cs []containerHealth) []psEntry {
	ps := make([]psEntry, len(cs))
	for i, c := range cs {
		ps[i] = c.psEntry
	}
	return ps
}

// maxHealthTimeout bounds health_timeout: a deploy holds its service while it waits.
const maxHealthTimeout = 30 * time.Minute
