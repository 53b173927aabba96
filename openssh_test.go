package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestOpenSSHClient: stock ssh(1) drives pgod's server the same way pgoctl does.
func TestOpenSSHClient(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no ssh client installed")
	}
	dir := t.TempDir()
	key, keyFile, _ := newKeyFile(t, dir, "id")
	_, strangerFile, _ := newKeyFile(t, dir, "stranger")
	svc := newFakeService("web", key.PublicKey())
	svc.dockerScripts["exec"] = `case "$*" in *-t*) tty; read x; echo "got $x";; *) echo out; echo err >&2; exit 3;; esac`
	ts := startSSH(t, newFakeCtl(svc), nil)
	known := writeFile(t, dir, "known_hosts", knownhosts.Line([]string{ts.addr}, ts.hostKey.PublicKey())+"\n")

	openssh := func(keyFile string, stdin string, extra ...string) (string, string, int) {
		args := []string{"-F", "/dev/null", "-p", port(t, ts.addr), "-i", keyFile,
			"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile=" + known, "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"}
		args = append(args, extra...)
		cmd := exec.Command(sshBin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		cmd.WaitDelay = 5 * time.Second
		timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		defer timer.Stop()
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("ssh: %v", err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}

	if out, stderr, status := openssh(keyFile, "", "127.0.0.1", "web//ps"); out != "compose ps\n" || status != 0 {
		t.Errorf("ps: %q, %q, status %d", out, stderr, status)
	}
	if out, stderr, status := openssh(keyFile, "", "127.0.0.1", "web//exec app true"); out != "out\n" || stderr != "err\n" || status != 3 {
		t.Errorf("exec: %q, %q, status %d; want out, err, 3", out, stderr, status)
	}
	if _, stderr, status := openssh(keyFile, "", "127.0.0.1", "web//logs -p x"); status != exitBadRequest ||
		!strings.Contains(stderr, `Bad Request: flag "-p" is not allowed for logs`) {
		t.Errorf("refused flag: %q, status %d", stderr, status)
	}
	if _, stderr, status := openssh(keyFile, "", "127.0.0.1", "db//ps"); status != exitUnauthorized || !strings.Contains(stderr, "Unauthorized: ") {
		t.Errorf("other service: %q, status %d", stderr, status)
	}
	if _, stderr, status := openssh(strangerFile, "", "127.0.0.1", "web//ps"); status != 255 || !strings.Contains(stderr, "Permission denied (publickey)") {
		t.Errorf("stranger's key: %q, status %d", stderr, status)
	}
	// No command means a shell, which pgod does not have.
	if _, stderr, status := openssh(keyFile, "", "-T", "127.0.0.1"); status == 0 || !strings.Contains(stderr, "Bad Request: pgod runs ops, not a shell") {
		t.Errorf("shell: %q, status %d", stderr, status)
	}
	// -tt gets a PTY on the server for exec -it.
	out, stderr, status := openssh(keyFile, "hello\n", "-tt", "127.0.0.1", "web//exec -it app sh")
	if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "got hello") || status != 0 {
		t.Errorf("exec -it over ssh -tt: %q, %q, status %d", out, stderr, status)
	}
}

