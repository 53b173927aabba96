package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// This file makes a worker the serviceControl of control.go: what the SSH
// ops do to a service. The control plane wraps mutating ops in serialize.

func (w *worker) authorized(key ssh.PublicKey, remote net.Addr) *authorizedKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	return findKey(w.keys, key, remote, time.Now())
}

// up clears the stop marker and deploys the validated project, also when
// x-pgo reload is false or its last deploy failed: a person asked for it.
func (w *worker) up(ctx context.Context, stdout, stderr io.Writer) error {
	w.begin(ctx, "up")
	if err := os.Remove(w.stopFile); err == nil {
		w.say(stdout, "stop marker removed")
	}
	st, deployed, validated := w.snapshot()
	if validated == nil {
		return errNotDeployed
	}
	if st.Deployed != st.Validated || !bytes.Equal(deployed, validated) || !maps.Equal(st.DeployedBuilds, st.ValidatedBuilds) {
		return w.deploy(ctx, stdout)
	}
	if err := w.acquireSlot(ctx); err != nil {
		return err
	}
	since := time.Now()
	err := w.bringUp(ctx, deployed, stdout, "up", "-d")
	w.releaseSlot()
	if err != nil {
		return err
	}
	return w.healthySince(ctx, stdout, since)
}

// healthy waits, as a deploy does, for the running project's containers to
// be ready; a *deployError says why they are not.
func (w *worker) healthy(ctx context.Context, stdout io.Writer) error {
	return w.healthySince(ctx, stdout, time.Now())
}

// healthySince is healthy for what was brought up at since.
func (w *worker) healthySince(ctx context.Context, stdout io.Writer, since time.Time) error {
	project := w.currentProject()
	if project == nil {
		return errNotDeployed
	}
	bad, logs := w.awaitReady(ctx, project, since)
	if bad == nil {
		return nil
	}
	w.sayLogs(stdout, logs)
	return bad
}

// down sets the stop marker, so the service stays down across polls and
// restarts, and brings the project down.
func (w *worker) down(ctx context.Context, stdout, stderr io.Writer) error {
	if err := os.WriteFile(w.stopFile, []byte("set by pgoctl down\n"), 0o644); err != nil {
		return err
	}
	w.say(stdout, "stop marker set")
	project := w.currentProject()
	if project == nil {
		return nil
	}
	if w.svc.Swarm {
		return w.stackRemove(ctx, stdout, commandTimeout)
	}
	err := w.runCompose(ctx, project, stdout, "down", "--remove-orphans")
	// Status says at once what is left, not what ran before the down.
	if ps, perr := w.containers(ctx); perr == nil {
		w.record(ps, nil)
	}
	return err
}

// gitPull syncs now, retries a commit whose deploy failed and judges a
// rejected one again.
func (w *worker) gitPull(ctx context.Context, stdout, stderr io.Writer) error {
	w.begin(ctx, "git pull")
	return w.sync(ctx, stdout, true)
}

// check renders and validates the checkout as deployed and prints the
// verdict. When the upstream head is a rejected commit it is judged again
// too: one that passes now deploys on the next poll.
func (w *worker) check(ctx context.Context, stdout io.Writer) (bool, error) {
	if !w.repo.cloned() {
		return false, errNotDeployed
	}
	_, violations, err := renderProject(ctx, w.renderRequest(w.checkout))
	if err != nil {
		return false, err
	}
	for _, v := range violations {
		fmt.Fprintln(stdout, v.String())
	}
	if len(violations) == 0 {
		fmt.Fprintln(stdout, "ok: the checkout passes the policy")
	}
	if st, _, _ := w.snapshot(); st.Rejected == "" || st.Rejected != st.Upstream || st.Frozen != nil {
		// A frozen service's head is judged at every poll without moving the checkout.
		return len(violations) == 0, nil
	}
	err = w.serialize(ctx, func(ctx context.Context) error {
		st, _, _ := w.snapshot()
		if st.Rejected == "" || st.Rejected != st.Upstream {
			return nil // judged meanwhile
		}
		w.begin(ctx, "check")
		return w.accept(ctx, stdout, st.Rejected, true)
	})
	var outcome *deployError
	if errors.As(err, &outcome) {
		return false, nil // refuse has printed the violations
	}
	if err != nil {
		return false, err
	}
	if st, _, _ := w.snapshot(); st.Rejected == "" {
		fmt.Fprintf(stdout, "the upstream head passes the policy now; it deploys on the next poll\n")
		w.trigger.fireFor("check")
	}
	return len(violations) == 0, nil
}

