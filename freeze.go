package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// A frozen service does not follow its branch: what runs stays, and is
// kept running, while polls and webhooks still fetch the head and judge it
// without moving the checkout, so that status says what waits. freeze and
// unfreeze set and clear the mark; rollback deploys a commit that deployed
// before and freezes the service there.

// syncFrozen is sync for a frozen service: judge the head when it is new
// (or a client asks), then keep what runs running.
func (w *worker) syncFrozen(ctx context.Context, out io.Writer, upstream string, force bool) error {
	st, _, _ := w.snapshot()
	if upstream != st.Waiting.Commit || force {
		verdict, err := w.judgeHead(ctx, upstream)
		if err != nil {
			return w.failSync(out, err)
		}
		w.update(func(s *savedState) { s.Waiting = waiting{Commit: upstream, Verdict: verdict} })
		w.debugOrSay(out, false, "frozen: upstream head %s %s; it deploys after unfreeze", short(upstream), verdict)
	}
	if w.stopped() {
		return w.keepDown(ctx, out)
	}
	if err := w.repair(ctx, out); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	st, _, _ = w.snapshot()
	f := st.Frozen
	return deployFailure(resultFrozen, "frozen by %s since %s (%s): %s keeps running and nothing deploys; unfreeze to follow %s again",
		f.By, f.At.UTC().Format(time.RFC3339), orDash(f.Reason), short(st.Deployed), w.svc.Branch)
}

// judgeHead renders commit in the staging worktree and says what the policy
// (and signed_commits) make of it, without moving the checkout or pulling.
func (w *worker) judgeHead(ctx context.Context, commit string) (string, error) {
	_, verdict, err := w.renderStaged(ctx, commit)
	return verdict, err
}

// renderStaged fetches and renders commit in the staging worktree and
// returns the project with its paths pointing into the checkout, as it would
// run from there, and the verdict: "passes the policy" or why not. err is
// for what kept it from being judged.
func (w *worker) renderStaged(ctx context.Context, commit string) ([]byte, string, error) {
	if head, _ := w.repo.head(ctx); head != commit {
		if err := w.repo.fetch(ctx); err != nil {
			return nil, "", err
		}
	}
	if err := w.verifySignature(ctx, commit); err != nil {
		var bad *unsignedError
		if errors.As(err, &bad) {
			return nil, "is refused: " + bad.reason, nil
		}
		return nil, "", err
	}
	stage := filepath.Join(w.checkout, ".git", "pgo-stage")
	if err := w.repo.stage(ctx, stage, commit); err != nil {
		return nil, "", err
	}
	defer w.repo.unstage(ctx, stage)
	env, reason, err := w.openSecrets(ctx, commit, stage)
	if err != nil {
		return nil, "", err
	}
	if reason != "" {
		return nil, "is rejected: " + reason, nil
	}
	project, violations, err := renderProject(ctx, w.renderRequestWith(stage, env))
	if err != nil {
		return nil, "cannot be rendered: " + redact(err.Error(), w.secrets), nil
	}
	// The staging copy stands in for the checkout: name the checkout's paths.
	project, _ = relocate(project, stage, w.checkout)
	if len(violations) > 0 && !w.acct.root() {
		return project, fmt.Sprintf("is rejected: %d policy violations (%s)", len(violations), redact(violations[0].String(), w.secrets)), nil
	}
	return project, "passes the policy", nil
}

// freeze marks the service frozen at what runs now.
func (w *worker) freeze(ctx context.Context, stdout io.Writer, reason string) error {
	w.begin(ctx, "freeze")
	st, _, _ := w.snapshot()
	w.freezeAt(st.Deployed, reason)
	w.say(stdout, "frozen at %s by %s: %s; polls and webhooks judge the head but deploy nothing until unfreeze",
		orDash(short(st.Deployed)), w.by, orDash(reason))
	return nil
}

