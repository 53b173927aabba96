package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// worker tracks one service: it polls the branch, judges new commits, deploys
// accepted ones and keeps them running. Every operation that changes the
// service runs under its lock, so deploys and SSH ops never interleave; the
// lock belongs to the service's name, not to the worker, so that the worker
// a config reload starts waits for what the old one still runs.
type worker struct {
	d       *Daemon
	svc     *Service
	acct    *account
	log     *slog.Logger
	repo    *repo
	secrets []string

	checkout string     // <dir>/<name>
	data     string     // <datadir>/<name>
	stopFile string     // <dir>/<name>.stop
	state    statePaths // <dir>/.pgo/<name>
	pins     *pinner    // <dir>/.pgo/pins/<name>

	lock    *serviceLock // held by the one operation running on the service
	trigger *trigger     // a webhook asks for a sync; bursts coalesce into one
	removed *trigger     // the engine removed a container of the project: repair now
	cancel  context.CancelFunc
	done    chan struct{}

	prepared  atomic.Bool   // the last sync got past clone and mount
	dirsMade  bool          // makeDirs succeeded; only the lock's holder reads or writes it
	firstSync chan struct{} // closed once the first sync has ended
	startErr  string        // why the first sync could not prepare; set before firstSync closes

	saveMu    sync.Mutex // orders state saves: the last one written is the newest
	mu        sync.Mutex // guards the fields below
	st        savedState
	deployed  []byte // project running, canonical JSON
	validated []byte // project of the checkout, canonical JSON
	keys      []*authorizedKey
	running   int
	desired   int
	ctrs      []psEntry // the project's containers at the last look
	// sealed holds the decrypted secrets.env.age of recent commits (secrets.go).
	sealed []committedSecrets

	// cause names what started the operation holding the lock ("poll",
	// "git pull", ...) and by who the SSH op's caller, for the attempts it
	// records. Only the lock's holder reads or writes them.
	cause string
	by    caller

	hist history // <dir>/.pgo/<name>/history.jsonl
}

// errNotDeployed is returned by ops that need a deployed project before the first deploy.
var errNotDeployed = errors.New("not deployed yet")

func newWorker(d *Daemon, svc *Service, acct *account, lock *serviceLock) *worker {
	w := &worker{
		d:        d,
		svc:      svc,
		acct:     acct,
		log:      d.log.With("service", svc.Name),
		secrets:  svc.secrets(),
		checkout: filepath.Join(d.flags.dir, svc.Name),
		data:     filepath.Join(d.flags.datadir, svc.Name),
		stopFile: filepath.Join(d.flags.dir, svc.Name+".stop"),
		state:    statePaths{filepath.Join(d.flags.dir, ".pgo", svc.Name)},
		pins: &pinner{dir: filepath.Join(pinsDir(d.flags.dir), svc.Name),
			roots: []string{filepath.Join(d.flags.dir, svc.Name), filepath.Join(d.flags.datadir, svc.Name)}},
		lock:      lock,
		trigger:   newTrigger(),
		removed:   newTrigger(),
		done:      make(chan struct{}),
		firstSync: make(chan struct{}),
	}
	w.hist = history{path: w.state.history(), max: maxHistory}
	w.repo = &repo{dir: w.checkout, url: svc.Repository, branch: svc.Branch, acct: acct, secrets: w.secrets, log: w.log,
		observe: func(cmd string, err error) { d.metrics.command(svc.Name, cmd, err) }}
	return w
}

// restore loads what an earlier run left: state, projects and keys.
func (w *worker) restore() error {
	if err := os.MkdirAll(w.state.dir, 0o700); err != nil {
		return err
	}
	st, err := loadState(w.state)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	deployed, err := readOptional(w.state.deployed())
	if err != nil {
		return err
	}
	validated, err := readOptional(w.state.validated())
	if err != nil {
		return err
	}
	if _, err := decodeProject(validated); validated != nil && err != nil {
		validated = nil // cut short by a power loss (it is not synced): judged again
	}
	w.mu.Lock()
	w.st, w.deployed, w.validated = st, deployed, validated
	w.mu.Unlock()
	// Keys count only when the checkout holds the validated commit; a crash
	// between checkout and validation must not trust an unjudged commit's keys.
	if w.repo.cloned() && st.Validated != "" {
		if head, err := w.repo.head(context.Background()); err == nil && head == st.Validated {
			w.loadKeys()
			w.restoreSecrets(head)
		}
	}
	return nil
}

// run is the poll loop; it returns when ctx is done.
func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	backoff := time.Second
	// After the first sync every service waits a random part of the
	// interval, so that services started together do not poll together.
	first := true
	cause := "poll"
	for {
		err := w.lock.hold(ctx, cause, func() error {
			sctx, cancel := context.WithTimeout(ctx, syncTimeout)
			defer cancel()
			w.begin(sctx, cause)
			return w.sync(sctx, nil, false)
		})
		if ctx.Err() != nil {
			return
		}
		next := jitter(w.d.flags.duration)
		if first {
			if !w.prepared.Load() {
				st, _, _ := w.snapshot()
				w.startErr = st.LastError
			}
			close(w.firstSync)
			next, first = time.Duration(rand.Int64N(int64(w.d.flags.duration))), false
		}
		if err != nil && !w.prepared.Load() {
			// The first clone and the NFS mount are retried quickly and then
			// less often, never given up; nothing deploys meanwhile.
			next = min(backoff, next)
			backoff = min(2*backoff, w.d.flags.duration)
		} else {
			backoff = time.Second
		}
		// A sync has an hour at most (see syncTimeout); a silent worker beyond that is stuck.
		w.d.health.beat("worker/"+w.svc.Name, 2*w.d.flags.duration+syncTimeout)
		cause = w.wait(ctx, next)
		if ctx.Err() != nil {
			return
		}
	}
}

