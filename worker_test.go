package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A failed first deploy (nothing runs yet) waits like any failed deploy: a
// poll does not try the same commit again; git pull does.
func TestWorkerFailedFirstDeployIsNotRetriedByPolls(t *testing.T) {
	fake := newFakeDocker(t)
	g := newGitRepo(t)
	commit := g.push(t, goodCompose)
	w, _ := testWorker(t, fake, g.bare)
	fake.fail(t, "up", true)
	ctx := context.Background()
	if err := w.sync(ctx, nil, false); err == nil {
		t.Fatal("the first deploy succeeded with up failing")
	}
	fake.verbs(t)
	for i := 0; i < 3; i++ {
		w.sync(ctx, nil, false)
	}
	if got := fake.verbs(t); strings.Contains(strings.Join(got, " "), "up") {
		t.Fatalf("polls deployed the failed commit again: %v", got)
	}
	fake.fail(t, "up", false)
	if err := w.sync(ctx, nil, true); err != nil {
		t.Fatalf("git pull after the fix: %v", err)
	}
	if st := w.status(); st.Deployed != commit {
		t.Fatalf("git pull did not deploy the commit: %+v", st)
	}
}

// An SSH op that cannot get the service's lock within a few seconds gets an
// answer naming what holds it, instead of hanging behind a stalled git.
func TestServiceLockAnswersBusy(t *testing.T) {
	l := newServiceLock()
	held, release := make(chan struct{}), make(chan struct{})
	go l.hold(context.Background(), "poll", func() error {
		close(held)
		<-release
		return nil
	})
	<-held
	ran := false
	err := l.tryHold(context.Background(), "an SSH op", 50*time.Millisecond, func() error { ran = true; return nil })
	var busy *busyError
	if !errors.As(err, &busy) || ran || !strings.Contains(err.Error(), "poll") {
		t.Fatalf("tryHold on a held lock: ran=%v err=%v, want a busy error naming the poll", ran, err)
	}
	close(release)
	if err := l.tryHold(context.Background(), "an SSH op", time.Minute, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("tryHold on a free lock: ran=%v err=%v", ran, err)
	}
}

// A config reload that changes a service starts a new worker; it shares the
// old worker's lock, so it cannot work on the checkout while an op of the old
// worker still runs there.
func TestReloadKeepsOneLockPerService(t *testing.T) {
	fake := newFakeDocker(t)
	g := newGitRepo(t)
	g.push(t, goodCompose)
	w, _ := testWorker(t, fake, g.bare)
	d := w.d
	d.locks["web"] = w.lock
	changed := *w.svc
	changed.Ports = []string{"8080"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	opRunning, opDone := make(chan struct{}), make(chan struct{})
	go w.serialize(ctx, func(context.Context) error { close(opRunning); <-opDone; return nil })
	<-opRunning
	d.apply(ctx, &Config{Services: []*Service{&changed}}, map[string]*account{"svc": w.acct})
	next := d.worker("web")
	if next == w || next.lock != w.lock {
		t.Fatalf("the new worker has a lock of its own (%p, old %p)", next.lock, w.lock)
	}
	if err := next.lock.tryHold(ctx, "test", 50*time.Millisecond, func() error { return nil }); err == nil {
		t.Fatal("the new worker got the lock while the old worker's op runs")
	}
	close(opDone)
	next.stop()
}

// State saves are ordered: whatever runs concurrently, the file on disk ends
// as the state in memory.
func TestUpdateSavesTheNewestState(t *testing.T) {
	fake := newFakeDocker(t)
	w, _ := testWorker(t, fake, newGitRepo(t).bare)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.update(func(s *savedState) {
				s.LastError = fmt.Sprint(len(s.LastError)+1) + strings.Repeat("x", len(s.LastError))
			})
		}()
	}
	wg.Wait()
	disk, err := loadState(w.state)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := w.snapshot(); disk.LastError != st.LastError {
		t.Fatalf("state on disk %q is older than in memory %q", disk.LastError, st.LastError)
	}
}

// Trust follows the uid that runs the project: uid 0 by any name is
// trusted (its policy only warns), a user called root that is not uid 0 is not.
func TestTrustIsDecidedByUID(t *testing.T) {
	fake := newFakeDocker(t)
	w, _ := testWorker(t, fake, newGitRepo(t).bare)
	w.svc.User, w.acct.UID = "root", 1000
	if w.renderRequest(w.checkout).Trusted || w.refuse(nil, "c1", []violation{{Msg: "privileged is not allowed"}}) == nil {
		t.Error("a non-zero uid named root is trusted")
	}
	w.svc.User, w.acct.UID = "toor", 0
	if !w.renderRequest(w.checkout).Trusted || w.refuse(nil, "c2", []violation{{Msg: "privileged is not allowed"}}) != nil {
		t.Error("uid 0 under another name has its policy enforced, but its commands run as root")
	}
}

// pgod never chowns through a mount at the data directory: under an NFS
// share's root_squash that fails and blocks the service.
func TestDataDirMountIsNotChowned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	fake := newFakeDocker(t)
	w, _ := testWorker(t, fake, newGitRepo(t).bare)
	os.MkdirAll(w.data, 0o755)
	if err := syscall.Mount("pgo-test", w.data, "tmpfs", 0, "mode=0755,uid=0,gid=0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(w.data, syscall.MNT_DETACH) })
	if err := w.ensureDirs(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(w.data)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Fatalf("the mounted data directory was chowned to uid %d", st.Uid)
	}
}

