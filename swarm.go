package main

// The Swarm engine of a service with swarm = true: pgod, on a manager of
// the swarm, deploys the checked project as a stack (policy_swarm.go writes
// the stack file), waits for the stack's services to converge on the new
// spec, and hands a failure to failDeploy as a failed compose up would be.
// Swarm restarts and reschedules tasks itself; pgod only puts back a stack
// whose services were removed by hand.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// swarmEngine is the engine's API for swarm reads; pgod has none with
// --docker-socket "".
func (w *worker) swarmEngine() (*engineAPI, error) {
	if w.d.engine == nil {
		return nil, errors.New("swarm = true needs the engine's API: run pgod with --docker-socket set to the engine's socket")
	}
	return w.d.engine, nil
}

// swarmManager checks that this engine manages a swarm: docker stack
// deploy runs only on a manager.
func (w *worker) swarmManager(ctx context.Context) error {
	api, err := w.swarmEngine()
	if err != nil {
		return err
	}
	info, err := api.swarmInfo(ctx)
	if err != nil {
		return err
	}
	switch {
	case info.ControlAvailable:
		return nil
	case info.LocalNodeState == "inactive" || info.LocalNodeState == "":
		return errors.New("this engine is not in a swarm: run docker swarm init on this host, or join it to the swarm as a manager")
	case info.LocalNodeState == "active":
		return errors.New("this engine is a swarm worker: docker stack deploy needs a manager; promote the node (docker node promote) or run pgod on a manager")
	}
	msg := "this engine's swarm is " + info.LocalNodeState
	if info.Error != "" {
		msg += ": " + info.Error
	}
	return errors.New(msg + "; docker stack deploy needs a manager")
}

// stackDeploy deploys project as the service's stack, as the service's
// user, the stack file on stdin. --prune removes the services the project
// no longer has (old secrets and configs are pruneStackObjects').
func (w *worker) stackDeploy(ctx context.Context, project []byte, out io.Writer) error {
	if err := w.swarmManager(ctx); err != nil {
		return fmt.Errorf("stack deploy: %w", err)
	}
	stack, err := stackFile(project, w.svc.Name, w.svc.Placement)
	if err != nil {
		return fmt.Errorf("stack deploy: %w", err)
	}
	resolve := w.resolveImage(ctx, project)
	text, err := w.runStack(ctx, stack, out, "deploy", "--prune", "--with-registry-auth",
		"--resolve-image", resolve, "--detach=true", "-c", "-", w.svc.Name)
	if err != nil {
		return err
	}
	if strings.Contains(text, "Ignoring") {
		// The stack file holds only keys stack deploy applies: a docker
		// CLI that skips one of them now has changed what it supports.
		w.log.Warn("docker stack deploy ignored part of the stack file: " + redact(lastLines(text, 3), w.secrets))
	}
	return nil
}

// runStack runs "docker stack SUB args..." as the service's user, stdin
// (when not nil) on its standard input, its output to out (may be nil) and
// returned, the end of it in the error when it fails.
func (w *worker) runStack(ctx context.Context, stdin []byte, out io.Writer, sub string, args ...string) (string, error) {
	cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, append([]string{"stack", sub}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	output := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = output, output
	if out != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(output, out), io.MultiWriter(output, out)
	}
	w.log.Debug("run", "cmd", "docker stack "+sub+" "+strings.Join(args, " "))
	err := cmd.Run()
	w.d.metrics.command(w.svc.Name, "stack "+sub, err)
	text := strings.TrimSpace(output.String())
	if err != nil {
		return text, fmt.Errorf("stack %s: %s", sub, redact(lastLines(text, 3), w.secrets))
	}
	return text, nil
}

// resolveImage chooses docker stack deploy's --resolve-image. With
// "always" the CLI asks the registry for each image's digest and pins the
// tasks to it, so every node runs the same image. An image only this
// engine has (built or loaded here: no registry digest) cannot be
// resolved, and asking would fail the deploy; with one of those the
// stack is deployed by its tags as they are, "never".
func (w *worker) resolveImage(ctx context.Context, project []byte) string {
	refs, err := pulledServices(project)
	if err != nil || w.d.engine == nil {
		return "always"
	}
	for _, ref := range refs {
		if !objectName.MatchString(ref) || strings.Contains(ref, "..") {
			continue
		}
		var img struct {
			RepoDigests []string `json:"RepoDigests"`
		}
		if err := w.d.engine.get(ctx, "/images/"+ref+"/json", nil, &img); err == nil && len(img.RepoDigests) == 0 {
			return "never"
		}
	}
	return "always"
}

