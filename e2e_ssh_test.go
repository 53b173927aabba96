//go:build e2e

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2ESSHOps drives a deployed service through pgoctl and OpenSSH against
// the real daemon and engine: authorisation, ops, streaming and exit codes.
func TestE2ESSHOps(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	keys := openTempDir(t)
	team, other, stranger := newKey(t, keys, "team"), newKey(t, keys, "other"), newKey(t, keys, "stranger")
	a, b := uniqueName("ops"), uniqueName("neighbour")
	upA, upB := newUpstream(t), newUpstream(t)
	first := upA.commit(t, map[string]string{
		"compose.yaml":  webCompose("ops"),
		"ssh/team.pub":  readFile(t, team+".pub"),
		"ssh/other.pub": "",
	})
	upB.commit(t, map[string]string{"compose.yaml": webCompose("b"), "ssh/other.pub": readFile(t, other+".pub")})
	const secret = "ssh-e2e-secret-value" // in the docker CLI's environment, as every env entry
	d := startDaemon(t, serviceTOML(a, upA.bare, `env = ["PGOSSH_SECRET=`+secret+`"]`)+serviceTOML(b, upB.bare))
	pageIs(t, a, "ops", 60*time.Second)
	pageIs(t, b, "b", 60*time.Second)
	d.deployedIs(t, team, a, first, 30*time.Second)
	host, _ := os.Hostname()

	t.Run("ping", func(t *testing.T) {
		out, errOut, code := d.ctl(t, team, a+"//ping")
		if code != 0 || strings.TrimSpace(out) != "pong! - "+host {
			t.Fatalf("ping: code %d out %q err %q", code, out, errOut)
		}
	})
	t.Run("keys", func(t *testing.T) {
		for _, c := range []struct{ key, target string }{
			{other, a + "//ps"},    // another service's key
			{stranger, a + "//ps"}, // nobody's key
			{team, b + "//ps"},     // our key, their service
		} {
			_, errOut, code := d.ctl(t, c.key, c.target)
			if code == 0 {
				t.Errorf("%s with key %s succeeded", c.target, filepath.Base(c.key))
			}
			if strings.Contains(errOut, "NAME") || strings.Contains(errOut, b+"-web-1") {
				t.Errorf("refusal leaked output: %q", errOut)
			}
		}
	})
	t.Run("ps and hash", func(t *testing.T) {
		out, _, code := d.ctl(t, team, a+"//ps")
		if code != 0 || !strings.Contains(out, a+"-web-1") {
			t.Fatalf("ps: code %d, out %q", code, out)
		}
		out, _, _ = d.ctl(t, team, a+"//git", "hash")
		if !strings.Contains(out, first) {
			t.Fatalf("git hash %q, want %s", out, first)
		}
		out, _, code = d.ctl(t, team, a+"//status")
		if code != 0 || !strings.Contains(out, short(first)) {
			t.Fatalf("status: code %d out %q", code, out)
		}
	})
	t.Run("exec exit codes", func(t *testing.T) {
		out, _, code := d.ctl(t, team, a+"//exec", "web", "sh", "-c", "echo hi; exit 7")
		if code != 7 || strings.TrimSpace(out) != "hi" {
			t.Fatalf("exec: code %d out %q, want 7 and hi", code, out)
		}
	})
	t.Run("exec -e NAME", func(t *testing.T) {
		out, errOut, code := d.ctl(t, team, a+"//exec", "-e", "PGOSSH_SECRET", "web", "env")
		if code != exitBadRequest || strings.Contains(out+errOut, secret) {
			t.Fatalf("exec -e NAME: code %d out %q err %q; want a Bad Request and no secret", code, out, errOut)
		}
		out, errOut, code = d.ctl(t, team, a+"//exec", "-e", "PGOSSH_MINE=1", "web", "env")
		if code != 0 || !strings.Contains(out, "PGOSSH_MINE=1\n") || strings.Contains(out, secret) {
			t.Fatalf("exec -e NAME=VALUE: code %d out %q err %q", code, out, errOut)
		}
	})
	t.Run("refused flags", func(t *testing.T) {
		_, errOut, code := d.ctl(t, team, a+"//logs", "-p", "other")
		if code == 0 || !strings.Contains(errOut, "-p") {
			t.Fatalf("logs -p: code %d err %q", code, errOut)
		}
	})
	t.Run("openssh client", func(t *testing.T) {
		_, port, _ := strings.Cut(d.sshAddr, ":")
		out, err := exec.Command("ssh", "-p", port, "-i", team, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
			"anyone@127.0.0.1", a+"//ping").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "pong! - "+host {
			t.Fatalf("ssh ping: %v %q", err, out)
		}
	})
	t.Run("logs follow", func(t *testing.T) {
		_, port, _ := strings.Cut(d.sshAddr, ":")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := exec.CommandContext(ctx, pgoBinary(t), "ctl", "-i", team, "-p", port, "--known-hosts",
			filepath.Join(filepath.Dir(d.config), "known_hosts"), "127.0.0.1:"+a+"//logs", "-f", "--no-color")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
		sh(t, "", "docker", "exec", a+"-web-1", "sh", "-c", "echo "+marker+" > /proc/1/fd/1")
		deadline := time.After(20 * time.Second)
		for found := false; !found; {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("logs -f ended before the marker arrived")
				}
				found = strings.Contains(l, marker)
			case <-deadline:
				t.Fatal("marker written to the container's output did not arrive through logs -f")
			}
		}
		cancel()
		cmd.Wait()
		// The server side ends too: no "compose logs -f" of this project is left running.
		waitFor(t, "compose logs to end after the client left", 10*time.Second, func() bool {
			out, _ := exec.Command("pgrep", "-f", "compose -p "+a+" .*logs").Output()
			return len(strings.TrimSpace(string(out))) == 0
		})
	})
	t.Run("stop start restart pull check", func(t *testing.T) {
		id := containerID(t, a+"-web-1")
		// No registry is reachable here: pull must reach compose, which fails
		// with its own message and status.
		if _, errOut, code := d.ctl(t, team, a+"//pull"); code == 0 || !strings.Contains(errOut, "web Pulling") {
			t.Fatalf("pull: code %d, err %q; want compose's own failure", code, errOut)
		}
		for _, op := range []string{"stop", "start", "restart", "check", "load"} {
			out, errOut, code := d.ctl(t, team, a+"//"+op)
			if code != 0 {
				t.Fatalf("%s: code %d out %q err %q", op, code, out, errOut)
			}
		}
		if got := containerID(t, a+"-web-1"); got != id {
			t.Errorf("stop/start/restart replaced the container")
		}
		pageIs(t, a, "ops", 20*time.Second)
		out, _, _ := d.ctl(t, team, a+"//check")
		if !strings.Contains(out, "ok") {
			t.Errorf("check of a clean checkout said %q", out)
		}
	})
	t.Run("git pull", func(t *testing.T) {
		next := upA.commit(t, map[string]string{"compose.yaml": webCompose("pulled")})
		out, errOut, code := d.ctl(t, team, a+"//git", "pull")
		if code != 0 || !strings.Contains(out+errOut, short(next)) {
			t.Fatalf("git pull: code %d out %q err %q", code, out, errOut)
		}
		pageIs(t, a, "pulled", 20*time.Second)
		upA.commit(t, map[string]string{"compose.yaml": webCompose("ops")})
		d.ctl(t, team, a+"//git", "pull")
		pageIs(t, a, "ops", 20*time.Second)
	})
	t.Run("exec -it in a terminal", func(t *testing.T) {
		if _, err := exec.LookPath("tmux"); err != nil {
			t.Skip("needs tmux to drive a terminal")
		}
		_, port, _ := strings.Cut(d.sshAddr, ":")
		session := uniqueName("pgoe2e")
		ctl := fmt.Sprintf("%s ctl -i %s -p %s --known-hosts %s 127.0.0.1:%s//exec -it web sh; echo EXIT:$?; sleep 60",
			pgoBinary(t), team, port, filepath.Join(filepath.Dir(d.config), "known_hosts"), a)
		sh(t, "", "tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", ctl)
		t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", session).Run() })
		pane := func() string {
			out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", session).Output()
			return string(out)
		}
		waitFor(t, "a shell prompt in the container", 20*time.Second, func() bool { return strings.Contains(pane(), "#") })
		sh(t, "", "tmux", "send-keys", "-t", session, "echo pty-$((6*7)); tty", "Enter")
		waitFor(t, "the command's output through the PTY", 10*time.Second, func() bool {
			p := pane()
			return strings.Contains(p, "pty-42") && strings.Contains(p, "/dev/pts/")
		})
		sh(t, "", "tmux", "send-keys", "-t", session, "exit 5", "Enter")
		waitFor(t, "pgoctl to end with the shell's status", 10*time.Second, func() bool { return strings.Contains(pane(), "EXIT:5") })
	})
	t.Run("down and up", func(t *testing.T) {
		if _, errOut, code := d.ctl(t, team, a+"//down"); code != 0 {
			t.Fatalf("down: %d %s", code, errOut)
		}
		if _, err := os.Stat(filepath.Join(d.dir, a+".stop")); err != nil {
			t.Fatal("down did not set the stop marker")
		}
		waitFor(t, "containers gone", 20*time.Second, func() bool { return len(projectContainers(t, a)) == 0 })
		if _, errOut, code := d.ctl(t, team, a+"//up"); code != 0 {
			t.Fatalf("up: %d %s", code, errOut)
		}
		pageIs(t, a, "ops", 30*time.Second)
	})
	t.Run("key options", func(t *testing.T) {
		teamKey := readFile(t, team+".pub")
		upA.commit(t, map[string]string{
			"ssh/team.pub":  `from="127.0.0.2" ` + teamKey,
			"ssh/other.pub": `command="/bin/true" ` + readFile(t, other+".pub"),
		})
		waitFor(t, "from= to refuse 127.0.0.1", 30*time.Second, func() bool {
			_, _, code := d.ctl(t, team, a+"//ping")
			return code != 0
		})
		_, port, _ := strings.Cut(d.sshAddr, ":")
		out, err := exec.Command("ssh", "-p", port, "-i", team, "-b", "127.0.0.2", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
			"anyone@127.0.0.1", a+"//ping").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "pong! - "+host {
			t.Fatalf("ping from the address from= lists: %v %q", err, out)
		}
		d.logShows(t, "ssh/other.pub:1: key skipped, option command is not supported", 10*time.Second)
		if _, _, code := d.ctl(t, other, a+"//ping"); code != exitUnauthorized {
			t.Errorf("a key with command= drives the service: code %d", code)
		}
		upA.commit(t, map[string]string{"ssh/team.pub": teamKey, "ssh/other.pub": ""})
		waitFor(t, "the plain key to work again", 30*time.Second, func() bool {
			_, _, code := d.ctl(t, team, a+"//ping")
			return code == 0
		})
	})
	t.Run("removed key", func(t *testing.T) {
		upA.commit(t, map[string]string{"ssh/team.pub": "", "ssh/other.pub": readFile(t, other+".pub")})
		waitFor(t, "the removed key to stop working", 30*time.Second, func() bool {
			_, _, code := d.ctl(t, team, a+"//ping")
			return code != 0
		})
		if _, _, code := d.ctl(t, other, a+"//ping"); code != 0 {
			t.Fatal("the newly committed key does not work")
		}
	})
}
