package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests drive one worker through its deploy logic against a substitute
// docker that records what it is asked and fails on request; "compose config"
// goes to the real Compose v2, since rendering needs no engine.

// fakeDocker is a substitute docker binary and its control files.
type fakeDocker struct {
	dir string // calls.log records each call; fail-<verb> makes that compose verb fail
}

func newFakeDocker(t *testing.T) *fakeDocker {
	t.Helper()
	if out, err := exec.Command("docker", "compose", "version", "--short").Output(); err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "2.") {
		t.Skip("needs Compose v2 for rendering (docker compose version failed)")
	}
	real, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("needs docker for rendering")
	}
	f := &fakeDocker{dir: traversable(t, t.TempDir())}
	os.Chmod(f.dir, 0o777) // the service's user records its calls here
	script := `#!/bin/sh
# substitute docker: compose config goes to the real one; the rest is recorded.
dir='` + f.dir + `'
case " $* " in
*" config "*|*" version "*) exec '` + real + `' "$@" ;;
esac
verb=""
for a in "$@"; do
	case "$a" in
	pull|up|down|ps|login|exec|restart) verb=$a; break ;;
	esac
done
echo "$verb $*" >> "$dir/calls.log"
[ "$verb" = login ] && cat > "$dir/login.stdin"
[ -e "$dir/fail-$verb" ] && { echo "fake $verb failure" >&2; exit 1; }
if [ "$1 $2 $3" = "inspect --type container" ]; then
	# The health gate's look: unless a test says otherwise, the one service is ready.
	if [ -e "$dir/inspect-once.txt" ]; then cat "$dir/inspect-once.txt"; rm -f "$dir/inspect-once.txt"
	elif [ -e "$dir/inspect.txt" ]; then cat "$dir/inspect.txt"; else printf '/web-web-1\tweb\tbusybox:stable\trunning\t\t0\t0\t2026-01-01T00:00:00Z\n'; fi
fi
if [ "$verb" = ps ]; then
	# Unless a test says otherwise, the one service runs.
	if [ -e "$dir/ps.txt" ]; then cat "$dir/ps.txt"; else printf 'web-web-1\trunning\tweb\n'; fi
fi
cat > /dev/null
exit 0
`
	if err := os.WriteFile(filepath.Join(f.dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeDocker) path() string { return filepath.Join(f.dir, "docker") }

// verbs returns the compose verbs called so far, in order, and forgets them.
// The engine inspections of the last check before up (docker image and
// network inspect) and of the health gate change nothing and are left out.
func (f *fakeDocker) verbs(t *testing.T) []string {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(f.dir, "calls.log"))
	os.Remove(filepath.Join(f.dir, "calls.log"))
	var verbs []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] != "image" && f[0] != "network" && f[0] != "inspect" {
			verbs = append(verbs, f[0])
		}
	}
	return verbs
}

func (f *fakeDocker) fail(t *testing.T, verb string, on bool) {
	t.Helper()
	p := filepath.Join(f.dir, "fail-"+verb)
	if on {
		os.WriteFile(p, nil, 0o644)
	} else {
		os.Remove(p)
	}
}

// gitRepo is an upstream for unit tests: a bare repository and a work clone.
type gitRepo struct{ bare, work string }

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	root := traversable(t, t.TempDir())
	g := &gitRepo{bare: filepath.Join(root, "up.git"), work: filepath.Join(root, "work")}
	gitT(t, root, "init", "-q", "--bare", "-b", "main", g.bare)
	gitT(t, root, "init", "-q", "-b", "main", g.work)
	return g
}

func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (g *gitRepo) push(t *testing.T, compose string) string {
	t.Helper()
	os.WriteFile(filepath.Join(g.work, "compose.yaml"), []byte(compose), 0o644)
	gitT(t, g.work, "add", "-A")
	gitT(t, g.work, "commit", "-q", "-m", "change")
	gitT(t, g.work, "push", "-q", g.bare, "HEAD:main")
	return gitT(t, g.work, "rev-parse", "HEAD")
}