// wait waits next for the next poll, or less when something asks for a sync,
// and returns its cause. A removed container is repaired meanwhile.
func (w *worker) wait(ctx context.Context, next time.Duration) string {
	timer := time.NewTimer(next)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-w.trigger.C():
			return w.trigger.cause()
		case <-timer.C:
			return "poll"
		case <-w.removed.C():
			w.repairRemoved(ctx)
		}
	}
}

// repairRemoved brings back what was removed outside pgo, unless the
// service is down on purpose.
func (w *worker) repairRemoved(ctx context.Context) {
	w.lock.hold(ctx, "drift repair", func() error {
		if w.stopped() {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, syncTimeout)
		defer cancel()
		return w.repair(rctx, nil)
	})
}

// begin names the operation that now holds the lock, for the attempts it records.
func (w *worker) begin(ctx context.Context, cause string) {
	w.cause, w.by = cause, callerOf(ctx)
}

// syncTimeout bounds one poll's or op's work, pulls of large images
// included, so a hung git or compose cannot hold a service forever.
const syncTimeout = time.Hour

// commandTimeout bounds a command that should answer quickly: compose's
// version, a Caddy reload, the down of a removed service.
const commandTimeout = 2 * time.Minute

// jitter spreads polls of many services over ±10% of the interval.
func jitter(d time.Duration) time.Duration {
	spread := int64(d / 5)
	if spread <= 0 {
		return d
	}
	return d - d/10 + time.Duration(rand.Int64N(spread))
}

// serialize runs an SSH op's f holding the service's lock. It waits for the
// lock only briefly: a client (a CI deploy step) gets an answer saying what
// holds the service rather than hang behind a long pull or a stalled git.
// An op has the same deadline as a poll, however long its client stays.
func (w *worker) serialize(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	return w.lock.tryHold(ctx, "an SSH op", opLockWait, func() error { return timedOut(ctx, f(ctx)) })
}

// opLockWait is how long an SSH op waits for the service's lock.
const opLockWait = 10 * time.Second

// say reports progress to an SSH client (when out is set) and to the log.
func (w *worker) say(out io.Writer, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.log.Info(msg)
	if out != nil {
		fmt.Fprintln(out, msg)
	}
}

// warn is say for what went wrong: a rejection, a failed deploy. It logs at
// WARN, as clone and mount errors do, so that journalctl -p warning shows
// every failure of a service.
func (w *worker) warn(out io.Writer, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.log.Warn(msg)
	if out != nil {
		fmt.Fprintln(out, msg)
	}
}

// update changes the state under the lock and persists it. Saves are
// ordered, so an older snapshot is never written after a newer one.
func (w *worker) update(f func(*savedState)) {
	w.saveMu.Lock()
	defer w.saveMu.Unlock()
	w.mu.Lock()
	f(&w.st)
	st := w.st
	w.mu.Unlock()
	if err := saveState(w.state, st); err != nil {
		w.log.Error("cannot save state", "err", err)
	}
}

// remember changes the state in memory only, for a change the next update
// writes a moment later: every write is synced, and a cold start of
// hundreds of services pays for each.
func (w *worker) remember(f func(*savedState)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(&w.st)
}

// touch records a successful look upstream. It is not written to disk by
// itself: an idle poll of hundreds of services should not fsync each time.
func (w *worker) touch(upstream string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.Upstream, w.st.LastSync = upstream, time.Now()
}

// currentProject is the project that runs, or before the first deploy the
// validated one; nil when there is neither.
func (w *worker) currentProject() []byte {
	_, deployed, validated := w.snapshot()
	if deployed != nil {
		return deployed
	}
	return validated
}

func (w *worker) snapshot() (savedState, []byte, []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st, w.deployed, w.validated
}

