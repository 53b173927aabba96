package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// composeEnv is the whole environment of every docker and docker compose
// command run for a service: a minimal base, the per-user docker config, remote
// resources off, the validated commit's secrets.env.age (secrets.go) and the
// service's env from pgo.toml, which comes last. Nothing of pgod's own.
func (w *worker) composeEnv() []string {
	env := append(w.acct.baseEnv(),
		"DOCKER_CONFIG="+filepath.Join(w.acct.Home, ".docker"),
		"COMPOSE_EXPERIMENTAL_GIT_REMOTE=false",
		"COMPOSE_EXPERIMENTAL_OCI_REMOTE=false",
	)
	env = append(env, w.committedEnv()...)
	return append(env, w.svc.Env...)
}

// composeCmd prepares "docker compose" on project (canonical JSON, fed on
// stdin) as the service's user, in the live checkout, as runnableProject
// makes it.
func (w *worker) composeCmd(ctx context.Context, project []byte, args ...string) (*exec.Cmd, error) {
	runnable, err := w.runnableProject(project, startsContainers(args))
	if err != nil {
		return nil, err
	}
	return w.composeCmdIn(ctx, runnable, w.checkout, args...), nil
}

// runnableProject is the validated project as compose runs it: bind sources
// replaced by their pins (binds.go; made first when mount is set, the command
// may create or start containers), and NET_RAW dropped where other projects
// share the network (shared.go). Every compose command on the live checkout
// gets the same project for the same input, so compose recreates nothing.
func (w *worker) runnableProject(project []byte, mount bool) ([]byte, error) {
	proj, err := decodeProject(project)
	if err != nil {
		return nil, err
	}
	if err := w.pins.pinProject(proj, mount); err != nil {
		return nil, err
	}
	dropNetRawOnSharedNetworks(proj, w.d.sharedNetworks(w.svc.Name))
	return encodeProject(proj, "")
}

// startsContainers reports whether a compose command may create or start a
// container, and so needs the pins in place.
func startsContainers(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "up", "create", "start", "restart", "run", "unpause":
		return true
	}
	return false
}

// composeCmdIn prepares compose on a project as it is, with dir as the
// project directory: a staging worktree, where only images are pulled.
func (w *worker) composeCmdIn(ctx context.Context, project []byte, dir string, args ...string) *exec.Cmd {
	if w.d.view != nil {
		// The next look asks the engine: this command's events may come
		// after it ends.
		w.d.view.forget(w.svc.Name)
	}
	full := append([]string{"compose", "-p", w.svc.Name, "-f", "-", "--project-directory", dir}, args...)
	cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, full...)
	cmd.Stdin = bytes.NewReader(project)
	return cmd
}

// runCompose runs compose with args on project in the live checkout. Its
// output goes to out (may be nil); errors carry the end of compose's
// standard error.
func (w *worker) runCompose(ctx context.Context, project []byte, out io.Writer, args ...string) error {
	cmd, err := w.composeCmd(ctx, project, args...)
	if err != nil {
		return fmt.Errorf("compose %s: %w", args[0], err)
	}
	return w.runComposeCmd(cmd, out, args)
}

// runComposeIn runs compose on a project as it is, in dir.
func (w *worker) runComposeIn(ctx context.Context, project []byte, dir string, out io.Writer, args ...string) error {
	return w.runComposeCmd(w.composeCmdIn(ctx, project, dir, args...), out, args)
}

func (w *worker) runComposeCmd(cmd *exec.Cmd, out io.Writer, args []string) error {
	stderr := newTail(maxTail)
	cmd.Stdout = out
	cmd.Stderr = stderr
	if out != nil {
		cmd.Stderr = io.MultiWriter(stderr, out)
	}
	w.log.Debug("run", "cmd", "docker compose "+strings.Join(args, " "))
	err := cmd.Run()
	w.d.metrics.command(w.svc.Name, "compose "+args[0], err)
	if err != nil {
		return fmt.Errorf("compose %s: %s", args[0], redact(lastLines(strings.TrimSpace(stderr.String()), 3), w.secrets))
	}
	return nil
}

// psEntry is one container of a project.
type psEntry struct {
	Name    string
	Service string
	State   string // created, running, restarting, exited, ...
	Image   string
	Health  string // starting, healthy, unhealthy; "" without a healthcheck
}

// psFormat is what containers asks docker ps for: a line per container.
// The status text is read only for the health it ends with.
const psFormat = `{{.Names}}\t{{.State}}\t{{.Label "` + composeServiceLabel + `"}}\t{{.Image}}\t{{.Status}}`

