//go:build e2e

package main

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tokenCompose serves the value of TOKEN, which compose interpolates from
// the committed secrets; the shell in the container reads it from its
// environment, so it is on no command line, in the container or outside.
func tokenCompose() string {
	return `services:
  web:
    image: ` + testImage + `
    command: ["sh", "-c", "mkdir -p /srv && echo \"$$TOKEN\" > /srv/index.html && exec httpd -f -p 8080 -h /srv"]
    environment:
      TOKEN: ${TOKEN}
    restart: unless-stopped
    stop_grace_period: 1s
`
}

// TestE2ESecrets follows a team through committed secrets: it asks pgod for
// its recipient, commits a secrets.env.age encrypted to it, and the
// container sees the value, which is on no command line during the deploy
// and in nothing pgod prints or the service's user can read. A file for
// another host and a tampered one are rejected while the old page serves;
// a rotation deploys the new value.
func TestE2ESecrets(t *testing.T) {
	e2eNeed(t)
	needAge(t)
	e2eUser(t)
	name := uniqueName("sealed")
	up := newUpstream(t)
	d, team, _ := deployDaemon(t, name, up, map[string]string{"compose.yaml": webCompose("plain")})
	pageIs(t, name, "plain", 30*time.Second)

	// Step one of the team's workflow: the recipient is the host key.
	out, errOut, code := d.ctl(t, team, name+"//recipient")
	recipient := strings.TrimSpace(out)
	hostKey := strings.Fields(sh(t, "", "ssh-keygen", "-y", "-f", filepath.Join(d.dir, ".pgo", "ssh_host_ed25519_key")))
	if code != 0 || !strings.HasPrefix(recipient, hostKey[0]+" "+hostKey[1]+" pgod@") {
		t.Fatalf("recipient: exit %d, %q %q; the host key is %q", code, out, errOut, hostKey)
	}

	first, second := randomToken(), randomToken()
	watch := watchCmdlines(t, first, second)
	sealed := ageEncrypt(t, "# the shop's\nTOKEN="+first+"\n", true, recipient, otherRecipient(t))
	withSecrets := up.commit(t, map[string]string{"compose.yaml": tokenCompose(), secretsFile: string(sealed)})
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("git pull of the secrets: exit %d: %s", code, errOut)
	}
	pageIs(t, name, first, 10*time.Second)
	d.deployedIs(t, team, name, withSecrets, 10*time.Second)

	// pgo check, as the team's CI runs it, reads the file without a key.
	check := exec.Command(pgoBinary(t), "check", "-s", name, up.work)
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "secrets.env.age: well-formed age file (armored), 2 recipients, 2 of them ssh-ed25519") {
		t.Errorf("pgo check: %v\n%s", err, out)
	}

	// Refused: a file for another host only, and a tampered one. What ran stays.
	for _, tc := range []struct {
		name, reason string
		file         []byte
	}{
		{"another host", "secrets.env.age: no identity matched (encrypted for another host?)", ageEncrypt(t, "TOKEN=for-another-host\n", false, otherRecipient(t))},
		{"tampered", "secrets.env.age: the file is corrupt or was tampered with", func() []byte {
			b := ageEncrypt(t, "TOKEN="+second+"\n", false, recipient)
			b[len(b)-4] ^= 0x01
			return b
		}()},
	} {
		bad := up.commit(t, map[string]string{secretsFile: string(tc.file)})
		code, errOut := d.pull(t, team, name)
		if code != exitRejected || !strings.Contains(errOut, "rejected "+short(bad)) || !strings.Contains(errOut, tc.reason) {
			t.Errorf("%s: exit %d, %q; want %d and %q", tc.name, code, errOut, exitRejected, tc.reason)
		}
		pageIs(t, name, first, time.Second)
		d.deployedIs(t, team, name, withSecrets, time.Second)
	}

	// A rotation: diff names the key, never a value, and the new value deploys.
	rotation := up.commit(t, map[string]string{secretsFile: string(ageEncrypt(t, "TOKEN="+second+"\n", false, recipient))})
	out, errOut, code = d.ctl(t, team, name+"//diff")
	if code != 0 || !strings.Contains(out, "~TOKEN") || !strings.Contains(out, "passes the policy") {
		t.Errorf("diff of the rotation: exit %d\n%s%s", code, out, errOut)
	}
	printed := out + errOut
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("git pull of the rotation: exit %d: %s", code, errOut)
	}
	pageIs(t, name, second, 10*time.Second)
	d.deployedIs(t, team, name, rotation, 10*time.Second)

	watch.check(t)
	for _, op := range []string{"status", "history", "diff", "check"} {
		out, errOut, _ := d.ctl(t, team, name+"//"+op)
		printed += out + errOut
	}
	printed += metricsText(t, d) + d.logs()
	for _, token := range []string{first, second} {
		if strings.Contains(printed, token) {
			t.Errorf("a value is in pgod's log, an op's output or the metrics:\n%s", printed)
		}
	}
	// The rendered project holds the value, root's alone; the service's user
	// finds it in nothing it can read of pgod's state, its data or its home.
	state := (statePaths{filepath.Join(d.dir, ".pgo", name)}).validated()
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 || !strings.Contains(readFile(t, state), second) {
		t.Fatalf("the rendered project %s: %v, %v", state, fi, err)
	}
	if found := readableBy(t, e2eUser_, second, d.dir, d.datadir); found != "" {
		t.Errorf("the service's user can read the value in:\n%s", found)
	}
}

// readableBy lists the files under dirs that user can read and that hold
// s. grep runs as user; s comes from a file, not its command line, and
// that file, which user can read, must be found too: else grep proved nothing.
func readableBy(t *testing.T, name, s string, dirs ...string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	patterns := filepath.Join(openTempDir(t), "patterns")
	if err := os.WriteFile(patterns, []byte(s+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("grep", append([]string{"-rlsF", "-f", patterns, "--", patterns}, dirs...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Run() // exit 2 for the directories it may not enter; what it found is on stdout
	found, ok := strings.CutPrefix(stdout.String(), patterns+"\n")
	if !ok {
		t.Fatalf("grep as %s did not find the value in its own pattern file: %q", name, stdout.String())
	}
	return found
}