// TestExecInteractive drives "pgoctl host:web//exec -it app sh" in a real
// terminal (tmux): the op runs on a PTY, keys go through raw, window size
// changes arrive, and the remote exit status is pgoctl's.
func TestExecInteractive(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("no tmux installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pgoctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	key, keyFile, _ := newKeyFile(t, dir, "id")
	svc := newFakeService("web", key.PublicKey())
	svc.dockerScripts["exec"] = `tty; stty size; while read x; do stty size; echo "got $x"; [ "$x" = q ] && exit 7; done`
	ts := startSSH(t, newFakeCtl(svc), nil)

	sock := filepath.Join(dir, "tmux.sock")
	tm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	command := "PGOCTL_HOSTKEY=" + ssh.FingerprintSHA256(ts.hostKey.PublicKey()) + " " + bin + " -i " + keyFile +
		" -p " + port(t, ts.addr) + " --known-hosts " + filepath.Join(dir, "kh") + " 127.0.0.1:web//exec -it app sh; echo EXIT=$?; sleep 60"
	tm("new-session", "-d", "-x", "80", "-y", "24", command)
	t.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	tm("set-option", "-g", "status", "off")

	screen := func() string { return tm("capture-pane", "-p", "-J") }
	waitFor := func(what string, poke func()) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s := screen()
			if strings.Contains(s, what) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q on the screen within 10s:\n%s", what, s)
			}
			if poke != nil {
				poke()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("/dev/pts/", nil)
	tm("send-keys", "hello", "Enter")
	s := waitFor("got hello", nil)
	// Raw mode: the remote PTY echoes, the local terminal does not, so the line shows once.
	if n := countLines(s, "hello"); n != 1 {
		t.Errorf("typed line shows %d times, want once (local terminal not raw?):\n%s", n, s)
	}
	tm("resize-window", "-x", "100", "-y", "30")
	size := strings.TrimSpace(tm("display-message", "-p", "#{pane_height} #{pane_width}"))
	waitFor(size+"\n", func() { tm("send-keys", "x", "Enter") })
	tm("send-keys", "q", "Enter")
	waitFor("EXIT=7", nil)
}

// TestOpenPTY: the PTY pair works both ways and takes a window size.
func TestOpenPTY(t *testing.T) {
	master, slave, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	if !isTerminal(slave) || !isTerminal(master) {
		t.Errorf("pty ends are not terminals")
	}
	if err := setWinSize(master, winSize{cols: 132, rows: 43}); err != nil {
		t.Fatal(err)
	}
	if ws, err := getWinSize(slave); err != nil || ws != (winSize{cols: 132, rows: 43}) {
		t.Errorf("slave size %+v, %v; want 132x43", ws, err)
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Errorf("a plain file is a terminal")
	}
}

// countLines counts the lines of s that are exactly line.
func countLines(s, line string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			n++
		}
	}
	return n
}

// TestRunInPTYAsUser: the command runs as the service's user on a terminal
// that user owns, in a session of its own, and its exit status comes back.
func TestRunInPTYAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	nobody := &account{Name: "nobody", UID: 65534, GID: 65534, Home: "/"}
	cmd := nobody.command(context.Background(), []string{"PATH=/usr/bin:/bin"}, "sh", "-c",
		`echo "uid $(id -u) owner $(stat -c %u "$(tty)") sid $(ps -o sid= -p $$ | tr -d ' ') pid $$"; exit 5`)
	var out bytes.Buffer
	o := &opRun{stdout: &out, pty: &ptyRequest{term: "xterm", size: winSize{cols: 80, rows: 24}}}
	err := runInPTY(cmd, o)
	if !errors.Is(err, exitStatus(5)) {
		t.Errorf("exit: %v, want exit status 5", err)
	}
	var uid, owner, sid, pid string
	if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), "uid %s owner %s sid %s pid %s", &uid, &owner, &sid, &pid); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	if uid != "65534" || owner != "65534" || sid != pid {
		t.Errorf("uid %s, terminal owner %s, session %s of pid %s; want 65534, 65534 and its own session", uid, owner, sid, pid)
	}
}

// TestOpenSSHPingDuringFlood: stock ssh(1) gets its pong, every time,
// within a second, while 200 silent connections, 50 stalled after their
// banner and waves of 50 failing logins come from other addresses.
func TestOpenSSHPingDuringFlood(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no ssh client installed")
	}
	if testing.Short() {
		t.Skip("floods take a while")
	}
	dir := t.TempDir()
	key, keyFile, _ := newKeyFile(t, dir, "id")
	ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey())), nil)
	known := writeFile(t, dir, "known_hosts", knownhosts.Line([]string{ts.addr}, ts.hostKey.PublicKey())+"\n")

	f := startFlood(t)
	f.holdConns(ts.addr, 200, 20, "")
	f.holdConns(ts.addr, 50, 5, "SSH-2.0-flood\r\n")
	f.failLogins(ts.addr, ts.hostKey.PublicKey(), newTestKey(t), 50, 5)
	waitLong(t, "the flood to be on", 30*time.Second, func() bool { return f.dialed.Load() >= 350 })

	pingsSucceed(t, "ssh(1) during a flood", 30, func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, sshBin, "-F", "/dev/null", "-p", port(t, ts.addr), "-i", keyFile, "-b", "127.0.0.1",
			"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile="+known, "-o", "LogLevel=ERROR", "127.0.0.1", "web//ping")
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("no pong within %s", pingTimeout)
		case err != nil:
			return fmt.Errorf("%v: %s", err, out)
		case !strings.HasPrefix(string(out), "pong! - "):
			return fmt.Errorf("answer %q", out)
		}
		return nil
	})
}