// sync brings the service in line with its branch: clone, look upstream,
// judge a new commit, deploy it or keep what runs running. force retries a
// commit whose deploy failed before and judges a rejected one again. A
// commit that did not deploy ends it with a *deployError.
func (w *worker) sync(ctx context.Context, out io.Writer, force bool) error {
	w.prepared.Store(false)
	cloned, err := w.prepare(ctx)
	if err != nil {
		return w.failSync(out, err)
	}
	w.prepared.Store(true)
	var upstream string
	if cloned {
		// The clone has just fetched the branch: its head is the upstream's.
		upstream, err = w.repo.head(ctx)
	} else {
		upstream, err = w.repo.upstream(ctx)
	}
	if err != nil {
		return w.failSync(out, err)
	}
	w.touch(upstream)
	st, _, validated := w.snapshot()
	if st.Frozen != nil {
		return w.syncFrozen(ctx, out, upstream, force)
	}

	switch {
	case upstream == st.Rejected && !force && st.RejectedBy == w.rulesID():
		w.debugOrSay(out, false, "commit %s was rejected by the policy; waiting for a new one", short(upstream))
	case upstream == st.Failed && !force:
		w.debugOrSay(out, false, "commit %s failed to deploy before; waiting for a new one or a git pull", short(upstream))
	case upstream != st.Validated || validated == nil || upstream == st.Rejected:
		// A rejected commit is judged again on request and under changed
		// rules: the operator may have fixed what refused it in pgo.toml.
		if err := w.accept(ctx, out, upstream, true); err != nil {
			var outcome *deployError
			if errors.As(err, &outcome) {
				// What ran before runs on, and is kept running.
				if rerr := w.repair(ctx, out); rerr != nil {
					w.log.Warn("repair after " + outcome.result + ": " + rerr.Error())
				}
				return err
			}
			return w.failSync(out, err)
		}
	}
	return w.converge(ctx, out, force)
}

// rulesID names the rules a commit is judged by: pgo's version and the
// service's config, and with signed_commits the deployed commit, whose
// ssh/ names the signers. A rejection under other rules is judged again.
func (w *worker) rulesID() string {
	c := *w.svc
	c.Line = 0
	data, _ := json.Marshal(&c)
	if c.SignedCommits {
		st, _, _ := w.snapshot()
		data = append(data, st.Deployed...)
	}
	sum := sha256.Sum256(append([]byte(version+"\n"), data...))
	return hex.EncodeToString(sum[:8])
}

// unsignedError is a commit that signed_commits refuses, and why.
type unsignedError struct{ reason string }

func (e *unsignedError) Error() string { return e.reason }

// verifySignature checks commit's signature when signed_commits is on: it
// must be made by a key under ssh/ of the deployed commit, read from git's
// objects, or before the first deploy by one of pgo.toml's signers. An
// *unsignedError says why not.
func (w *worker) verifySignature(ctx context.Context, commit string) error {
	if !w.svc.SignedCommits {
		return nil
	}
	st, _, _ := w.snapshot()
	var signers []*authorizedKey
	if st.Deployed == "" {
		signers = w.svc.signerKeys()
	} else {
		keys, problems, err := w.repo.signersAt(ctx, st.Deployed)
		if err != nil {
			return err
		}
		for _, p := range problems {
			w.log.Warn("signers of " + short(st.Deployed) + ": " + p)
		}
		signers = keys
	}
	if err := w.repo.verifyCommit(ctx, commit, signers); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &unsignedError{reason: redact(err.Error(), w.secrets)}
	}
	return nil
}

// debugOrSay tells the client, or only the debug log when nobody asked.
func (w *worker) debugOrSay(out io.Writer, loud bool, format string, args ...any) {
	if loud || out != nil {
		w.say(out, format, args...)
		return
	}
	w.log.Debug(fmt.Sprintf(format, args...))
}

func (w *worker) failSync(out io.Writer, err error) error {
	if errors.Is(err, context.Canceled) {
		return err // pgod is stopping or the client left; not the service's fault
	}
	msg := redact(err.Error(), w.secrets)
	w.update(func(s *savedState) { s.LastError = msg })
	w.log.Warn(msg)
	if out != nil {
		fmt.Fprintln(out, msg)
	}
	return err
}

// prepare makes the service's directories and mount, and the first clone;
// cloned reports that it cloned just now.
func (w *worker) prepare(ctx context.Context) (cloned bool, err error) {
	if w.svc.Mount != "" {
		// The share may have gone since the last poll: every poll mounts
		// it again, and gives the user the mount point before a first mount.
		w.dirsMade = false
	}
	if !w.dirsMade {
		if err := w.makeDirs(ctx); err != nil {
			return false, err
		}
		w.dirsMade = true
	}
	if w.repo.cloned() {
		return false, nil
	}
	// Clones take a slot too: a cold start of hundreds of services should
	// not run hundreds of clones at once.
	if err := w.acquireSlot(ctx); err != nil {
		return false, err
	}
	w.log.Info("cloning " + w.svc.RedactedRepository())
	err = w.repo.clone(ctx)
	w.releaseSlot()
	return err == nil, err
}

// makeDirs makes the data directory, the user's docker home and the NFS
// mount, and writes the git config the service's git reads. A worker does
// it at its first sync; a service with a mount at every sync.
func (w *worker) makeDirs(ctx context.Context) error {
	if err := w.ensureDirs(); err != nil {
		return err
	}
	if w.svc.Mount != "" {
		if err := ensureMount(ctx, w.d.flags.mountCmd, w.svc.Mount, w.data); err != nil {
			return err // names the share and the target
		}
	}
	if err := w.repo.writeConfig(filepath.Join(w.d.flags.dir, ".gitconfig", w.svc.Name)); err != nil {
		return fmt.Errorf("git config: %w", err)
	}
	return nil
}

