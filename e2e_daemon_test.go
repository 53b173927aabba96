//go:build e2e

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serviceTOML is one [[services]] table for a test service run by the e2e user.
func serviceTOML(name, repo string, extra ...string) string {
	s := fmt.Sprintf("[[services]]\nname = %q\nuser = %q\nrepository = %q\nbranch = \"main\"\n", name, e2eUser_, repo)
	for _, e := range extra {
		s += e + "\n"
	}
	return s
}

// newKey makes an ed25519 key pair and returns the private key's path.
func newKey(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	sh(t, dir, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", p)
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// ctl runs pgoctl against d and returns its stdout, stderr and exit code.
func (d *daemonProc) ctl(t *testing.T, key, target string, args ...string) (string, string, int) {
	t.Helper()
	_, port, _ := strings.Cut(d.sshAddr, ":")
	full := append([]string{"ctl", "-i", key, "-p", port, "--known-hosts", filepath.Join(filepath.Dir(d.config), "known_hosts"), "127.0.0.1:" + target}, args...)
	cmd := exec.Command(pgoBinary(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("pgoctl: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// pageIs waits until the project's web service serves want.
func pageIs(t *testing.T, project, want string, timeout time.Duration) {
	t.Helper()
	var got string
	waitFor(t, fmt.Sprintf("%s to serve %q", project, want), timeout, func() bool {
		got, _ = fetchPage(project)
		return got == want
	})
}

// deployedIs waits until pgod says commit is deployed: the page a new
// container serves shows before the health gate has passed.
func (d *daemonProc) deployedIs(t *testing.T, key, name, commit string, timeout time.Duration) {
	t.Helper()
	waitFor(t, name+" to have deployed "+short(commit), timeout, func() bool {
		out, _, code := d.ctl(t, key, name+"//git", "hash")
		return code == 0 && strings.TrimSpace(out) == commit
	})
}

// logShows waits until pgod's log holds s.
func (d *daemonProc) logShows(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	waitFor(t, "pgod to log "+s, timeout, func() bool { return strings.Contains(d.logs(), s) })
}

// TestE2EDaemonLifecycle follows one service through its life: first deploy,
// a change, a rejected commit, a failed pull, a failed up, drift, the stop
// marker, and its removal from the config.
func TestE2EDaemonLifecycle(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("life")
	up := newUpstream(t)
	first := up.commit(t, map[string]string{"compose.yaml": webCompose("one")})
	d := startDaemon(t, serviceTOML(name, up.bare))

	pageIs(t, name, "one", 60*time.Second)
	d.logShows(t, "deployed "+short(first), 10*time.Second)
	checkout := filepath.Join(d.dir, name)
	if fi, err := os.Stat(checkout); err != nil || fi.Sys() == nil {
		t.Fatalf("no checkout at %s", checkout)
	}

	// A change upstream is deployed within a poll or two.
	up.commit(t, map[string]string{"compose.yaml": webCompose("two")})
	pageIs(t, name, "two", 60*time.Second)
	id := containerID(t, name+"-web-1")

	// A commit the policy refuses leaves the running container alone.
	bad := up.commit(t, map[string]string{"compose.yaml": webCompose("three") + "    privileged: true\n"})
	d.logShows(t, "rejected "+short(bad), 30*time.Second)
	if got := containerID(t, name+"-web-1"); got != id {
		t.Fatalf("container replaced after a rejected commit: %s -> %s", id, got)
	}
	pageIs(t, name, "two", time.Second)
	if data := readFile(t, filepath.Join(checkout, "compose.yaml")); strings.Contains(data, "privileged") {
		t.Fatal("the rejected commit's files reached the checkout")
	}

	// An image that cannot be pulled changes nothing.
	missing := up.commit(t, map[string]string{"compose.yaml": strings.Replace(webCompose("four"), testImage, "pgo-test-missing:v1", 1)})
	d.logShows(t, "deploy of "+short(missing)+" failed", 60*time.Second)
	if got := containerID(t, name+"-web-1"); got != id {
		t.Fatalf("container replaced after a failed pull")
	}
	pageIs(t, name, "two", time.Second)

	// A commit whose up fails is rolled back to the last good one.
	broken := up.commit(t, map[string]string{"compose.yaml": strings.Replace(webCompose("five"), `command: ["sh", "-c",`, `command: ["/no/such/binary", "-c",`, 1)})
	d.logShows(t, "deploy of "+short(broken)+" failed, rolled back", 60*time.Second)
	pageIs(t, name, "two", 60*time.Second)

	// A good commit after all that deploys again.
	six := up.commit(t, map[string]string{"compose.yaml": webCompose("six")})
	pageIs(t, name, "six", 60*time.Second)
	d.logShows(t, "deployed "+short(six), 30*time.Second) // the health gate has passed

	// A container removed by hand comes back within a poll.
	sh(t, "", "docker", "rm", "-f", name+"-web-1")
	pageIs(t, name, "six", 60*time.Second)

	// The stop marker brings it down and keeps it down.
	os.WriteFile(filepath.Join(d.dir, name+".stop"), nil, 0o644)
	waitFor(t, "the service to go down", 30*time.Second, func() bool { return len(projectContainers(t, name)) == 0 })
	os.Remove(filepath.Join(d.dir, name+".stop"))
	pageIs(t, name, "six", 60*time.Second)

	// Removed from the config: brought down, checkout gone, data kept.
	data := filepath.Join(d.datadir, name)
	os.WriteFile(filepath.Join(data, "keep"), []byte("x"), 0o644)
	if err := os.WriteFile(d.config, []byte("# no services\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed service to go down", 30*time.Second, func() bool { return len(projectContainers(t, name)) == 0 })
	waitFor(t, "the checkout to be removed", 10*time.Second, func() bool { _, err := os.Stat(checkout); return err != nil })
	if _, err := os.Stat(filepath.Join(data, "keep")); err != nil {
		t.Fatalf("data directory not kept: %v", err)
	}
}

// TestE2EDaemonRejectedNeverStarts proves a project the policy refuses never
// starts a container, while a benign one beside it deploys.
func TestE2EDaemonRejectedNeverStarts(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	good, bad := uniqueName("benign"), uniqueName("evil")
	upGood, upBad := newUpstream(t), newUpstream(t)
	upGood.commit(t, map[string]string{"compose.yaml": webCompose("fine")})
	evil := upBad.commit(t, map[string]string{"compose.yaml": webCompose("evil") +
		"    volumes:\n      - /:/host\n    cap_add: [SYS_ADMIN]\n"})
	d := startDaemon(t, serviceTOML(good, upGood.bare)+serviceTOML(bad, upBad.bare))
	pageIs(t, good, "fine", 60*time.Second)
	d.logShows(t, "rejected "+short(evil), 30*time.Second)
	if c := projectContainers(t, bad); len(c) != 0 {
		t.Fatalf("a rejected project started containers: %v", c)
	}
}

// TestE2EDaemonReloadAddsService shows a config reload adding a service
// without touching the running one.
func TestE2EDaemonReloadAddsService(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	a, b := uniqueName("first"), uniqueName("second")
	upA, upB := newUpstream(t), newUpstream(t)
	upA.commit(t, map[string]string{"compose.yaml": webCompose("a")})
	upB.commit(t, map[string]string{"compose.yaml": webCompose("b")})
	d := startDaemon(t, serviceTOML(a, upA.bare))
	pageIs(t, a, "a", 60*time.Second)
	id := containerID(t, a+"-web-1")

	// An invalid config is refused and everything keeps running.
	os.WriteFile(d.config, []byte(serviceTOML(a, upA.bare)+"bogus = \n"), 0o600)
	d.cmd.Process.Signal(sighup)
	d.logShows(t, "config not reloaded", 10*time.Second)

	os.WriteFile(d.config, []byte(serviceTOML(a, upA.bare)+serviceTOML(b, upB.bare)), 0o600)
	d.cmd.Process.Signal(sighup)
	pageIs(t, b, "b", 60*time.Second)
	if got := containerID(t, a+"-web-1"); got != id {
		t.Fatalf("reload restarted the untouched service: %s -> %s", id, got)
	}

	// SIGTERM stops pgod, not the services.
	d.stop(t)
	for _, name := range []string{a, b} {
		if state := projectContainers(t, name)[name+"-web-1"]; state != "running" {
			t.Errorf("%s is %q after pgod stopped, want running", name, state)
		}
	}
}

// TestE2EDaemonUpstreamOutage shows an unreachable git server changing
// nothing, and the service recovering when it is back.
func TestE2EDaemonUpstreamOutage(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("outage")
	up := newUpstream(t)
	up.commit(t, map[string]string{"compose.yaml": webCompose("before")})
	d := startDaemon(t, serviceTOML(name, up.bare))
	pageIs(t, name, "before", 60*time.Second)
	id := containerID(t, name+"-web-1")

	hidden := up.bare + ".away"
	if err := os.Rename(up.bare, hidden); err != nil {
		t.Fatal(err)
	}
	d.logShows(t, "git ls-remote", 30*time.Second)
	if got := containerID(t, name+"-web-1"); got != id {
		t.Fatal("the outage touched the running container")
	}
	os.Rename(hidden, up.bare)
	up.commit(t, map[string]string{"compose.yaml": webCompose("after")})
	pageIs(t, name, "after", 30*time.Second)
}

// TestE2EDaemonKilledMidDeploy kills pgod right after it accepted a commit
// and before it deployed; restarted, it converges on that commit.
func TestE2EDaemonKilledMidDeploy(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("crash")
	up := newUpstream(t)
	up.commit(t, map[string]string{"compose.yaml": webCompose("old")})
	d := startDaemon(t, serviceTOML(name, up.bare))
	pageIs(t, name, "old", 60*time.Second)

	next := up.commit(t, map[string]string{"compose.yaml": webCompose("new")})
	d.logShows(t, "commit "+short(next)+" passed the policy", 30*time.Second)
	d.kill(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "ps", "-a", "--filter", "label=com.docker.compose.project="+name,
				"--format", "{{.Names}} {{.State}} {{.Status}} {{.Label \"com.docker.compose.config-hash\"}}").CombinedOutput()
			t.Logf("containers after the test:\n%s", out)
		}
	})
	d.start(t)
	pageIs(t, name, "new", 60*time.Second)
	d.logShows(t, "deployed "+short(next), 10*time.Second)
}