// stackRemove removes the service's stack and waits, up to timeout, until
// its services and networks are gone: a deploy right after would find a
// network that is on its way out, and fail.
func (w *worker) stackRemove(ctx context.Context, out io.Writer, timeout time.Duration) error {
	if _, err := w.runStack(ctx, nil, out, "rm", w.svc.Name); err != nil {
		return err
	}
	api, err := w.swarmEngine()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		svcs, err := api.stackServices(ctx, w.svc.Name)
		nets := 0
		if err == nil {
			nets, err = api.stackNetworks(ctx, w.svc.Name)
		}
		if err == nil && len(svcs) == 0 && nets == 0 {
			w.record(nil, nil)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stack rm: %d services and %d networks of stack %s are still there after %s", len(svcs), nets, w.svc.Name, timeout)
		}
		if err := pauseCtx(ctx, healthPoll); err != nil {
			return err
		}
	}
}

// stackTasks reads the stack's services, by name, and their tasks.
func (w *worker) stackTasks(ctx context.Context) (map[string]apiService, []apiTask, error) {
	api, err := w.swarmEngine()
	if err != nil {
		return nil, nil, err
	}
	svcs, err := api.stackServices(ctx, w.svc.Name)
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]apiService{}
	var ids []string
	for _, s := range svcs {
		byName[s.Spec.Name] = s
		ids = append(ids, s.ID)
	}
	tasks, err := api.serviceTasks(ctx, ids)
	return byName, tasks, err
}

// swarmVerdict is one look at a stack converging.
type swarmVerdict struct {
	failed   string // why the deploy failed for good, "" if it has not
	culprit  string // the task that failed it, for its logs
	waiting  []string
	pending  string // the first task not ready yet, for its logs
	settling bool   // a task runs since less than readySettle
	entries  []psEntry
	running  int
	desired  int
}

func (v swarmVerdict) ready() bool { return v.failed == "" && len(v.waiting) == 0 }

// sameTaskSpec reports whether a task runs a service's current spec. The
// engine leaves out of a task's copy what it fills into the service's
// (Runtime), so only the keys of the task's spec are compared.
func sameTaskSpec(template, task json.RawMessage) bool {
	var a, b map[string]any
	if json.Unmarshal(template, &a) != nil || json.Unmarshal(task, &b) != nil {
		return false
	}
	for k, v := range b {
		if !reflect.DeepEqual(a[k], v) {
			return false
		}
	}
	return true
}

// failedStates are the task states after which a task does not run again.
var failedStates = map[string]bool{"failed": true, "rejected": true, "orphaned": true}

// judgeStack looks once at the services (by their compose names) of stack:
// each must run its replicas of its current spec (healthy, when it has a
// healthcheck: Swarm calls a task running only then) and nothing of an
// older spec; a task of the current spec that failed or was rejected since
// since fails the deploy, as does an update Swarm paused or rolled back.
func judgeStack(stack string, names []string, svcs map[string]apiService, tasks []apiTask, since, now time.Time) swarmVerdict {
	var v swarmVerdict
	byService := map[string][]apiTask{}
	for _, t := range tasks {
		byService[t.ServiceID] = append(byService[t.ServiceID], t)
	}
	for _, name := range names {
		full := stack + "_" + name
		s, ok := svcs[full]
		if !ok {
			v.waiting = append(v.waiting, full+" is not there")
			continue
		}
		current, old := 0, 0
		for _, t := range byService[s.ID] {
			task := fmt.Sprintf("%s.%d", full, t.Slot)
			if t.Slot == 0 {
				task = full + "." + t.NodeID // a global service's task
			}
			same := sameTaskSpec(s.Spec.TaskTemplate, t.Spec)
			if t.DesiredState == "running" {
				v.entries = append(v.entries, psEntry{Name: task, Service: name, State: t.Status.State, Image: imageOfTask(t.Spec)})
				if t.Status.State == "running" {
					v.running++
				}
			}
			switch {
			case same && failedStates[t.Status.State] && !t.Status.Timestamp.Before(since):
				if v.failed == "" {
					v.failed, v.culprit = fmt.Sprintf("task %s %s: %s", task, t.Status.State, taskError(t)), t.ID
				}
			case t.DesiredState != "running":
			case !same:
				old++
			case t.Status.State == "running":
				current++
				v.settling = v.settling || now.Sub(t.Status.Timestamp) < readySettle
			default:
				v.waitFor(t.ID, task+" is "+t.Status.State)
			}
		}
		// A failed task says more than the paused update it caused.
		if u := s.UpdateStatus; v.failed == "" && u != nil && !u.StartedAt.Before(since) && (u.State == "paused" || strings.HasPrefix(u.State, "rollback")) {
			v.failed = fmt.Sprintf("the update of %s is %s: %s", full, u.State, u.Message)
		}
		want := current
		if r := s.Spec.Mode.Replicated; r != nil {
			want = 1
			if r.Replicas != nil {
				want = *r.Replicas
			}
		}
		v.desired += want
		if current < want {
			v.waiting = append(v.waiting, fmt.Sprintf("%s: %d of %d tasks running", full, current, want))
		}
		if old > 0 {
			v.waiting = append(v.waiting, fmt.Sprintf("%s: %d tasks of the previous spec still run", full, old))
		}
	}
	return v
}