// traversable opens dir and its parent for other users: the worker runs git
// and compose as the service's user, not as the test.
func traversable(t *testing.T, dir string) string {
	t.Helper()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testUID is the service user's uid and gid in worker tests: nobody when the
// tests run as root, as pgod does (a uid 0 service is trusted and its policy
// only warns), else the test's own user.
func testUID() (uint32, uint32) {
	if os.Getuid() == 0 {
		return 65534, 65534
	}
	return uint32(os.Getuid()), uint32(os.Getgid())
}

// testWorker makes a worker for a service whose policy is enforced.
func testWorker(t *testing.T, fake *fakeDocker, upstream string) (*worker, *bytes.Buffer) {
	t.Helper()
	root := traversable(t, t.TempDir())
	var logs bytes.Buffer
	d := &Daemon{
		flags: &daemonFlags{dir: filepath.Join(root, "state"), datadir: filepath.Join(root, "data"),
			docker: fake.path(), mountCmd: "false", duration: time.Minute},
		log:     newLogger(&logs, true),
		health:  newHealth(),
		slots:   make(chan struct{}, 1),
		workers: map[string]*worker{},
		locks:   map[string]*serviceLock{},
		caddy:   newTrigger(),
	}
	d.metrics = newMetrics(d.statuses)
	d.notifier = newNotifier(d.log, d.metrics)
	os.MkdirAll(d.flags.dir, 0o755)
	os.MkdirAll(filepath.Join(d.flags.dir, ".pgo"), 0o700)
	svc := &Service{Name: "web", User: "svc", Repository: upstream, Branch: "main"}
	uid, gid := testUID()
	acct := &account{Name: "svc", UID: uid, GID: gid, Home: filepath.Join(root, "home")}
	os.MkdirAll(acct.Home, 0o755)
	os.Chown(acct.Home, int(uid), int(gid))
	w := newWorker(d, svc, acct, newServiceLock())
	d.workers["web"] = w
	d.cfg = &Config{Services: []*Service{svc}}
	if err := w.restore(); err != nil {
		t.Fatal(err)
	}
	return w, &logs
}

// deployedWorker is a worker whose first commit, compose, is deployed, with
// the calls of that deploy forgotten.
func deployedWorker(t *testing.T, compose string) (*worker, *fakeDocker, *gitRepo, string) {
	t.Helper()
	fake := newFakeDocker(t)
	g := newGitRepo(t)
	first := g.push(t, compose)
	w, logs := testWorker(t, fake, g.bare)
	if err := w.sync(context.Background(), nil, false); err != nil {
		t.Fatalf("first sync: %v\n%s", err, logs)
	}
	if st := w.status(); st.Deployed != first {
		t.Fatalf("first commit not deployed: %+v\n%s", st, logs)
	}
	fake.verbs(t)
	return w, fake, g, first
}

const goodCompose = "services:\n  web:\n    image: busybox:stable\n    command: [\"sleep\", \"1000\"]\n"

func TestWorkerDeployOrder(t *testing.T) {
	fake := newFakeDocker(t)
	g := newGitRepo(t)
	first := g.push(t, goodCompose)
	w, logs := testWorker(t, fake, g.bare)
	ctx := context.Background()

	if err := w.sync(ctx, nil, false); err != nil {
		t.Fatalf("first sync: %v\n%s", err, logs)
	}
	if got := strings.Join(fake.verbs(t), " "); !strings.HasPrefix(got, "pull up") {
		t.Fatalf("first deploy called %q, want pull then up", got)
	}
	if st := w.status(); st.Deployed != first || st.LastResult != resultOK {
		t.Fatalf("status after first deploy: %+v", st)
	}
	if cfg, _ := os.ReadFile(filepath.Join(w.checkout, ".git", "config")); strings.Contains(string(cfg), g.bare) {
		t.Errorf("the checkout's .git/config keeps the repository URL:\n%s", cfg)
	}

	// Nothing changed upstream: no pull, no up, only the drift check.
	w.sync(ctx, nil, false)
	if got := fake.verbs(t); strings.Contains(strings.Join(got, " "), "up") {
		t.Fatalf("an unchanged branch deployed again: %v", got)
	}

	// A commit that changes nothing rendered does not deploy either.
	gitT(t, g.work, "commit", "-q", "--allow-empty", "-m", "docs")
	gitT(t, g.work, "push", "-q", g.bare, "HEAD:main")
	w.sync(ctx, nil, false)
	if got := fake.verbs(t); strings.Contains(strings.Join(got, " "), "up") {
		t.Fatalf("a commit with the same project deployed: %v", got)
	}
}

func TestWorkerRejectedCommitChangesNothing(t *testing.T) {
	w, fake, g, first := deployedWorker(t, goodCompose)
	ctx := context.Background()
	bad := g.push(t, "services:\n  web:\n    image: busybox:stable\n    privileged: true\n")
	var out bytes.Buffer
	w.sync(ctx, &out, false)
	if got := fake.verbs(t); strings.Contains(strings.Join(got, " "), "up") || strings.Contains(strings.Join(got, " "), "pull") {
		t.Fatalf("a rejected commit reached compose: %v", got)
	}
	st := w.status()
	if st.Deployed != first || st.Rejected != bad || st.LastResult != resultRejected || len(st.Rejection) == 0 {
		t.Fatalf("status after a rejection: %+v", st)
	}
	if !strings.Contains(strings.Join(st.Rejection, "\n"), "privileged") {
		t.Errorf("rejection reasons do not name privileged: %v", st.Rejection)
	}
	if head, _ := w.repo.head(ctx); head != first {
		t.Errorf("checkout moved to %s after a rejection, want %s", head, first)
	}
	data, _ := os.ReadFile(filepath.Join(w.checkout, "compose.yaml"))
	if string(data) != goodCompose {
		t.Errorf("checkout's compose.yaml changed after a rejection:\n%s", data)
	}

	// A good commit after it deploys, and the old rejection leaves the status.
	fixed := g.push(t, strings.Replace(goodCompose, "1000", "5000", 1))
	w.sync(ctx, nil, false)
	if st := w.status(); st.Deployed != fixed || st.Rejected != "" || len(st.Rejection) != 0 {
		t.Fatalf("status after a good commit that followed a rejection: %+v", st)
	}
}

func TestWorkerFailedPullChangesNothing(t *testing.T) {
	w, fake, g, first := deployedWorker(t, goodCompose)
	ctx := context.Background()

	g.push(t, strings.Replace(goodCompose, "1000", "2000", 1))
	fake.fail(t, "pull", true)
	w.sync(ctx, nil, false)
	got := fake.verbs(t)
	if strings.Contains(strings.Join(got, " "), "up") {
		t.Fatalf("up ran after a failed pull: %v", got)
	}
	st := w.status()
	if st.Deployed != first || st.LastResult != resultFailed {
		t.Fatalf("status after a failed pull: %+v", st)
	}
	if head, _ := w.repo.head(ctx); head != first {
		t.Errorf("checkout left at %s after a failed pull, want %s", head, first)
	}
}

func TestWorkerFailedUpRollsBack(t *testing.T) {
	w, fake, g, first := deployedWorker(t, goodCompose)
	ctx := context.Background()
	_, good, _ := w.snapshot()

	broken := g.push(t, strings.Replace(goodCompose, "1000", "3000", 1))
	// The first up (the new commit) fails; the rollback's up succeeds.
	script := filepath.Join(fake.dir, "docker")
	data, _ := os.ReadFile(script)
	failOnce := strings.Replace(string(data), `[ -e "$dir/fail-$verb" ]`,
		`[ "$verb" = up ] && [ ! -e "$dir/up-failed" ] && { touch "$dir/up-failed"; echo "fake up failure" >&2; exit 1; }
[ -e "$dir/fail-$verb" ]`, 1)
	os.WriteFile(script, []byte(failOnce), 0o755)

	w.sync(ctx, nil, false)
	if got := strings.Join(fake.verbs(t), " "); !strings.HasPrefix(got, "pull up up") {
		t.Fatalf("calls %q, want pull, the failed up, then the rollback's up", got)
	}
	st, deployed, _ := w.snapshot()
	if st.Deployed != first || st.LastResult != resultRolledBack || st.Failed != broken {
		t.Fatalf("state after a failed up: %+v", st)
	}
	if !bytes.Equal(deployed, good) {
		t.Errorf("deployed project changed after a rollback")
	}
	if head, _ := w.repo.head(ctx); head != first {
		t.Errorf("checkout at %s after rollback, want %s", head, first)
	}
	// The failed commit is not retried by the poll, only on request.
	w.sync(ctx, nil, false)
	if got := fake.verbs(t); strings.Contains(strings.Join(got, " "), "pull") {
		t.Errorf("the poll retried a failed commit: %v", got)
	}
}

func TestWorkerReloadFalseWaitsForUp(t *testing.T) {
	// The first commit deploys although reload is false: nothing ran before.
	w, fake, g, _ := deployedWorker(t, goodCompose+"x-pgo:\n  reload: false\n")
	ctx := context.Background()
	second := g.push(t, strings.Replace(goodCompose, "1000", "4000", 1)+"x-pgo:\n  reload: false\n")
	w.sync(ctx, nil, false)
	if got := fake.verbs(t); strings.Contains(strings.Join(got, " "), "up") {
		t.Fatalf("reload: false deployed a new commit by itself: %v", got)
	}
	if head, _ := w.repo.head(ctx); head != second {
		t.Errorf("the new commit was not checked out: head %s", head)
	}
	if err := w.up(ctx, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if st := w.status(); st.Deployed != second {
		t.Fatalf("up did not deploy the checked-out commit: %+v", st)
	}
}

func TestWorkerStopMarker(t *testing.T) {
	w, fake, _, _ := deployedWorker(t, goodCompose)
	ctx := context.Background()
	os.WriteFile(w.stopFile, nil, 0o644)
	w.sync(ctx, nil, false)
	if got := strings.Join(fake.verbs(t), " "); !strings.Contains(got, "down") || strings.Contains(got, "up") {
		t.Fatalf("with the stop marker set, calls were %q, want a down and no up", got)
	}
	if !w.status().Stopped {
		t.Error("status does not show the stop marker")
	}
}

func TestDriftFindsMissingAndStopped(t *testing.T) {
	two := 2
	services := map[string]projectService{
		"web": {Restart: "unless-stopped"},
		"job": {Restart: "no"},
		"api": {Restart: "always", Deploy: &struct {
			Replicas *int `json:"replicas"`
		}{Replicas: &two}},
		"dbg": {Profiles: []string{"debug"}},
	}
	ps := []psEntry{
		{Name: "p-web-1", Service: "web", State: "exited"},
		{Name: "p-job-1", Service: "job", State: "exited"},
		{Name: "p-api-1", Service: "api", State: "running"},
	}
	d := drift(services, ps)
	if len(d.recreate) != 0 {
		t.Errorf("recreate = %q, want none", d.recreate)
	}
	want := []string{"api: 1 of 2 containers gone", "web: p-web-1 is exited"}
	if strings.Join(d.missing, "|") != strings.Join(want, "|") {
		t.Errorf("missing = %q, want %q", d.missing, want)
	}
	if d.running != 1 || d.desired != 3 {
		t.Errorf("running %d desired %d, want 1 and 3", d.running, d.desired)
	}
}

func TestWorkerLogsInWithTokenOnStdin(t *testing.T) {
	fake := newFakeDocker(t)
	w, _ := testWorker(t, fake, "/nonexistent")
	w.svc.Registries = []string{"tok@reg.example.org", "bob:s3cret@r2.example.org"}
	if err := w.login(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(filepath.Join(fake.dir, "calls.log"))
	for _, want := range []string{"login --username svc --password-stdin reg.example.org", "login --username bob --password-stdin r2.example.org"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("calls %q lack %q", calls, want)
		}
	}
	if strings.Contains(string(calls), "s3cret") || strings.Contains(string(calls), "tok ") {
		t.Errorf("a token reached the command line: %q", calls)
	}
	if stdin, _ := os.ReadFile(filepath.Join(fake.dir, "login.stdin")); string(stdin) != "s3cret" {
		t.Errorf("last login read %q on stdin, want the token", stdin)
	}
}

func TestReadKeysSkipsSymlinksAndJunk(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.pub"), []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbd1R0H3c8u6ubT3yn2rHWgqtJiKcJpqD8hH3P9mKJj a@b\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "junk.pub"), []byte("not a key\n"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(dir, "link.pub"))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.pub"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, problems := readKeys(dir) // a FIFO must not block it
	if len(keys) != 1 {
		t.Errorf("got %d keys, want 1", len(keys))
	}
	if len(problems) != 3 {
		t.Errorf("problems = %q, want three (junk, the symlink, the FIFO)", problems)
	}
}

func TestWorkerWaitsForItsMount(t *testing.T) {
	fake := newFakeDocker(t)
	g := newGitRepo(t)
	first := g.push(t, goodCompose)
	w, _ := testWorker(t, fake, g.bare)
	w.svc.Mount = "nfs://filer.example.org/export/web"
	mount := filepath.Join(fake.dir, "mount")
	os.WriteFile(mount, []byte("#!/bin/sh\necho 'mount.nfs: access denied by server' >&2\nexit 32\n"), 0o755)
	w.d.flags.mountCmd = mount
	ctx := context.Background()

	if err := w.sync(ctx, nil, false); err == nil {
		t.Fatal("sync succeeded without its mount")
	}
	if got := fake.verbs(t); len(got) != 0 {
		t.Fatalf("compose ran without the mount: %v", got)
	}
	if st := w.status(); !strings.Contains(st.LastError, "access denied") || st.Deployed != "" {
		t.Fatalf("status without the mount: %+v", st)
	}
	if w.prepared.Load() {
		t.Error("a failed mount counts as prepared, so the poll would not back off")
	}

	os.WriteFile(mount, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	if err := w.sync(ctx, nil, false); err != nil {
		t.Fatalf("sync with the mount back: %v", err)
	}
	if st := w.status(); st.Deployed != first {
		t.Fatalf("not deployed once the mount works: %+v", st)
	}
}

func TestParsePS(t *testing.T) {
	got, err := parsePS("shop-web-1\trunning\tweb\tnginx:1\tUp 3 minutes (healthy)\nshop-db-1\texited\tdb\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []psEntry{{Name: "shop-web-1", Service: "web", State: "running", Image: "nginx:1", Health: "healthy"},
		{Name: "shop-db-1", Service: "db", State: "exited"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("parsePS = %+v, want %+v", got, want)
	}
	if _, err := parsePS("garbage\n"); err == nil {
		t.Fatal("a line without tabs was accepted")
	}
	if got, err := parsePS(""); err != nil || len(got) != 0 {
		t.Fatalf("empty output: %v %v", got, err)
	}
}

func TestDaemonRefusesToStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("pgod's checks after the root check need root")
	}
	dir := t.TempDir()
	oldCompose := filepath.Join(dir, "docker-old")
	os.WriteFile(oldCompose, []byte("#!/bin/sh\necho 2.20.3\n"), 0o755)
	noCompose := filepath.Join(dir, "docker-v1")
	os.WriteFile(noCompose, []byte("#!/bin/sh\necho \"docker: 'compose' is not a docker command.\" >&2\nexit 1\n"), 0o755)
	newCompose := filepath.Join(dir, "docker-new")
	os.WriteFile(newCompose, []byte("#!/bin/sh\necho 2.40.3\n"), 0o755)
	config := func(user string) string {
		p := filepath.Join(t.TempDir(), "pgo.toml")
		os.WriteFile(p, []byte("[[services]]\nname = \"web\"\nuser = \""+user+"\"\nrepository = \"/srv/web.git\"\n"), 0o600)
		return p
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"dir is root", []string{"-c", config("root"), "-d", "/", "--docker", newCompose}, "--dir is /"},
		{"old compose", []string{"-c", config("root"), "-d", t.TempDir(), "--docker", oldCompose}, "2.20.3"},
		{"no compose v2", []string{"-c", config("root"), "-d", t.TempDir(), "--docker", noCompose}, "ompose"},
		{"unknown user", []string{"-c", config("no-such-user-pgo"), "-d", t.TempDir(), "--docker", newCompose}, `pgo.toml:1: service "web": user no-such-user-pgo does not exist on this host; create it with: adduser --system --group no-such-user-pgo`},
		{"invalid config", []string{"-c", filepath.Join(dir, "missing.toml"), "-d", t.TempDir(), "--docker", newCompose}, "missing.toml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runDaemon(c.args, &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), c.want)
			}
		})
	}
}

func TestDaemonFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	f, code := parseDaemonFlags([]string{"--config", "/x.toml", "-d", "/srv/pgo/", "-t", "30s", "--max-parallel", "8"}, &stdout, &stderr)
	if code >= 0 || f.config != "/x.toml" || f.dir != "/srv/pgo" || f.duration != 30*time.Second || f.maxParallel != 8 ||
		f.hostKey != "/srv/pgo/.pgo/ssh_host_ed25519_key" || f.sshAddr != ":2222" || f.metricsAddr != "127.0.0.1:9112" || f.webhooksAddr != "" || f.datadir != "/data" {
		t.Fatalf("flags %+v, code %d", f, code)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "Usage: pgod"},
		{[]string{"extra"}, "Usage: pgod"},
		{[]string{"-t", "10ms"}, "--duration 10ms is too short"},
		{[]string{"--max-parallel", "0"}, "--max-parallel must be at least 1"},
	} {
		stderr.Reset()
		if _, code := parseDaemonFlags(c.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
	stdout.Reset()
	if _, code := parseDaemonFlags([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "--max-parallel") {
		t.Errorf("-h: exit %d, %q", code, stdout.String())
	}
}

func TestWorkerGitRunsNoHooks(t *testing.T) {
	w, _, g, _ := deployedWorker(t, goodCompose)
	ran := filepath.Join(t.TempDir(), "hook-ran")
	hook := filepath.Join(w.checkout, ".git", "hooks", "post-checkout")
	os.MkdirAll(filepath.Dir(hook), 0o755)
	os.WriteFile(hook, []byte("#!/bin/sh\ntouch "+ran+"\n"), 0o755)
	next := g.push(t, strings.Replace(goodCompose, "1000", "6000", 1))
	if err := w.sync(context.Background(), nil, false); err != nil {
		t.Fatal(err)
	}
	if head, _ := w.repo.head(context.Background()); head != next {
		t.Fatalf("checkout at %s, want %s", head, next)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Fatal("a hook planted in the checkout's .git ran")
	}
}

func TestDriftFindsInterruptedRecreate(t *testing.T) {
	services := map[string]projectService{"web": {Restart: "unless-stopped"}}
	ps := []psEntry{{Name: "7d6ef170f9b1_p-web-1", Service: "web", State: "running"}}
	d := drift(services, ps)
	if len(d.recreate) != 1 || d.recreate[0] != "web" || len(d.missing) != 1 {
		t.Fatalf("drift = %+v, want web to be recreated", d)
	}
}

// TestStartErrors: a service whose first clone fails is named, with the
// reason, in what pgod reports after its start; one that prepared is not.
func TestStartErrors(t *testing.T) {
	fake := newFakeDocker(t)
	g := newGitRepo(t)
	g.push(t, goodCompose)
	good, _ := testWorker(t, fake, g.bare)
	bad, _ := testWorker(t, fake, filepath.Join(t.TempDir(), "no-such-repo.git"))
	bad.svc.Name = "api"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go good.run(ctx)
	go bad.run(ctx)
	failed := good.d.startErrors(ctx, []*worker{good, bad}, time.Minute)
	if len(failed) != 1 || !strings.HasPrefix(failed[0], `service "api": `) || !strings.Contains(failed[0], "no-such-repo") {
		t.Errorf("start errors: %q", failed)
	}
	cancel()
	<-good.done
	<-bad.done
}
