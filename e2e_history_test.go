//go:build e2e

package main

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestE2EHistoryRollbackFreeze follows a team through its own ops: history
// persisted across a restart of pgod, diff of a pending head, freeze (the
// head is judged, not deployed), rollback to an earlier commit, unfreeze,
// and a read-only key that may look but not touch, over pgoctl and OpenSSH.
func TestE2EHistoryRollbackFreeze(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("hist")
	up := newUpstream(t)
	keys := openTempDir(t)
	oncall := newKey(t, keys, "oncall")
	d, team, first := deployDaemon(t, name, up, map[string]string{"compose.yaml": webCompose("one"),
		"ssh/ro/oncall.pub": readFile(t, oncall+".pub")})
	pageIs(t, name, "one", 30*time.Second)

	second := up.commit(t, map[string]string{"compose.yaml": webCompose("two")})
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("git pull of the second commit: exit %d: %s", code, errOut)
	}
	pageIs(t, name, "two", 10*time.Second)

	// History names both deploys, newest first, and outlives pgod.
	d.stop(t)
	d.start(t, "-t", "1h")
	waitFor(t, "pgod to answer again", 30*time.Second, func() bool {
		_, _, code := d.ctl(t, team, name+"//ping")
		return code == 0
	})
	out, errOut, code := d.ctl(t, oncall, name+"//history")
	if code != 0 || !strings.Contains(out, short(second)) || strings.Index(out, short(second)) > strings.Index(out, short(first)) ||
		!strings.Contains(out, "git pull by ssh/team.pub:1") {
		t.Fatalf("history after a restart: exit %d\n%s%s", code, out, errOut)
	}

	// Frozen, a new head is fetched and judged but not deployed.
	if out, errOut, code := d.ctl(t, team, name+"//freeze", "release", "freeze"); code != 0 || !strings.Contains(out, "frozen") {
		t.Fatalf("freeze: exit %d\n%s%s", code, out, errOut)
	}
	third := up.commit(t, map[string]string{"compose.yaml": strings.Replace(webCompose("three"), "web:", "web:\n    environment:\n      TOKEN: hidden-value-3", 1)})
	out, errOut, code = d.ctl(t, team, name+"//git", "pull")
	if code != exitFrozen || !strings.Contains(errOut, "frozen") {
		t.Fatalf("git pull of a frozen service: exit %d, want %d\n%s%s", code, exitFrozen, out, errOut)
	}
	pageIs(t, name, "two", time.Second)
	st, _, _ := d.ctl(t, oncall, name+"//status")
	if !strings.Contains(st, "release freeze") || !strings.Contains(st, "waiting:") || !strings.Contains(st, third) {
		t.Errorf("status of a frozen service:\n%s", st)
	}
	if m := metricsText(t, d); !strings.Contains(m, `pgo_service_frozen{service="`+name+`"} 1`) {
		t.Errorf("metrics do not say the service is frozen")
	}

	// diff says what the head would change, never a value of its environment.
	out, errOut, code = d.ctl(t, oncall, name+"//diff")
	if code != 0 || !strings.Contains(out, "~ web") || !strings.Contains(out, "+TOKEN") || strings.Contains(out, "hidden-value-3") ||
		!strings.Contains(out, "passes the policy") {
		t.Errorf("diff: exit %d\n%s%s", code, out, errOut)
	}

	// A read-only key may look, not touch: over pgoctl and over OpenSSH.
	for _, op := range []string{"git pull", "unfreeze", "rollback " + short(first), "restart", "exec web true"} {
		words := strings.Fields(op)
		_, errOut, code := d.ctl(t, oncall, name+"//"+words[0], words[1:]...)
		if code != exitUnauthorized || !strings.Contains(errOut, "read-only") {
			t.Errorf("%s with a read-only key: exit %d, %q; want %d", op, code, errOut, exitUnauthorized)
		}
	}
	if out, err := d.openssh(oncall, name+"//down"); exitCode(err) != exitUnauthorized || !strings.Contains(string(out), "read-only") {
		t.Errorf("OpenSSH down with a read-only key: %v %q", err, out)
	}
	if out, err := d.openssh(oncall, name+"//ps"); err != nil || !strings.Contains(string(out), name+"-web-1") {
		t.Errorf("OpenSSH ps with a read-only key: %v %q", err, out)
	}

	// Rollback goes to the first commit, health-gated, and stays frozen there.
	out, errOut, code = d.ctl(t, team, name+"//rollback", short(first))
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s%s", code, out, errOut)
	}
	pageIs(t, name, "one", 10*time.Second)
	d.deployedIs(t, team, name, first, 10*time.Second)
	if _, errOut, code := d.ctl(t, team, name+"//rollback", "ffff"); code != exitNotFound {
		t.Errorf("rollback to a commit that never deployed: exit %d %q", code, errOut)
	}
	if _, errOut, code := d.ctl(t, team, name+"//rollback", short(third)); code != exitNotFound || !strings.Contains(errOut, "no commit") {
		t.Errorf("rollback to the head that never deployed: exit %d %q", code, errOut)
	}

	// Unfrozen, the head deploys.
	if out, errOut, code := d.ctl(t, team, name+"//unfreeze"); code != 0 {
		t.Fatalf("unfreeze: exit %d\n%s%s", code, out, errOut)
	}
	pageIs(t, name, "three", 30*time.Second)
	d.deployedIs(t, team, name, third, 30*time.Second)
	out, _, _ = d.ctl(t, team, name+"//history", "3")
	if !strings.Contains(out, "rollback by ssh/team.pub:1") || !strings.Contains(out, "unfreeze") {
		t.Errorf("history after rollback and unfreeze:\n%s", out)
	}
}

