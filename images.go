package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Image updates, for services that set update_images: every poll pulls the
// images of what runs and redeploys, health-gated, the services whose image
// moved under its tag. The image they ran is kept as <name>/rollback/<service>
// (inside the service's image namespace) and put back under the tag when the
// new one fails the gate; that image ID is then not tried again.
//
// A moved tag is noticed by comparing the image ID each container runs with
// the ID its tag names now, whoever moved it: a pull, or someone tagging a
// local image. Pull failures (an unreachable registry) are only logged, so an
// offline host keeps running what it has.

// pulledServices maps each service of project that runs a pulled (not built)
// image to that image's reference.
func pulledServices(project []byte) (map[string]string, error) {
	var p struct {
		Services map[string]struct {
			Image string          `json:"image"`
			Build json.RawMessage `json:"build"`
		} `json:"services"`
	}
	if err := json.Unmarshal(project, &p); err != nil {
		return nil, err
	}
	refs := map[string]string{}
	for name, s := range p.Services {
		if s.Image != "" && s.Build == nil {
			refs[name] = s.Image
		}
	}
	return refs, nil
}

// imagesPresent reports whether the engine has every image project pulls,
// so that "compose pull --policy missing" would have nothing to do and its
// process is not started. A service that asks compose to pull on its own
// schedule (pull_policy always, daily, ...) is left to compose.
func (w *worker) imagesPresent(ctx context.Context, project []byte) bool {
	if w.d.engine == nil {
		return false
	}
	var p struct {
		Services map[string]struct {
			PullPolicy string `json:"pull_policy"`
		} `json:"services"`
	}
	if json.Unmarshal(project, &p) != nil {
		return false
	}
	for _, s := range p.Services {
		if s.PullPolicy != "" && s.PullPolicy != "missing" && s.PullPolicy != "if_not_present" && s.PullPolicy != "never" && s.PullPolicy != "build" {
			return false
		}
	}
	refs, err := pulledServices(project)
	if err != nil {
		return false
	}
	for _, ref := range refs {
		if ok, err := w.d.engine.hasImage(ctx, ref); !ok || err != nil {
			return false
		}
	}
	return true
}

// dockerOut runs docker as the service's user and returns its trimmed output.
func (w *worker) dockerOut(ctx context.Context, args ...string) (string, error) {
	cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, args...)
	var stdout bytes.Buffer
	stderr := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %s", args[0], lastLines(strings.TrimSpace(stderr.String()), 2))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// imageMove is a service whose tag names another image than it runs.
type imageMove struct {
	service, ref string
	from, to     string // image IDs: running, and named by the tag now
}

// movedImages pulls the images of project and lists the services whose tag moved.
func (w *worker) movedImages(ctx context.Context, out io.Writer, project []byte) ([]imageMove, error) {
	refs, err := pulledServices(project)
	if err != nil || len(refs) == 0 {
		return nil, err
	}
	if err := w.login(ctx); err != nil {
		w.log.Warn("image update: " + redact(err.Error(), w.secrets))
	}
	if err := w.runCompose(ctx, project, out, "pull", "--quiet", "--ignore-pull-failures", "--ignore-buildable"); err != nil {
		w.log.Warn("image update: " + redact(err.Error(), w.secrets))
	}
	st, _, _ := w.snapshot()
	ps, err := w.containers(ctx)
	if err != nil {
		return nil, err
	}
	var moves []imageMove
	for _, name := range slices.Sorted(maps.Keys(refs)) {
		i := slices.IndexFunc(ps, func(e psEntry) bool { return e.Service == name })
		if i < 0 {
			continue // gone: repair brings it back
		}
		from, err := w.dockerOut(ctx, "inspect", "--type", "container", "--format", "{{.Image}}", "--", ps[i].Name)
		if err != nil {
			return nil, err
		}
		to, err := w.dockerOut(ctx, "image", "inspect", "--format", "{{.Id}}", "--", refs[name])
		if err != nil || to == from || to == st.BadImages[name] {
			continue
		}
		moves = append(moves, imageMove{service: name, ref: refs[name], from: from, to: to})
	}
	return moves, nil
}

// rollbackTag is where the image a service ran before an update is kept.
func (w *worker) rollbackTag(service string) string {
	return w.svc.Name + "/rollback/" + strings.ToLower(service)
}

// updateImages redeploys the services whose image moved, health-gated, and
// puts the old images back when the new ones fail.
func (w *worker) updateImages(ctx context.Context, out io.Writer) error {
	st, deployed, _ := w.snapshot()
	moves, err := w.movedImages(ctx, out, deployed)
	if err != nil || len(moves) == 0 {
		return err
	}
	var names []string
	for _, m := range moves {
		if _, err := w.dockerOut(ctx, "tag", m.from, w.rollbackTag(m.service)); err != nil {
			return err // without the old image kept there is no way back: do not update
		}
		names = append(names, m.service)
	}
	w.cause = "image update"
	w.say(out, "image update: new images for %s", strings.Join(names, ", "))
	up := append([]string{"up", "-d", "--no-deps", "--"}, names...)
	if err := w.lastCheck(ctx, deployed); err != nil {
		return w.failSync(out, err)
	}
	err = w.runCompose(ctx, deployed, out, up...)
	var bad *deployError
	var logs []string
	if err != nil {
		bad = deployFailure(resultFailed, "%s", redact(err.Error(), w.secrets))
	} else {
		bad, logs = w.awaitHealthy(ctx, deployed)
	}
	if bad == nil {
		w.update(func(s *savedState) { s.DeployedAt = time.Now() })
		w.attempted(st.Deployed, nil, nil)
		w.say(out, "image update: %s run their new images", strings.Join(names, ", "))
		return nil
	}
	return w.revertImages(ctx, out, st.Deployed, deployed, moves, bad, logs)
}

// revertImages puts the images that ran before an update back under their
// tags and runs them again, health-gated.
func (w *worker) revertImages(ctx context.Context, out io.Writer, commit string, project []byte, moves []imageMove, cause *deployError, logs []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commandTimeout+w.healthTimeout(project))
	defer cancel()
	w.sayLogs(out, logs)
	msg := cause.msg
	var names []string
	for _, m := range moves {
		names = append(names, m.service)
		if _, err := w.dockerOut(ctx, "tag", w.rollbackTag(m.service), m.ref); err != nil {
			msg += "; cannot put back the old image: " + err.Error()
		}
	}
	w.update(func(s *savedState) {
		if s.BadImages == nil {
			s.BadImages = map[string]string{}
		}
		for _, m := range moves {
			s.BadImages[m.service] = m.to
		}
	})
	outcome := &deployError{result: cause.result, msg: fmt.Sprintf("image update of %s failed: %s", strings.Join(names, ", "), msg)}
	err := w.runCompose(ctx, project, out, append([]string{"up", "-d", "--no-deps", "--"}, names...)...)
	if err == nil {
		if bad, _ := w.awaitHealthy(ctx, project); bad != nil {
			err = bad
		}
	}
	if err != nil {
		outcome.msg += "; the old images do not run either: " + redact(err.Error(), w.secrets)
	} else {
		outcome.msg = fmt.Sprintf("image update of %s failed, rolled back to the old images: %s", strings.Join(names, ", "), msg)
		if outcome.result == resultFailed {
			outcome.result = resultRolledBack
		}
	}
	w.attempted(commit, outcome, logs)
	w.tell(eventUnhealthy, commit, outcome.msg)
	w.say(out, "%s", outcome.msg)
	return outcome
}
