//go:build e2e

package main

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestE2EGitPullOnAStalledServerAnswers: the git server accepts a poll's
// ls-remote and then stalls. A CI step's git pull must get an answer (busy,
// saying what holds the service) within seconds, not wait behind the poll.
func TestE2EGitPullOnAStalledServerAnswers(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("busy")
	keys := openTempDir(t)
	team := newKey(t, keys, "team")
	up := newUpstream(t)
	up.commit(t, map[string]string{"compose.yaml": webCompose("one"), "ssh/team.pub": readFile(t, team+".pub")})

	var stalled atomic.Bool
	var blocked atomic.Int64
	release := make(chan struct{})
	srv := newGitHTTPServer(t, filepath.Dir(up.bare), "oauth2", "tok", func() {
		if stalled.Load() {
			blocked.Add(1)
			<-release
		}
	})
	// After the server's own cleanup is registered, so it runs first: the
	// server's Close waits for the requests held here.
	t.Cleanup(func() { close(release) })
	d := startDaemon(t, serviceTOML(name, "http://oauth2:tok@"+srv.host+"/"+filepath.Base(up.bare)), "-t", "1s")
	pageIs(t, name, "one", 60*time.Second)

	stalled.Store(true)
	waitFor(t, "a poll to hang on the stalled server", 30*time.Second, func() bool { return blocked.Load() > 0 })

	_, port, _ := strings.Cut(d.sshAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgoBinary(t), "ctl", "-i", team, "-p", port,
		"--known-hosts", filepath.Join(filepath.Dir(d.config), "known_hosts"), "127.0.0.1:"+name+"//git pull")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("git pull did not answer while the git server stalls:\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitBusy || !strings.Contains(string(out), "busy: poll") {
		t.Fatalf("git pull on a busy service: %v\n%s\nwant exit %d and a busy answer naming the poll", err, out, exitBusy)
	}
}