func (w *worker) status() serviceStatus {
	config := ""
	if w.d != nil {
		config = w.d.runningConfig()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return serviceStatus{
		Config:     config,
		Name:       w.svc.Name,
		Branch:     w.svc.Branch,
		Deployed:   w.st.Deployed,
		DeployedAt: w.st.DeployedAt,
		Attempt:    w.st.Attempt,
		Containers: append([]psEntry(nil), w.ctrs...),
		Upstream:   w.st.Upstream,
		LastSync:   w.st.LastSync,
		LastDeploy: w.st.LastDeploy,
		LastResult: w.st.LastResult,
		LastError:  w.st.LastError,
		Rejection:  append([]string(nil), w.st.Rejection...),
		Rejected:   w.st.Rejected,
		Stopped:    w.stopped(),
		Running:    w.running,
		Desired:    w.desired,
		Swarm:      w.svc.Swarm,
		ReloadErr:  w.st.ReloadErr,
		Frozen:     w.st.Frozen,
		Waiting:    w.st.Waiting,
	}
}

func (w *worker) compose(ctx context.Context, args ...string) (*exec.Cmd, error) {
	project := w.currentProject()
	if project == nil {
		return nil, errNotDeployed
	}
	return w.composeCmd(ctx, project, args...)
}

func (w *worker) docker(ctx context.Context, args ...string) (*exec.Cmd, error) {
	return w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, args...), nil
}

// caddyLoop writes the snippets and reloads Caddy whenever asked, one update
// at a time: requests that arrive meanwhile coalesce into one more update.
func (d *Daemon) caddyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.caddy.C():
			d.updateCaddy(ctx)
		}
	}
}

// updateCaddy writes the Caddyfile snippet of every service with an import
// key and runs its reload command when the snippet changed.
func (d *Daemon) updateCaddy(ctx context.Context) {
	d.mu.Lock()
	cfg := d.cfg
	var targets []*worker
	for _, s := range cfg.Services {
		if s.Import != "" {
			targets = append(targets, d.workers[s.Name])
		}
	}
	d.mu.Unlock()
	for _, w := range targets {
		if !w.repo.cloned() {
			continue
		}
		path, err := snippetPath(w.checkout, w.svc.Import)
		if err != nil {
			w.log.Error("caddy import: " + err.Error())
			continue
		}
		changed, err := writeCaddySnippet(path, cfg.Services)
		if err != nil {
			w.log.Error("caddy import: " + err.Error())
			continue
		}
		// Never follow a link the user swapped in.
		if err := os.Lchown(path, int(w.acct.UID), int(w.acct.GID)); err != nil {
			w.log.Error("caddy import: " + err.Error())
		}
		if changed {
			w.log.Info("wrote " + path)
		}
		// A reload that failed (say, before the proxy's first deploy) is tried again.
		if st, _, _ := w.snapshot(); changed || st.ReloadErr != "" {
			d.runReload(ctx, w)
		}
	}
}

// runReload runs a service's reload command, "host:name//exec SERVICE CMD...",
// as "docker compose exec -T SERVICE CMD..." in the named service's project.
func (d *Daemon) runReload(ctx context.Context, owner *worker) {
	if owner.svc.Reload == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	err := d.execReload(ctx, owner.svc.Reload)
	msg := ""
	if err != nil {
		msg = err.Error()
		owner.log.Error(msg)
	} else {
		owner.log.Info("reloaded: " + owner.svc.Reload)
	}
	owner.update(func(s *savedState) { s.ReloadErr = msg })
}

func (d *Daemon) execReload(ctx context.Context, reload string) error {
	_, name, args, err := parseReload(reload)
	if err != nil {
		return err
	}
	w := d.worker(name)
	if w == nil {
		return fmt.Errorf("reload: no service %q", name)
	}
	cmd, err := w.compose(ctx, append([]string{"exec", "-T"}, args...)...)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	out := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", commandTimeout)
		}
		return fmt.Errorf("reload: %v: %s", err, lastLines(strings.TrimSpace(out.String()), 3))
	}
	return nil
}