// ensureDirs makes the data directory, owned by the service's user, and the
// user's home for docker's config when its own is unusable.
func (w *worker) ensureDirs() error {
	// Once something is mounted there (the service's NFS share), the data
	// directory is the share's root: chowning it would reach through the
	// mount, and under root_squash fail and block the service. The mount
	// point itself was given to the user before the first mount.
	mounted, err := mountedAt(w.data)
	if err != nil {
		return err
	}
	if !mounted {
		if err := w.ownDir(w.data, 0o750); err != nil {
			return err
		}
	}
	if err := w.ownDir(filepath.Join(w.acct.Home, ".docker"), 0o700); err != nil {
		return fmt.Errorf("home of %s: %w", w.acct.Name, err)
	}
	return nil
}

// ownDir makes dir if needed and gives it to the service's user. pgod is
// root here, so a symlink in dir's place (the user's home is the user's)
// is refused rather than followed.
func (w *worker) ownDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (a symlink?); refusing to chown it", dir)
	}
	return os.Lchown(dir, int(w.acct.UID), int(w.acct.GID))
}

// accept judges commit: render it in a staging worktree, and only when it
// passes check it out and judge it again with its paths in the live
// checkout, where it runs. Once something runs, a rejected commit
// leaves the checkout and what runs exactly as they were; before the first
// deploy the commit is judged in the checkout itself and stays there, its
// keys never loaded. verify asks for the signature check of signed_commits;
// a rollback, to a commit that deployed before, skips it.
func (w *worker) accept(ctx context.Context, out io.Writer, commit string, verify bool) error {
	head, _ := w.repo.head(ctx)
	if head != commit {
		if err := w.repo.fetch(ctx); err != nil {
			return err
		}
	}
	if verify {
		if err := w.verifySignature(ctx, commit); err != nil {
			var bad *unsignedError
			if errors.As(err, &bad) {
				return w.reject(out, commit, []string{bad.reason}, bad.reason)
			}
			return err
		}
	}
	_, deployed, _ := w.snapshot()
	stage := filepath.Join(w.checkout, ".git", "pgo-stage")
	if deployed == nil {
		// Nothing runs yet, so there is nothing a rejected commit could
		// disturb: judge it in the checkout itself and skip the staging copy.
		stage = w.checkout
		if head != commit {
			if err := w.repo.checkout(ctx, commit); err != nil {
				return err
			}
		}
	} else if err := w.repo.stage(ctx, stage, commit); err != nil {
		return err
	}
	// The committed secrets are decrypted before the render: it interpolates them.
	env, reason, err := w.openSecrets(ctx, commit, stage)
	if err == nil && reason != "" {
		err = w.reject(out, commit, []string{reason}, reason)
	}
	var staged []byte
	var violations []violation
	if err == nil {
		staged, violations, err = renderProject(ctx, w.renderRequestWith(stage, env))
	}
	if err == nil {
		err = w.refuse(out, commit, violations)
	}
	if err == nil {
		// Images come before the checkout moves: a failed pull changes nothing.
		err = w.pull(ctx, out, commit, staged, stage)
	}
	if stage != w.checkout {
		w.repo.unstage(ctx, stage)
	}
	if err != nil {
		return err
	}
	project := staged
	if stage != w.checkout {
		// What runs names host paths in the checkout: judge the project
		// with the staging copy's paths made the checkout's, as compose
		// renders it there, against the checkout as it is now.
		if err := w.repo.checkout(ctx, commit); err != nil {
			return err
		}
		if relocated, ok := relocate(staged, stage, w.checkout); ok {
			project, violations = relocated, validateProject(relocated, w.renderRequestWith(w.checkout, env))
		} else {
			project, violations, err = renderProject(ctx, w.renderRequestWith(w.checkout, env))
		}
		if err == nil {
			err = w.refuse(out, commit, violations)
		}
	}
	var builds map[string]string
	if err == nil {
		builds, err = w.buildIdentity(ctx, commit, project)
	}
	if err == nil && w.svc.Swarm {
		project, err = nameByContent(project, w.svc.Name)
	}
	if err != nil {
		if head != "" {
			// Also when the client went away or pgod is stopping: the
			// checkout must not be left on a commit that was not judged.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commandTimeout)
			if rerr := w.repo.checkout(rctx, head); rerr != nil {
				w.log.Error("cannot put back the checkout of " + short(head) + ": " + rerr.Error())
			}
			cancel()
		}
		return err
	}
	// Not synced: lost in a crash, the commit is judged again.
	if err := replaceFile(w.state.validated(), project, 0o600, nil); err != nil {
		return err
	}
	w.mu.Lock()
	w.validated = project
	w.mu.Unlock()
	w.update(func(s *savedState) {
		s.Validated, s.ValidatedBuilds, s.LastError, s.Rejected, s.Rejection, s.RejectedBy = commit, builds, "", "", nil, ""
	})
	w.loadKeys()
	w.say(out, "commit %s passed the policy", short(commit))
	for _, dead := range deadRoutes(&Config{Path: w.d.flags.config}, w.svc, project) {
		w.log.Warn(dead) // Caddy would route it to nowhere
	}
	return nil
}