// TestE2ESignedCommits: with signed_commits, a commit signed by a key of
// the deployed commit's ssh/ deploys; an unsigned one and one signed by a
// removed key are rejected while the old containers run on; a signed
// commit rotates the signers.
func TestE2ESignedCommits(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("signed")
	up := newUpstream(t)
	keys := openTempDir(t)
	alice, bob := newKey(t, keys, "alice"), newKey(t, keys, "bob")
	team := newKey(t, keys, "team")
	sign := func(key string) {
		sh(t, up.work, "git", "config", "gpg.format", "ssh")
		sh(t, up.work, "git", "config", "user.signingkey", key)
		sh(t, up.work, "git", "config", "commit.gpgsign", "true")
	}
	unsigned := func() { sh(t, up.work, "git", "config", "commit.gpgsign", "false") }

	sign(alice)
	first := up.commit(t, map[string]string{"compose.yaml": webCompose("one"),
		"ssh/team.pub": readFile(t, team+".pub"), "ssh/alice.pub": readFile(t, alice+".pub")})
	d := startDaemon(t, serviceTOML(name, up.bare, `health_timeout = "8s"`, `signed_commits = true`,
		`signers = ["`+strings.TrimSpace(readFile(t, alice+".pub"))+`"]`), "-t", "1h")
	d.logShows(t, "deployed "+short(first), 90*time.Second)
	id := containerID(t, name+"-web-1")

	// Unsigned: rejected, what runs stays.
	unsigned()
	bad := up.commit(t, map[string]string{"compose.yaml": webCompose("unsigned")})
	if code, errOut := d.pull(t, team, name); code != exitRejected || !strings.Contains(errOut, "not signed") {
		t.Fatalf("unsigned commit: exit %d %q; want %d", code, errOut, exitRejected)
	}
	if got := containerID(t, name+"-web-1"); got != id {
		t.Fatalf("the container was replaced after an unsigned commit")
	}
	if st, _, _ := d.ctl(t, team, name+"//status"); !strings.Contains(st, "rejected:    "+bad) {
		t.Errorf("status after an unsigned commit:\n%s", st)
	}
	if out, _, _ := d.ctl(t, team, name+"//history"); !strings.Contains(out, "not signed") {
		t.Errorf("history after an unsigned commit:\n%s", out)
	}

	// Signed by bob, not (yet) a signer: rejected.
	sign(bob)
	up.commit(t, map[string]string{"compose.yaml": webCompose("bob")})
	if code, errOut := d.pull(t, team, name); code != exitRejected || !strings.Contains(errOut, "not a key under ssh/") {
		t.Fatalf("commit by a foreign key: exit %d %q", code, errOut)
	}

	// Alice adds bob and removes herself, in a commit she signs.
	sign(alice)
	rotation := up.commit(t, map[string]string{"compose.yaml": webCompose("rotated"),
		"ssh/alice.pub": "", "ssh/bob.pub": readFile(t, bob+".pub")})
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("signer rotation signed by alice: exit %d %q", code, errOut)
	}
	pageIs(t, name, "rotated", 10*time.Second)
	d.deployedIs(t, team, name, rotation, 10*time.Second)

	// Now alice is a removed key and bob signs.
	id = containerID(t, name+"-web-1")
	up.commit(t, map[string]string{"compose.yaml": webCompose("alice again")})
	if code, errOut := d.pull(t, team, name); code != exitRejected {
		t.Fatalf("commit by the removed key: exit %d %q", code, errOut)
	}
	if got := containerID(t, name+"-web-1"); got != id {
		t.Fatalf("the container was replaced after a commit by a removed key")
	}
	sign(bob)
	byBob := up.commit(t, map[string]string{"compose.yaml": webCompose("bob signs")})
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("commit by the new signer: exit %d %q", code, errOut)
	}
	d.deployedIs(t, team, name, byBob, 10*time.Second)
	if m := metricsText(t, d); !strings.Contains(m, `pgo_deploys_total{service="`+name+`",result="rejected"} 3`) {
		t.Errorf("metrics do not count the three rejected commits")
	}
}

// openssh runs command on d with stock OpenSSH and key, and returns its output.
func (d *daemonProc) openssh(key, command string) ([]byte, error) {
	_, port, _ := strings.Cut(d.sshAddr, ":")
	return exec.Command("ssh", "-p", port, "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"anyone@127.0.0.1", command).CombinedOutput()
}

func metricsText(t *testing.T, d *daemonProc) string {
	t.Helper()
	resp, err := http.Get("http://" + d.metric + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