// containers lists the project's containers, stopped ones too, but not
// one-off ones ("compose run"). Every poll of every service runs it, so it
// reads the daemon's picture of the engine (engineview.go) when it has one,
// and otherwise asks docker rather than compose by the project's label:
// plain docker costs a sixth of compose's CPU.
func (w *worker) containers(ctx context.Context) ([]psEntry, error) {
	if w.d.view != nil {
		return w.d.view.containers(ctx, w.svc.Name)
	}
	cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, "ps", "-a",
		"--filter", "label="+composeProjectLabel+"="+w.svc.Name,
		"--filter", "label="+composeOneoffLabel+"=False",
		"--format", psFormat)
	var stdout bytes.Buffer
	stderr := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := lastLines(strings.TrimSpace(stderr.String()), 3)
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("docker ps: %s", msg)
	}
	return parsePS(stdout.String())
}

// parsePS reads psFormat lines: name, state, compose service, image and
// status, tab-separated; the last two may be missing.
func parsePS(out string) ([]psEntry, error) {
	var entries []psEntry
	for _, f := range tabRows(out) {
		if len(f) != 3 && len(f) != 5 {
			return nil, fmt.Errorf("docker ps: unexpected line %q", strings.Join(f, "\t"))
		}
		e := psEntry{Name: f[0], State: f[1], Service: f[2]}
		if len(f) == 5 {
			e.Image, e.Health = f[3], healthOf(f[4])
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// tabRows splits the output of a docker command asked for one
// tab-separated row per object into its rows' fields; blank lines are skipped.
func tabRows(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

// healthOf reads the health from docker ps's status text, as in
// "Up 3 minutes (healthy)" or "Up 2 seconds (health: starting)".
func healthOf(status string) string {
	switch {
	case strings.HasSuffix(status, "(healthy)"):
		return "healthy"
	case strings.HasSuffix(status, "(unhealthy)"):
		return "unhealthy"
	case strings.HasSuffix(status, "(health: starting)"):
		return "starting"
	}
	return ""
}

// projectService is what pgod reads of a rendered service to judge drift.
type projectService struct {
	Restart  string   `json:"restart"`
	Profiles []string `json:"profiles"`
	Deploy   *struct {
		Replicas *int `json:"replicas"`
	} `json:"deploy"`
}

// projectServices decodes the services of a rendered project.
func projectServices(project []byte) (map[string]projectService, error) {
	var p struct {
		Services map[string]projectService `json:"services"`
	}
	err := json.Unmarshal(project, &p)
	return p.Services, err
}

// driftReport compares what runs with what should. desired counts the
// containers that should run; missing names what is gone or stopped although
// its restart policy says it should run.
type driftReport struct {
	running, desired int
	missing          []string
	// recreate names services left with a container under compose's
	// temporary name "<id>_<name>": a recreate was cut short (pgod killed
	// mid-deploy). "up" sees its config as current and would keep the
	// wrong name, which breaks routing by container name.
	recreate []string
}

// interruptedName matches compose's temporary name for a container it is replacing.
var interruptedName = regexp.MustCompile(`^[0-9a-f]{12}_`)

func drift(services map[string]projectService, ps []psEntry) driftReport {
	var r driftReport
	byService := map[string][]psEntry{}
	for _, e := range ps {
		byService[e.Service] = append(byService[e.Service], e)
		if e.State == "running" {
			r.running++
		}
	}
	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := services[name]
		if len(s.Profiles) > 0 {
			continue // not started by a plain "up"
		}
		want := 1
		if s.Deploy != nil && s.Deploy.Replicas != nil {
			want = *s.Deploy.Replicas
		}
		keepsRunning := s.Restart == "always" || s.Restart == "unless-stopped"
		if keepsRunning {
			r.desired += want
		}
		have := byService[name]
		for _, e := range have {
			if interruptedName.MatchString(e.Name) {
				r.recreate = append(r.recreate, name)
				r.missing = append(r.missing, fmt.Sprintf("%s: %s is left from an interrupted recreate", name, e.Name))
				break
			}
		}
		if len(have) < want {
			r.missing = append(r.missing, fmt.Sprintf("%s: %d of %d containers gone", name, want-len(have), want))
			continue
		}
		if !keepsRunning {
			continue
		}
		for _, e := range have {
			if e.State != "running" {
				r.missing = append(r.missing, fmt.Sprintf("%s: %s is %s", name, e.Name, e.State))
			}
		}
	}
	return r
}

// changedServices counts the services whose rendered definition differs
// between two projects or that were built again, for the log line of a deploy.
func changedServices(old, new []byte, built []string) int {
	var a, b struct {
		Services map[string]json.RawMessage `json:"services"`
	}
	json.Unmarshal(old, &a)
	json.Unmarshal(new, &b)
	n := 0
	for name, def := range b.Services {
		if !bytes.Equal(a.Services[name], def) || slices.Contains(built, name) {
			n++
		}
	}
	for name := range a.Services {
		if _, ok := b.Services[name]; !ok {
			n++
		}
	}
	return n
}