// pull logs in to the registries and pulls the images of project (rendered
// in dir) that are not there yet. A failure is recorded and retried on the
// next poll; nothing else changes.
func (w *worker) pull(ctx context.Context, out io.Writer, commit string, project []byte, dir string) error {
	if w.imagesPresent(ctx, project) {
		return nil
	}
	if err := w.acquireSlot(ctx); err != nil {
		return err
	}
	defer w.releaseSlot()
	err := w.login(ctx)
	if err == nil {
		err = w.runComposeIn(ctx, project, dir, out, "pull", "--quiet", "--ignore-buildable", "--policy", "missing")
	}
	if err != nil {
		outcome := deployFailure(resultFailed, "deploy of %s failed: %s", short(commit), redact(err.Error(), w.secrets))
		w.attempted(commit, outcome, nil)
		w.tell(eventFailed, commit, outcome.msg)
		w.warn(out, "%s", outcome.msg)
		return outcome
	}
	return nil
}

// attempted records the end of an attempt to deploy commit: outcome nil
// when it deployed.
func (w *worker) attempted(commit string, outcome *deployError, logs []string) {
	a := attempt{Commit: commit, Trigger: w.cause, Result: resultOK, Logs: logs, At: time.Now()}
	if outcome != nil {
		a.Result, a.Reason = outcome.result, outcome.msg
	}
	w.update(func(s *savedState) { s.Attempt, s.LastResult, s.LastError, s.LastDeploy = a, a.Result, a.Reason, a.At })
	w.d.metrics.deploy(w.svc.Name, a.Result)
	e := historyEntry{Commit: commit, At: a.At, Trigger: w.cause,
		Key: w.by.Fingerprint, KeyFile: w.by.KeyFile, Result: a.Result, Reason: a.Reason}
	if err := w.hist.add(e); err != nil {
		w.log.Warn("history: " + err.Error())
	}
}

// fillSubjects names each entry's commit by the first line of its message.
// They are read from the clone when history is shown, in one git run,
// rather than at every deploy; a commit git no longer has keeps none.
func (w *worker) fillSubjects(entries []historyEntry) {
	args := []string{"-C", w.checkout, "log", "--no-walk=unsorted", "--ignore-missing", "--no-show-signature", "--format=%H %s"}
	wanted := 0
	for _, e := range entries {
		if e.Subject == "" && isObjectID(e.Commit) && !slices.Contains(args, e.Commit) {
			args = append(args, e.Commit)
			wanted++
		}
	}
	if wanted == 0 || !w.repo.cloned() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := w.repo.git(ctx, append(args, "--")...)
	if err != nil {
		w.log.Warn("history: commit subjects: " + err.Error())
		return
	}
	subjects := map[string]string{}
	for line := range strings.Lines(string(out)) {
		id, subject, _ := strings.Cut(strings.TrimRight(line, "\n"), " ")
		subjects[id] = oneLine(subject, maxHistorySubject)
	}
	for i := range entries {
		if entries[i].Subject == "" {
			entries[i].Subject = subjects[entries[i].Commit]
		}
	}
}

// refuse records a rejection when violations stop commit, and returns it;
// for a trusted (root) service it only warns.
func (w *worker) refuse(out io.Writer, commit string, violations []violation) error {
	if len(violations) == 0 {
		return nil
	}
	reasons := make([]string, len(violations))
	for i, v := range violations {
		reasons[i] = redact(v.String(), w.secrets) // a value may come from interpolation
	}
	if w.acct.root() {
		for _, r := range reasons {
			w.log.Warn("policy (not enforced for root): " + r)
		}
		return nil
	}
	return w.reject(out, commit, reasons, fmt.Sprintf("%d policy violations (%s)", len(reasons), reasons[0]))
}

// reject records that reasons stop commit, and returns the rejection;
// summary is the reason in one line.
func (w *worker) reject(out io.Writer, commit string, reasons []string, summary string) error {
	rules := w.rulesID()
	w.update(func(s *savedState) { s.Rejected, s.Rejection, s.RejectedBy = commit, reasons, rules })
	outcome := deployFailure(resultRejected, "rejected %s: %s; the running deployment stays", short(commit), summary)
	w.attempted(commit, outcome, nil)
	w.tell(eventRejected, commit, strings.Join(reasons, "; "))
	w.warn(out, "rejected %s, the running deployment stays:", short(commit))
	for _, r := range reasons {
		w.warn(out, "  %s", r)
	}
	return outcome
}

func (w *worker) renderRequest(dir string) renderRequest {
	return renderRequest{
		Service:  w.renderService(w.committedEnv()),
		Checkout: dir,
		DataDir:  w.data,
		Account:  w.acct,
		Docker:   w.d.flags.docker,
		Trusted:  w.acct.root(),
		Others:   w.d.otherServices(w.svc.Name),
		Observe:  func(cmd string, err error) { w.d.metrics.command(w.svc.Name, cmd, err) },
	}
}

// engine asks the engine about what a project would use, as the service's user.
func (w *worker) engine() engineInspector {
	cli := accountEngine(w.acct, w.composeEnv(), w.d.flags.docker)
	if w.d.engine != nil {
		return w.d.engine.inspector(cli)
	}
	return cli
}