func (v *swarmVerdict) waitFor(task, why string) {
	v.waiting = append(v.waiting, why)
	if v.pending == "" {
		v.pending = task
	}
}

// taskError is what the engine says of a failed task.
func taskError(t apiTask) string {
	msg := t.Status.Err
	if msg == "" {
		msg = t.Status.Message
	}
	if c := t.Status.ContainerStatus; c != nil && c.ExitCode != 0 {
		msg += fmt.Sprintf(" (exit status %d)", c.ExitCode)
	}
	return msg
}

// imageOfTask is the image a task runs, without the digest a deploy with
// --resolve-image always pinned.
func imageOfTask(spec json.RawMessage) string {
	var s struct {
		ContainerSpec struct {
			Image string `json:"Image"`
		} `json:"ContainerSpec"`
	}
	json.Unmarshal(spec, &s)
	image, _, _ := strings.Cut(s.ContainerSpec.Image, "@sha256:")
	return image
}

// stackServiceNames are the compose services of project, each a service
// of the stack.
func stackServiceNames(project []byte) ([]string, error) {
	services, err := projectServices(project)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(services)), nil
}

// awaitStack is the health gate of a stack deployed at since: nil once
// every service runs its new spec, else a deployError (unhealthy for a
// failed task or update, timeout at the deadline) and the failed task's
// last log lines.
func (w *worker) awaitStack(ctx context.Context, project []byte, since time.Time) (*deployError, []string) {
	names, err := stackServiceNames(project)
	if err != nil {
		return deployFailure(resultFailed, "%v", err), nil
	}
	limit := w.healthTimeout(project)
	deadline := time.Now().Add(limit)
	var v swarmVerdict
	for {
		svcs, tasks, err := w.stackTasks(ctx)
		if err != nil {
			v = swarmVerdict{waiting: []string{err.Error()}}
		} else {
			v = judgeStack(w.svc.Name, names, svcs, tasks, since, time.Now())
			w.recordTasks(v)
			switch {
			case v.failed != "":
				return deployFailure(resultUnhealthy, "unhealthy: %s", v.failed), w.taskLogs(ctx, v.culprit)
			case v.ready() && !v.settling:
				w.pruneStackObjects(ctx, project)
				return nil, nil
			}
		}
		if time.Now().After(deadline) {
			break
		}
		if pauseCtx(ctx, healthPoll) != nil {
			return deployFailure(resultTimeout, "timeout while waiting for the tasks: %s", strings.Join(v.waiting, ", ")), nil
		}
	}
	if v.ready() {
		w.pruneStackObjects(ctx, project)
		return nil, nil
	}
	return deployFailure(resultTimeout, "timeout: not converged after %s: %s", limit, strings.Join(v.waiting, ", ")), w.taskLogs(ctx, v.pending)
}