// freezeAt marks the service frozen at commit by the op's caller, and says so to whoever pgo.toml names.
func (w *worker) freezeAt(commit, reason string) {
	mark := &freezeMark{By: w.by.String(), At: time.Now(), Reason: reason, Commit: commit}
	w.update(func(s *savedState) { s.Frozen, s.Waiting = mark, waiting{} })
	w.tell(eventFrozen, commit, fmt.Sprintf("frozen by %s: %s", mark.By, orDash(reason)))
}

// unfreeze clears the mark and has the worker sync at once.
func (w *worker) unfreeze(ctx context.Context, stdout io.Writer) error {
	w.begin(ctx, "unfreeze")
	st, _, _ := w.snapshot()
	if st.Frozen == nil {
		w.say(stdout, "not frozen: the service follows %s", w.svc.Branch)
		return nil
	}
	w.update(func(s *savedState) { s.Frozen, s.Waiting = nil, waiting{} })
	w.say(stdout, "unfrozen by %s: following %s again; the head deploys on the sync that starts now", w.by, w.svc.Branch)
	w.tell(eventUnfrozen, st.Deployed, "unfrozen by "+w.by.String())
	w.trigger.fireFor("unfreeze")
	return nil
}

// rollback deploys the commit that deployed before under prefix, judged by
// today's policy and health-gated as any deploy, and freezes the service
// there. Its signature is not checked again: it was when it first deployed,
// and signers may have rotated since.
func (w *worker) rollback(ctx context.Context, stdout io.Writer, prefix string) error {
	w.begin(ctx, "rollback")
	entry, err := w.hist.deployedBefore(prefix)
	if err != nil {
		return notFound("%v", err)
	}
	commit := entry.Commit
	if !w.repo.cloned() {
		return errNotDeployed
	}
	if err := w.repo.hasCommit(ctx, commit); err != nil {
		return notFound("commit %s is no longer in the clone (was the branch force-pushed?): %v", short(commit), err)
	}
	subject := []historyEntry{entry}
	w.fillSubjects(subject)
	w.say(stdout, "rolling back to %s (%s)", short(commit), orDash(subject[0].Subject))
	if err := w.accept(ctx, stdout, commit, false); err != nil {
		var outcome *deployError
		if errors.As(err, &outcome) {
			if rerr := w.repair(ctx, stdout); rerr != nil {
				w.log.Warn("repair after " + outcome.result + ": " + rerr.Error())
			}
		}
		return err
	}
	if err := w.converge(ctx, stdout, true); err != nil {
		return err
	}
	if st, _, _ := w.snapshot(); st.Deployed != commit {
		return deployFailure(resultFailed, "rollback to %s did not deploy it", short(commit))
	}
	w.freezeAt(commit, "rolled back to "+short(commit))
	w.say(stdout, "frozen at %s: unfreeze to follow %s again", short(commit), w.svc.Branch)
	return nil
}

// diff prints what deploying the upstream head would change against what
// runs now, and the verdict on the head; nothing is deployed.
func (w *worker) diff(ctx context.Context, stdout io.Writer) error {
	if !w.repo.cloned() {
		return errNotDeployed
	}
	upstream, err := w.repo.upstream(ctx)
	if err != nil {
		return err
	}
	w.touch(upstream)
	next, verdict, err := w.renderStaged(ctx, upstream)
	if err != nil {
		return err
	}
	_, deployed, _ := w.snapshot()
	fmt.Fprintf(stdout, "upstream head %s %s\n", short(upstream), verdict)
	if next == nil {
		return nil
	}
	d, err := diffProjects(deployed, next)
	if err != nil {
		return err
	}
	// Values shown (a command, an image) may hold a secret interpolated.
	_, err = io.WriteString(stdout, redact(d.String(), w.secrets))
	return err
}

// history prints the last n deploy attempts, newest first.
func (w *worker) history(n int, stdout io.Writer) error {
	entries, err := w.hist.newest(n)
	if err != nil {
		return err
	}
	w.fillSubjects(entries)
	_, err = io.WriteString(stdout, formatHistory(entries))
	return err
}