// lastCheck runs the checks that depend on the host and the engine right
// before compose creates containers: host paths, other projects' names,
// networks and images as they are now. It returns the first reason to stop,
// or nil; a trusted (uid 0) service is only warned.
func (w *worker) lastCheck(ctx context.Context, project []byte) error {
	v := checkBeforeUp(ctx, project, w.renderRequest(w.checkout), w.engine())
	if len(v) == 0 {
		return nil
	}
	if w.acct.root() {
		for _, x := range v {
			w.log.Warn("policy (not enforced for root): " + x.String())
		}
		return nil
	}
	return fmt.Errorf("refused right before up: %s", v[0])
}

// converge deploys the validated project when it differs from what runs and
// the service allows it, and otherwise puts back what drifted.
func (w *worker) converge(ctx context.Context, out io.Writer, force bool) error {
	st, deployed, validated := w.snapshot()
	if w.stopped() {
		return w.keepDown(ctx, out)
	}
	if validated == nil {
		return nil
	}
	changed := !bytes.Equal(deployed, validated) || !maps.Equal(st.DeployedBuilds, st.ValidatedBuilds)
	switch {
	case !changed && st.Deployed != st.Validated:
		// A commit that changes nothing that runs is deployed by saying so.
		w.update(func(s *savedState) { s.Deployed = st.Validated })
		w.say(out, "commit %s changes nothing that runs", short(st.Validated))
	case !changed && out != nil:
		w.say(out, "nothing new: commit %s is deployed", short(st.Deployed))
	}
	switch {
	case changed && st.Failed == st.Validated && !force:
		// Also when nothing was deployed yet: a failed commit waits for a
		// new one, a git pull or an up, as README and pgo.8 say.
		w.debugOrSay(out, false, "commit %s failed to deploy before; waiting for a new one or a git pull", short(st.Validated))
	case changed && deployed != nil && !xPgoReload(validated) && !force:
		w.debugOrSay(out, false, "commit %s is checked out; x-pgo reload is false, so it deploys on the next up", short(st.Validated))
	case changed:
		return w.deploy(ctx, out)
	}
	if err := w.repair(ctx, out); err != nil || deployed == nil {
		return err
	}
	if w.svc.UpdateImages {
		if err := w.updateImages(ctx, out); err != nil || out == nil {
			return err
		}
	}
	if out == nil {
		return nil
	}
	// A client is told the truth about what runs, also when nothing was new.
	if bad, logs := w.awaitReady(ctx, deployed, time.Now()); bad != nil {
		w.sayLogs(out, logs)
		return bad
	}
	return nil
}

// deploy runs the validated project: images first, then up, then the health
// gate; a failed up or gate goes back to the last good commit.
func (w *worker) deploy(ctx context.Context, out io.Writer) error {
	st, deployed, project := w.snapshot()
	commit := st.Validated
	if err := w.acquireSlot(ctx); err != nil {
		return err
	}
	released := false
	release := func() {
		if !released {
			released = true
			w.releaseSlot()
		}
	}
	defer release()
	w.remember(func(s *savedState) { s.LastDeploy = time.Now() })

	if err := w.lastCheck(ctx, project); err != nil {
		release() // the rollback takes a slot of its own
		return w.failDeploy(ctx, out, commit, deployFailure(resultRejected, "%s", redact(err.Error(), w.secrets)), nil, false)
	}
	// Only the services whose build changed are built; up then recreates
	// the containers whose image moved.
	if names := rebuilt(st.DeployedBuilds, st.ValidatedBuilds); len(names) > 0 {
		w.say(out, "building %s", strings.Join(names, ", "))
		if err := w.runCompose(ctx, project, out, append([]string{"build", "--"}, names...)...); err != nil {
			release()
			return w.failDeploy(ctx, out, commit, deployFailure(resultFailed, "%s", redact(err.Error(), w.secrets)), nil, false)
		}
	}
	since := time.Now()
	if err := w.bringUp(ctx, project, out, "up", "-d", "--remove-orphans", "--quiet-pull"); err != nil {
		release()
		return w.failDeploy(ctx, out, commit, deployFailure(resultFailed, "%s", redact(err.Error(), w.secrets)), nil, true)
	}
	release() // the gate only looks; other services may deploy meanwhile
	w.say(out, "waiting up to %s for the %s of %s to be ready", w.healthTimeout(project), w.unitsWord(), short(commit))
	if bad, logs := w.awaitReady(ctx, project, since); bad != nil {
		return w.failDeploy(ctx, out, commit, bad, logs, true)
	}
	if err := writeFileAtomic(w.state.deployed(), project, 0o600); err != nil {
		return err
	}
	w.mu.Lock()
	w.deployed = project
	w.mu.Unlock()
	w.remember(func(s *savedState) {
		s.Deployed, s.DeployedBuilds, s.DeployedAt, s.Failed = commit, st.ValidatedBuilds, time.Now(), ""
	})
	w.attempted(commit, nil, nil) // writes the state
	if st.LastResult != "" && st.LastResult != resultOK {
		w.tell(eventRecovered, commit, "deployed after "+st.LastResult)
	}
	w.say(out, "deployed %s (%d services changed)", short(commit), changedServices(deployed, project, rebuilt(st.DeployedBuilds, st.ValidatedBuilds)))
	if err := w.pins.unpinUnused(project); err != nil {
		w.log.Warn("bind pins of the last deploy: " + err.Error())
	}
	w.d.caddy.fire() // URLs may point at new containers; the Caddy loop runs outside this service's lock
	return w.repair(ctx, out)
}