// pruneStackObjects removes the stack's secrets and configs that project,
// which the stack now runs, does not name: those of earlier contents.
// docker stack deploy --prune removes services only.
func (w *worker) pruneStackObjects(ctx context.Context, project []byte) {
	p, err := decodeProject(project)
	if err != nil {
		return
	}
	for _, kind := range []string{"secrets", "configs"} {
		keep := map[string]bool{}
		for _, o := range jsonObject(p[kind]) {
			keep[jsonString(jsonObject(o)["name"])] = true
		}
		names, err := w.d.engine.stackObjects(ctx, kind, w.svc.Name)
		if err != nil {
			w.log.Warn("old " + kind + " of the stack: " + err.Error())
			continue
		}
		for _, n := range names {
			if keep[n] {
				continue
			}
			cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, strings.TrimSuffix(kind, "s"), "rm", n)
			if out, err := cmd.CombinedOutput(); err != nil {
				w.log.Warn(fmt.Sprintf("%s rm %s: %s", strings.TrimSuffix(kind, "s"), n, lastLines(strings.TrimSpace(string(out)), 2)))
			}
		}
	}
}

// recordTasks keeps the tasks a look found, for status and metrics.
func (w *worker) recordTasks(v swarmVerdict) {
	w.mu.Lock()
	w.running, w.desired, w.ctrs = v.running, v.desired, v.entries
	w.mu.Unlock()
}

// taskLogs returns the last log lines of a task, nil when there are none.
func (w *worker) taskLogs(ctx context.Context, task string) []string {
	if task == "" {
		return nil
	}
	return w.logTail(ctx, "service", "logs", "--no-task-ids", "--tail", strconv.Itoa(logLines), task)
}

// repairStack deploys the stack again when services of it were removed
// outside pgo; anything else Swarm puts back itself.
func (w *worker) repairStack(ctx context.Context, out io.Writer, project []byte) error {
	names, err := stackServiceNames(project)
	if err != nil {
		return err
	}
	svcs, tasks, err := w.stackTasks(ctx)
	if err != nil {
		return w.failSync(out, err)
	}
	var missing []string
	for _, name := range names {
		if _, ok := svcs[w.svc.Name+"_"+name]; !ok {
			missing = append(missing, w.svc.Name+"_"+name)
		}
	}
	if len(missing) > 0 {
		w.say(out, "drift: %s removed; deploying the stack again", strings.Join(missing, ", "))
		if err := w.lastCheck(ctx, project); err != nil {
			return w.failSync(out, err)
		}
		if err := w.acquireSlot(ctx); err != nil {
			return err
		}
		err := w.stackDeploy(ctx, project, out)
		w.releaseSlot()
		if err != nil {
			return w.failSync(out, err)
		}
		svcs, tasks, _ = w.stackTasks(ctx)
	}
	w.recordTasks(judgeStack(w.svc.Name, names, svcs, tasks, time.Now(), time.Now()))
	return nil
}

// keepStackDown removes the stack of a stopped service if it is there.
func (w *worker) keepStackDown(ctx context.Context, out io.Writer) error {
	api, err := w.swarmEngine()
	if err != nil {
		return err
	}
	svcs, err := api.stackServices(ctx, w.svc.Name)
	if err != nil || len(svcs) == 0 {
		w.record(nil, nil)
		return err
	}
	w.say(out, "stop marker %s is set; removing the stack", w.stopFile)
	return w.stackRemove(ctx, out, commandTimeout)
}

// removeStack removes the stack of a service that left the config, as
// root, when the engine manages a swarm that has it. A stack is the
// swarm's, not this host's: when cfg runs the service on other hosts, the
// stack is theirs now, and stays.
func (d *Daemon) removeStack(ctx context.Context, cfg *Config, name string) {
	if d.engine == nil {
		return
	}
	if i := slices.IndexFunc(cfg.Elsewhere, func(s *Service) bool { return s.Name == name }); i >= 0 && cfg.Elsewhere[i].Swarm {
		d.log.Info(fmt.Sprintf("[%s] its stack stays: it is the swarm's, and %s deploys it now", name, strings.Join(cfg.Elsewhere[i].Hosts, ", ")))
		return
	}
	if info, err := d.engine.swarmInfo(ctx); err != nil || !info.ControlAvailable {
		return
	}
	if svcs, err := d.engine.stackServices(ctx, name); err != nil || len(svcs) == 0 {
		return
	}
	var a *account
	cmd := a.command(ctx, a.baseEnv(), d.flags.docker, "stack", "rm", name)
	out := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		d.log.Error(fmt.Sprintf("[%s] stack rm: %v: %s", name, err, lastLines(strings.TrimSpace(out.String()), 3)))
		return
	}
	d.log.Info(fmt.Sprintf("[%s] removed its stack", name))
}