// A Caddy reload that never answers is cut off: the reload error is recorded
// and the caller goes on.
func TestCaddyReloadIsBounded(t *testing.T) {
	fake := newFakeDocker(t)
	w, _ := testWorker(t, fake, newGitRepo(t).bare)
	w.svc.Reload = "localhost:web//exec web caddy reload"
	w.deployed = []byte(`{"name":"web","services":{"web":{"image":"x"}}}`)
	hang := filepath.Join(fake.dir, "docker")
	os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { w.d.runReload(ctx, w); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a hanging reload was not cut off")
	}
	if st := w.status(); !strings.Contains(st.ReloadErr, "reload") {
		t.Fatalf("reload error not recorded: %+v", st)
	}
}

// A home where containers or commits write would let them plant a docker CLI
// plugin that pgod runs with the docker group: pgod refuses it.
func TestHomeInsideTeamDirectoriesIsRefused(t *testing.T) {
	root := t.TempDir()
	d := &Daemon{flags: &daemonFlags{dir: filepath.Join(root, "state"), datadir: filepath.Join(root, "data")}}
	for _, home := range []string{filepath.Join(root, "data", "web"), filepath.Join(root, "state", "web", "home")} {
		err := d.ensureHome(&account{Name: "svc", UID: 65534, GID: 65534, Home: home})
		if err == nil || !strings.Contains(err.Error(), "give the user a home elsewhere") {
			t.Errorf("home %s: err = %v, want a refusal with a hint", home, err)
		}
	}
	if err := d.ensureHome(&account{Name: "svc", UID: 65534, GID: 65534, Home: "/nonexistent"}); err != nil {
		t.Errorf("a user without a home: %v", err)
	}
}

// A deploy that fails, and the one that works after it,
// are told to the endpoints pgo.toml names, as they happen.
func TestWorkerTellsFailuresAndRecovery(t *testing.T) {
	got := make(chan map[string]any, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		json.NewDecoder(r.Body).Decode(&ev)
		got <- ev
	}))
	defer srv.Close()
	w, fake, g, _ := deployedWorker(t, goodCompose)
	defer w.d.notifier.close(context.Background())
	w.d.cfg.Notify = []*NotifyEndpoint{{Name: "ops", URL: srv.URL, Format: notifyJSON}}
	w.d.notifier.reload(w.d.cfg)

	broken := g.push(t, strings.Replace(goodCompose, "busybox:stable", "busybox:broken", 1))
	fake.fail(t, "up", true)
	w.sync(context.Background(), nil, false)
	want := func(kind, commit string) {
		t.Helper()
		select {
		case ev := <-got:
			if ev["event"] != kind || ev["commit"] != commit || ev["service"] != "web" {
				t.Fatalf("notification %v, want %s of %s", ev, kind, short(commit))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s notification", kind)
		}
	}
	want("failed", broken) // the fake fails the rollback's up too
	fake.fail(t, "up", false)
	fixed := g.push(t, strings.Replace(goodCompose, "busybox:stable", "busybox:fixed", 1))
	w.sync(context.Background(), nil, false)
	want("recovered", fixed)
}

// A commit whose container crashes after up is rolled back, health-gated,
// and the attempt records why with the container's last log lines.
func TestWorkerUnhealthyDeployRollsBack(t *testing.T) {
	w, fake, g, first := deployedWorker(t, goodCompose)
	ctx := context.Background()
	broken := g.push(t, strings.Replace(goodCompose, "1000", "3000", 1))
	os.WriteFile(filepath.Join(fake.dir, "inspect-once.txt"), []byte("/web-web-1\tweb\tbusybox:stable\texited\t\t0\t1\t2026-01-01T00:00:00Z\n"), 0o644)
	var out bytes.Buffer
	err := w.sync(ctx, &out, false)
	var outcome *deployError
	if !errors.As(err, &outcome) || outcome.status() != exitUnhealthy || !strings.Contains(outcome.msg, "rolled back to "+short(first)) {
		t.Fatalf("sync = %v, want an unhealthy deploy rolled back to %s\n%s", err, short(first), &out)
	}
	if got := strings.Join(fake.verbs(t), " "); !strings.HasPrefix(got, "pull up ps logs up ps") {
		t.Errorf("calls %q, want pull, up, the gate's look, the logs, the rollback's up and its look", got)
	}
	st := w.status()
	if st.Deployed != first || st.Attempt.Commit != broken || st.Attempt.Result != resultUnhealthy ||
		!strings.Contains(st.Attempt.Reason, "web-web-1 exited with status 1") {
		t.Fatalf("status after an unhealthy deploy: %+v", st)
	}
	if !strings.Contains(formatStatus(st, time.Now()), "last attempt: "+broken) {
		t.Errorf("status does not name the attempt:\n%s", formatStatus(st, time.Now()))
	}
	if head, _ := w.repo.head(ctx); head != first {
		t.Errorf("checkout at %s after the rollback, want %s", head, first)
	}
}

// What goes wrong with a service is logged at WARN, as clone errors are:
// a rejection and a failed deploy alike.
func TestWorkerFailuresLogAtWarn(t *testing.T) {
	w, fake, g, _ := deployedWorker(t, goodCompose)
	var logs bytes.Buffer
	w.log = newLogger(&logs, false).With("service", "web")
	bad := g.push(t, "services:\n  web:\n    image: busybox:stable\n    privileged: true\n")
	w.sync(context.Background(), nil, false)
	fake.fail(t, "up", true)
	broken := g.push(t, strings.Replace(goodCompose, "busybox:stable", "busybox:broken", 1))
	w.sync(context.Background(), nil, false)
	for _, want := range []string{"WARN [web] rejected " + short(bad), "WARN [web] deploy of " + short(broken) + " failed"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