// failDeploy puts the last good commit back in the checkout, and when up
// ran also runs it again, health-gated as any deploy. The rollback runs to
// its end also when the client left or the op's deadline passed.
func (w *worker) failDeploy(ctx context.Context, out io.Writer, commit string, cause *deployError, logs []string, upRan bool) error {
	if w.d.isStopping() {
		// Stopped mid-deploy, not failed: what runs stays, nothing is
		// recorded, and the next start deploys the commit again, gated.
		w.log.Info("pgod is stopping: " + short(commit) + " is left as it is and deployed again at the next start")
		return cause
	}
	st, deployed, _ := w.snapshot()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commandTimeout+w.healthTimeout(deployed))
	defer cancel()
	w.sayLogs(out, logs)
	msg := cause.msg
	rolledBack := false
	if st.Deployed != "" && st.Deployed != commit {
		if err := w.repo.checkout(ctx, st.Deployed); err != nil {
			w.log.Error("cannot restore the checkout of " + short(st.Deployed) + ": " + err.Error())
		} else if err := writeFileAtomic(w.state.validated(), deployed, 0o600); err == nil {
			w.mu.Lock()
			w.validated = deployed
			w.mu.Unlock()
			w.update(func(s *savedState) { s.Validated, s.ValidatedBuilds = st.Deployed, st.DeployedBuilds })
			w.loadKeys()
		}
		if upRan {
			// The images of the failed commit's builds carry the names of
			// the last good one's: build those again first.
			rebuild := slices.DeleteFunc(rebuilt(st.DeployedBuilds, st.ValidatedBuilds), func(n string) bool { return st.DeployedBuilds[n] == "" })
			rolledBack = w.rollBack(ctx, out, deployed, rebuild, &msg)
		}
	}
	outcome := &deployError{result: cause.result, msg: fmt.Sprintf("deploy of %s failed: %s", short(commit), msg)}
	if rolledBack {
		outcome.msg = fmt.Sprintf("deploy of %s failed, rolled back to %s: %s", short(commit), short(st.Deployed), msg)
		if outcome.result == resultFailed {
			outcome.result = resultRolledBack
		}
	}
	w.update(func(s *savedState) { s.Failed = commit })
	w.attempted(commit, outcome, logs)
	switch {
	case outcome.result == resultUnhealthy || outcome.result == resultTimeout:
		w.tell(eventUnhealthy, commit, outcome.msg)
	case rolledBack:
		w.tell(eventRolledBack, commit, outcome.msg)
	default:
		w.tell(eventFailed, commit, outcome.msg)
	}
	w.warn(out, "%s", outcome.msg)
	return outcome
}

// rollBack runs the last good project again and waits for it to be ready;
// what went wrong is added to msg.
func (w *worker) rollBack(ctx context.Context, out io.Writer, project []byte, rebuild []string, msg *string) bool {
	if err := w.acquireSlot(ctx); err != nil {
		*msg += "; no rollback: " + err.Error()
		return false
	}
	var err error
	if len(rebuild) > 0 {
		err = w.runCompose(ctx, project, out, append([]string{"build", "--"}, rebuild...)...)
	}
	since := time.Now()
	if err == nil {
		err = w.bringUp(ctx, project, out, "up", "-d", "--remove-orphans")
	}
	w.releaseSlot()
	if err != nil {
		*msg += "; rollback failed too: " + redact(err.Error(), w.secrets)
		return false
	}
	if bad, _ := w.awaitReady(ctx, project, since); bad != nil {
		*msg += "; the rollback is not ready either: " + bad.msg
		return false
	}
	return true
}

// bringUp runs project on the service's engine: compose with args, or on
// Swarm a stack deploy.
func (w *worker) bringUp(ctx context.Context, project []byte, out io.Writer, args ...string) error {
	if w.svc.Swarm {
		return w.stackDeploy(ctx, project, out)
	}
	return w.runCompose(ctx, project, out, args...)
}

// awaitReady is the health gate of the service's engine on project,
// brought up at since: containers ready, or the stack converged.
func (w *worker) awaitReady(ctx context.Context, project []byte, since time.Time) (*deployError, []string) {
	if w.svc.Swarm {
		return w.awaitStack(ctx, project, since)
	}
	return w.awaitHealthy(ctx, project)
}

// unitsWord names what runs of the service, for progress lines.
func (w *worker) unitsWord() string {
	if w.svc.Swarm {
		return "tasks"
	}
	return "containers"
}

// sayLogs shows a failed container's last log lines to the client and the log.
func (w *worker) sayLogs(out io.Writer, logs []string) {
	if len(logs) == 0 {
		return
	}
	w.say(out, "last log lines:\n  %s", strings.Join(logs, "\n  "))
}

// login logs the service's user in to its private registries; the token
// goes on stdin, never on a command line.
func (w *worker) login(ctx context.Context) error {
	for _, r := range w.svc.registryLogins() {
		cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, "login", "--username", r.User, "--password-stdin", r.Host)
		cmd.Stdin = strings.NewReader(r.Token)
		stderr := newTail(maxTail)
		cmd.Stderr = stderr
		err := cmd.Run()
		w.d.metrics.command(w.svc.Name, "docker login", err)
		if err != nil {
			return fmt.Errorf("docker login %s: %s", r.Host, redact(lastLines(strings.TrimSpace(stderr.String()), 2), w.secrets))
		}
	}
	return nil
}

// repair brings back containers removed or stopped outside pgo and records
// how many run.
func (w *worker) repair(ctx context.Context, out io.Writer) error {
	_, deployed, _ := w.snapshot()
	if deployed == nil {
		return nil
	}
	if w.svc.Swarm {
		return w.repairStack(ctx, out, deployed)
	}
	services, err := projectServices(deployed)
	if err != nil {
		return err
	}
	ps, err := w.containers(ctx)
	if err != nil {
		return w.failSync(out, err)
	}
	d := drift(services, ps)
	if len(d.missing) > 0 {
		w.say(out, "drift: %s; bringing it back", strings.Join(d.missing, ", "))
		// Containers are created again from what the engine has now: an
		// image or a network may have changed hands since the deploy.
		if err := w.lastCheck(ctx, deployed); err != nil {
			return w.failSync(out, err)
		}
		if err := w.acquireSlot(ctx); err != nil {
			return err
		}
		err := w.runCompose(ctx, deployed, out, "up", "-d")
		if err == nil && len(d.recreate) > 0 {
			err = w.runCompose(ctx, deployed, out, append([]string{"up", "-d", "--force-recreate", "--"}, d.recreate...)...)
		}
		w.releaseSlot()
		if err != nil {
			return w.failSync(out, err)
		}
		if now, err := w.containers(ctx); err == nil {
			ps = now
		}
	}
	w.record(ps, services)
	return nil
}

// record keeps what the last look at the containers found, for status and metrics.
func (w *worker) record(ps []psEntry, services map[string]projectService) {
	d := drift(services, ps)
	w.mu.Lock()
	w.running, w.desired, w.ctrs = d.running, d.desired, ps
	w.mu.Unlock()
}

// stopped reports whether the stop marker is set.
func (w *worker) stopped() bool {
	_, err := os.Stat(w.stopFile)
	return err == nil
}

// keepDown brings a stopped service down if anything of it runs.
func (w *worker) keepDown(ctx context.Context, out io.Writer) error {
	project := w.currentProject()
	if project == nil {
		return nil
	}
	if w.svc.Swarm {
		return w.keepStackDown(ctx, out)
	}
	ps, err := w.containers(ctx)
	if err != nil {
		return w.failSync(out, err)
	}
	w.record(ps, nil)
	if len(ps) == 0 {
		return nil
	}
	w.say(out, "stop marker %s is set; bringing the service down", w.stopFile)
	err = w.runCompose(ctx, project, out, "down", "--remove-orphans")
	if ps, perr := w.containers(ctx); perr == nil {
		w.record(ps, nil)
	}
	return err
}

func (w *worker) acquireSlot(ctx context.Context) error {
	select {
	case w.d.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *worker) releaseSlot() { <-w.d.slots }

// loadKeys reads the keys of the checkout's ssh/ (keys.go) and warns of
// each line or file it skipped.
func (w *worker) loadKeys() {
	keys, problems := readKeys(filepath.Join(w.checkout, "ssh"))
	for _, p := range problems {
		w.log.Warn(p)
	}
	w.mu.Lock()
	w.keys = keys
	w.mu.Unlock()
}

// tell notifies whoever pgo.toml names of an event of this service; it never waits.
func (w *worker) tell(kind eventKind, commit, reason string) {
	w.d.notifier.notify(event{Kind: kind, Service: w.svc.Name, Commit: commit, Reason: redact(reason, w.secrets), Secrets: w.secrets})
}

// short abbreviates a commit hash for humans.
func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// serviceLock is held by the one operation that changes a service: a poll,
// a deploy or an SSH op. It outlives the worker: the daemon keeps one per
// service name across config reloads. It says who holds it, for the answer
// an SSH op gets when it cannot wait.
type serviceLock struct {
	c chan struct{}

	mu     sync.Mutex
	holder string
	since  time.Time
}

func newServiceLock() *serviceLock { return &serviceLock{c: make(chan struct{}, 1)} }

// hold runs f with the lock, waiting for it as long as ctx allows.
func (l *serviceLock) hold(ctx context.Context, who string, f func() error) error {
	select {
	case l.c <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.run(who, f)
}

// tryHold runs f with the lock, waiting at most wait for it.
func (l *serviceLock) tryHold(ctx context.Context, who string, wait time.Duration, f func() error) error {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case l.c <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		l.mu.Lock()
		holder, since := l.holder, l.since
		l.mu.Unlock()
		return &busyError{holder: holder, since: since}
	}
	return l.run(who, f)
}

func (l *serviceLock) run(who string, f func() error) error {
	l.mu.Lock()
	l.holder, l.since = who, time.Now()
	l.mu.Unlock()
	defer func() { <-l.c }()
	return f()
}

// busyError answers an op that found the service busy for too long.
type busyError struct {
	holder string
	since  time.Time
}

func (e *busyError) Error() string {
	return fmt.Sprintf("busy: %s has been running on the service for %s; try again later", e.holder, time.Since(e.since).Round(time.Second))
}
