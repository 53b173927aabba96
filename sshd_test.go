package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testServer is a running sshServer on loopback.
type testServer struct {
	addr    string
	hostKey ssh.Signer
	srv     *sshServer
	logs    *syncBuffer
}

// startSSH serves ctl on a loopback port until the test ends; tune may change limits first.
func startSSH(t *testing.T, ctl controller, tune func(*sshLimits)) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	return startSSHWith(t, ctl, tune, logs, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
}

// startSSHWith is startSSH with the server's logger (writing to logs) and metrics.
func startSSHWith(t *testing.T, ctl controller, tune func(*sshLimits), logs *syncBuffer, log *slog.Logger, m *metrics) *testServer {
	t.Helper()
	hostKey := newTestKey(t)
	srv := newSSHServer(ctl, hostKey, log, m)
	if tune != nil {
		tune(&srv.limits)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not return after its context ended")
		}
	})
	return &testServer{addr: ln.Addr().String(), hostKey: hostKey, srv: srv, logs: logs}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// dial connects with key, verifying the server's host key.
func (ts *testServer) dial(t *testing.T, key ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	cfg := &ssh.ClientConfig{
		User:            "anyone",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(ts.hostKey.PublicKey()),
		Timeout:         5 * time.Second,
	}
	c, err := ssh.Dial("tcp", ts.addr, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (ts *testServer) mustDial(t *testing.T, key ssh.Signer) *ssh.Client {
	t.Helper()
	c, err := ts.dial(t, key)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// run runs command in a new session and returns its output and exit status.
func runSSH(t *testing.T, c *ssh.Client, command string) (stdout, stderr string, status int) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	err = sess.Run(command)
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		status = ee.ExitStatus()
	default:
		t.Fatalf("%s: %v", command, err)
	}
	return out.String(), errOut.String(), status
}

func TestSSHOps(t *testing.T) {
	key := newTestKey(t)
	tests := []struct {
		command    string
		stdout     string // exact
		stderr     string // substring; "" means stderr must be empty
		status     int
		call       []string // the compose or docker call the op made, if any
		serialized bool
	}{
		{command: "web//up", stdout: "up: deployed\n", call: []string{"up"}, serialized: true},
		{command: "web//down", stdout: "down: stopped, marker set\n", call: []string{"down"}, serialized: true},
		{command: "web//stop -t 5 app", stdout: "compose stop --timeout=5 -- app\n", call: []string{"compose", "stop", "--timeout=5", "--", "app"}, serialized: true},
		{command: "web//start", stdout: "compose start\n", call: []string{"compose", "start"}, serialized: true},
		{command: "web//restart --no-deps app db", stdout: "compose restart --no-deps -- app db\n", call: []string{"compose", "restart", "--no-deps", "--", "app", "db"}, serialized: true},
		{command: "web//pull -q", stdout: "compose pull --quiet\n", call: []string{"compose", "pull", "--quiet"}, serialized: true},
		{command: "web//ps -a --format json", stdout: "compose ps --all --format=json\n", call: []string{"compose", "ps", "--all", "--format=json"}},
		{command: "web//logs -ft --tail=10 --since 5m --no-color app", stdout: "compose logs --follow --timestamps --tail=10 --since=5m --no-color -- app\n",
			call: []string{"compose", "logs", "--follow", "--timestamps", "--tail=10", "--since=5m", "--no-color", "--", "app"}},
		{command: "web//logs -n5 --since -5m", stdout: "compose logs --tail=5 --since=-5m\n", call: []string{"compose", "logs", "--tail=5", "--since=-5m"}},
		{command: "web//git pull", stdout: "git pull: already up to date\n", call: []string{"git pull"}, serialized: true},
		{command: "web//git hash", stdout: "3f2a1c9d\n"},
		{command: "web//check", stdout: "compose.yaml: ok\n", call: []string{"check"}},
		{command: "web//load", stdout: "compose.yaml: ok\n", call: []string{"check"}},
		{command: "web//ping", stdout: "pong! - " + mustHostname(t) + "\n"},
		{command: "web//exec -u nobody -w /tmp -e A=1 app sh -c 'echo \"a b\"'", stdout: "docker exec --user=nobody --workdir=/tmp --env=A=1 0123456789ab sh -c echo \"a b\"\n",
			call: []string{"docker", "exec", "--user=nobody", "--workdir=/tmp", "--env=A=1", "0123456789ab", "sh", "-c", `echo "a b"`}},
		{command: "web//exec -T app ls -l", stdout: "docker exec 0123456789ab ls -l\n", call: []string{"docker", "exec", "0123456789ab", "ls", "-l"}},
		// Refused: the flag is named, nothing runs.
		{command: "web//logs -p other", stderr: `Bad Request: flag "-p" is not allowed for logs` + "\n", status: exitBadRequest},
		{command: "web//ps -f x.yaml", stderr: `Bad Request: flag "-f" is not allowed for ps`, status: exitBadRequest},
		{command: "web//stop ../x", stderr: `Bad Request: "../x" is not a compose service name`, status: exitBadRequest},
		{command: "web//ps --project-directory /", stderr: `Bad Request: flag "--project-directory" is not allowed for ps`, status: exitBadRequest},
		{command: "web//up --env-file /etc/shadow", stderr: `Bad Request: flag "--env-file" is not allowed for up`, status: exitBadRequest},
		{command: "web//pull --profile x", stderr: `Bad Request: flag "--profile" is not allowed for pull`, status: exitBadRequest},
		{command: "web//ps --format '{{.ID}}'", stderr: `Bad Request: flag "--format"`, status: exitBadRequest},
		{command: "web//restart -p x", stderr: `Bad Request: flag "-p" is not allowed for restart`, status: exitBadRequest},
		{command: "web//logs --tail", stderr: `Bad Request: flag "--tail" needs a value`, status: exitBadRequest},
		{command: "web//logs --tail lots", stderr: `Bad Request: flag "--tail": "lots" is not a non-negative number`, status: exitBadRequest},
		{command: "web//exec --privileged app sh", stderr: `Bad Request: flag "--privileged" is not allowed for exec`, status: exitBadRequest},
		{command: "web//exec app", stderr: "Bad Request: exec needs a service and a command", status: exitBadRequest},
		{command: "web//up now", stderr: `Bad Request: up takes no arguments, got "now"`, status: exitBadRequest},
		{command: "web//frob", stderr: `Not Found: no op "frob"`, status: exitNotFound},
		{command: "web//git push", stderr: `Not Found: no op "git push"`, status: exitNotFound},
		{command: "web", stderr: "Bad Request: command must look like NAME//OP", status: exitBadRequest},
		{command: "Web//ps", stderr: `Bad Request: "Web" is not a valid service name`, status: exitBadRequest},
		{command: "web//logs 'unterminated", stderr: "Bad Request: unterminated single quote", status: exitBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.command, func(t *testing.T) {
			svc := newFakeService("web", key.PublicKey())
			svc.checkOK = true
			svc.st.Deployed = "3f2a1c9d"
			ts := startSSH(t, newFakeCtl(svc), nil)
			stdout, stderr, status := runSSH(t, ts.mustDial(t, key), tc.command)
			if stdout != tc.stdout {
				t.Errorf("stdout = %q, want %q", stdout, tc.stdout)
			}
			if tc.stderr == "" && stderr != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr = %q, want %q", stderr, tc.stderr)
			}
			if status != tc.status {
				t.Errorf("exit status = %d, want %d", status, tc.status)
			}
			calls, serialized := svc.recorded()
			if tc.call == nil {
				for _, c := range calls {
					if c[0] != "docker" || c[1] != "ps" {
						t.Errorf("unexpected call %q", c)
					}
				}
			} else if last := calls[len(calls)-1]; strings.Join(last, " ") != strings.Join(tc.call, " ") {
				t.Errorf("call = %q, want %q", last, tc.call)
			}
			if (serialized > 0) != tc.serialized {
				t.Errorf("ran inside serialize: %v, want %v", serialized > 0, tc.serialized)
			}
		})
	}
}

func mustHostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSSHExecOutputAndExitCode(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.dockerScripts["exec"] = `echo out; echo err >&2; exit 3`
	ts := startSSH(t, newFakeCtl(svc), nil)
	stdout, stderr, status := runSSH(t, ts.mustDial(t, key), "web//exec app true")
	if stdout != "out\n" || stderr != "err\n" || status != 3 {
		t.Errorf("got stdout %q, stderr %q, status %d; want \"out\\n\", \"err\\n\", 3", stdout, stderr, status)
	}
	logs := ts.logs.String()
	for _, want := range []string{"service=web", "key=" + ssh.FingerprintSHA256(key.PublicKey()), "from=127.0.0.1:", "op=exec", "exit=3", "duration="} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestSSHExecStdin(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.dockerScripts["exec"] = `read x; echo "got $x"`
	ts := startSSH(t, newFakeCtl(svc), nil)
	sess, err := ts.mustDial(t, key).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	sess.Stdin = strings.NewReader("hello\n")
	out, err := sess.Output("web//exec -i app cat")
	if err != nil || string(out) != "got hello\n" {
		t.Errorf("exec -i: %q, %v; want \"got hello\\n\"", out, err)
	}
}

func TestSSHExecNoContainer(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.dockerScripts["ps"] = `true`
	ts := startSSH(t, newFakeCtl(svc), nil)
	_, stderr, status := runSSH(t, ts.mustDial(t, key), "web//exec app sh")
	if status != exitNotFound || !strings.Contains(stderr, `Not Found: service "app" has no running container`) {
		t.Errorf("got %q, status %d", stderr, status)
	}
}

func TestSSHStatus(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.st = serviceStatus{Name: "web", Branch: "main", Deployed: "aaaa", Upstream: "bbbb", LastResult: resultRejected,
		Rejected: "bbbb", Rejection: []string{`service "app": privileged is not allowed`}, Stopped: true, Running: 0, Desired: 2,
		LastSync: time.Now().Add(-time.Minute)}
	ts := startSSH(t, newFakeCtl(svc), nil)
	stdout, _, status := runSSH(t, ts.mustDial(t, key), "web//status")
	for _, want := range []string{"branch:      main", "deployed:    aaaa", "upstream:    bbbb", "rejected:    bbbb",
		`  - service "app": privileged is not allowed`, "stopped:     yes", "containers:  0 running of 2 desired", "(1m0s ago)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
	if status != 0 {
		t.Errorf("status %d", status)
	}
}

func TestSSHFailingOps(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.upErr = errors.New("compose up: exit status 1")
	ts := startSSH(t, newFakeCtl(svc), nil)
	c := ts.mustDial(t, key)
	if _, stderr, status := runSSH(t, c, "web//up"); status != 1 || stderr != "Error: compose up: exit status 1\n" {
		t.Errorf("up: %q, status %d", stderr, status)
	}
	if stdout, _, status := runSSH(t, c, "web//check"); status != 1 || !strings.Contains(stdout, "privileged is not allowed") {
		t.Errorf("check: %q, status %d", stdout, status)
	}
	if _, stderr, status := runSSH(t, c, "web//git hash"); status != exitNotFound || !strings.Contains(stderr, "Not Found: service \"web\" has no deployed commit") {
		t.Errorf("git hash: %q, status %d", stderr, status)
	}
}

func TestSSHAuthorization(t *testing.T) {
	webKey, dbKey, strangerKey := newTestKey(t), newTestKey(t), newTestKey(t)
	web, db := newFakeService("web", webKey.PublicKey()), newFakeService("db", dbKey.PublicKey())
	ts := startSSH(t, newFakeCtl(web, db), nil)

	// A key no service lists does not get past the handshake.
	if _, err := ts.dial(t, strangerKey); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("stranger's key: %v, want refused at the handshake", err)
	}
	// No key at all: nothing to offer.
	cfg := &ssh.ClientConfig{User: "x", HostKeyCallback: ssh.FixedHostKey(ts.hostKey.PublicKey()), Timeout: 5 * time.Second,
		Auth: []ssh.AuthMethod{ssh.Password("hunter2")}}
	if _, err := ssh.Dial("tcp", ts.addr, cfg); err == nil {
		t.Errorf("password authentication succeeded")
	}

	c := ts.mustDial(t, dbKey)
	// Another service's key: refused, in the same words as a service that does not exist.
	_, stderr, status := runSSH(t, c, "web//ps")
	want := `Unauthorized: key ` + ssh.FingerprintSHA256(dbKey.PublicKey()) + ` is not allowed for service "web"` + "\n"
	if stderr != want || status != exitUnauthorized {
		t.Errorf("db key on web: %q, status %d; want %q, %d", stderr, status, want, exitUnauthorized)
	}
	_, stderr, status = runSSH(t, c, "nosuch//ps")
	want = `Unauthorized: key ` + ssh.FingerprintSHA256(dbKey.PublicKey()) + ` is not allowed for service "nosuch"` + "\n"
	if stderr != want || status != exitUnauthorized {
		t.Errorf("unknown service: %q, status %d; want %q, %d", stderr, status, want, exitUnauthorized)
	}
	// Unauthorized wins over bad arguments: no hint about the service's ops.
	if _, stderr, _ = runSSH(t, c, "web//logs -p x"); !strings.HasPrefix(stderr, "Unauthorized: ") {
		t.Errorf("bad request on a foreign service answered %q", stderr)
	}
	if calls, _ := web.recorded(); len(calls) != 0 {
		t.Errorf("web ran %q for db's key", calls)
	}
	if out, _, status := runSSH(t, c, "db//ping"); !strings.HasPrefix(out, "pong! - ") || status != 0 {
		t.Errorf("own service: %q, status %d", out, status)
	}

	// The key is removed from db's repository: the open connection's next op is refused ...
	db.setKeys()
	if _, stderr, status := runSSH(t, c, "db//ping"); status != exitUnauthorized || !strings.HasPrefix(stderr, "Unauthorized: ") {
		t.Errorf("removed key, open connection: %q, status %d", stderr, status)
	}
	// ... and a new connection does not get in.
	if _, err := ts.dial(t, dbKey); err == nil {
		t.Errorf("removed key still gets past the handshake")
	}
}

// TestSSHLogsFollowStreamsAndEnds proves that output arrives while the op
// runs, and that the process group is gone once the client disconnects.
func TestSSHLogsFollowStreamsAndEnds(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	pidFile := filepath.Join(t.TempDir(), "pid")
	svc.composeScripts["logs"] = `echo $$ > ` + pidFile + `; i=0; while :; do echo "line $i"; i=$((i+1)); sleep 0.05; done`
	ts := startSSH(t, newFakeCtl(svc), nil)
	c := ts.mustDial(t, key)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("web//logs -f"); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, out, 3, 5*time.Second)
	if lines[0] != "line 0" || lines[2] != "line 2" {
		t.Errorf("got %q", lines)
	}
	pid := readPid(t, pidFile)
	if !processGroupAlive(pid) {
		t.Fatalf("logs -f process %d not running while lines arrive", pid)
	}
	c.Close() // the client hangs up
	waitGone(t, pid)
}

func TestSSHSignalEndsOp(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	pidFile := filepath.Join(t.TempDir(), "pid")
	svc.composeScripts["logs"] = `echo $$ > ` + pidFile + `; echo started; while :; do sleep 0.05; done`
	ts := startSSH(t, newFakeCtl(svc), nil)
	sess, err := ts.mustDial(t, key).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := sess.StdoutPipe()
	if err := sess.Start("web//logs -f"); err != nil {
		t.Fatal(err)
	}
	readLines(t, out, 1, 5*time.Second)
	pid := readPid(t, pidFile)
	if err := sess.Signal(ssh.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = sess.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 130 {
		t.Errorf("after SIGINT: %v, want exit status 130", err)
	}
	waitGone(t, pid)
}

func readLines(t *testing.T, r io.Reader, n int, timeout time.Duration) []string {
	t.Helper()
	got := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(r)
		for len(lines) < n && sc.Scan() {
			lines = append(lines, sc.Text())
		}
		got <- lines
	}()
	select {
	case lines := <-got:
		if len(lines) < n {
			t.Fatalf("got %d lines, want %d: %q", len(lines), n, lines)
		}
		return lines
	case <-time.After(timeout):
		t.Fatalf("no %d lines within %s", n, timeout)
	}
	return nil
}

func readPid(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(file)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && perr == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", file)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGroupAlive reports whether any process is left in the group pgid.
func processGroupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

// waitGone waits until the process group led by pid has ended.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for processGroupAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still running 5s after the client left", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSSHRefusesShellSubsystemAndForwarding(t *testing.T) {
	key := newTestKey(t)
	ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey())), nil)
	c := ts.mustDial(t, key)

	sess, _ := c.NewSession()
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	var ee *ssh.ExitError
	if err := sess.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != exitBadRequest || !strings.HasPrefix(stderr.String(), "Bad Request: pgod runs ops, not a shell") {
		t.Errorf("shell: %v, %q; want exit %d and a Bad Request", err, stderr.String(), exitBadRequest)
	}
	sess.Close()
	sess, _ = c.NewSession()
	if err := sess.RequestSubsystem("sftp"); err == nil {
		t.Errorf("sftp subsystem accepted")
	}
	sess.Close()
	if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil {
		t.Errorf("direct-tcpip (local port forwarding) accepted")
	}
	if ln, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
		t.Errorf("tcpip-forward (remote port forwarding) accepted")
	}
	sess, _ = c.NewSession()
	if ok, err := sess.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
		t.Errorf("agent forwarding: %v, %v", ok, err)
	}
	sess.Close()
	// The connection is still usable.
	if out, _, status := runSSH(t, c, "web//ping"); status != 0 || !strings.HasPrefix(out, "pong!") {
		t.Errorf("ping after refusals: %q %d", out, status)
	}
}

func TestSSHSessionCap(t *testing.T) {
	key := newTestKey(t)
	ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey())), func(l *sshLimits) { l.sessions = 3 })
	c := ts.mustDial(t, key)
	var open []*ssh.Session
	for range 3 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatalf("session %d: %v", len(open)+1, err)
		}
		open = append(open, s)
	}
	if _, err := c.NewSession(); err == nil {
		t.Fatalf("fourth session accepted with a cap of three")
	}
	open[0].Close()
	// The freed slot is usable again once the server has seen the close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := c.NewSession()
		if err == nil {
			s.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after one closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSSHHandshakeDeadline(t *testing.T) {
	ts := startSSH(t, newFakeCtl(), func(l *sshLimits) { l.handshake = 200 * time.Millisecond })
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The server's version line arrives, then, as we say nothing, the end.
	_, err = io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("silent connection still open after 5s with a 200ms handshake deadline")
	}
}

func TestSSHIdleTimeout(t *testing.T) {
	key := newTestKey(t)
	ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey())), func(l *sshLimits) {
		l.idle = 200 * time.Millisecond
		l.keepalive = 50 * time.Millisecond
	})
	c := ts.mustDial(t, key)
	closed := make(chan struct{})
	go func() { c.Wait(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection still open after 5s with a 200ms idle timeout")
	}
}

// TestSSHKeepaliveDoesNotEndStreams: a quiet "logs -f" outlives the idle timeout.
func TestSSHKeepaliveDoesNotEndStreams(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.composeScripts["logs"] = `echo first; sleep 1; echo second`
	ts := startSSH(t, newFakeCtl(svc), func(l *sshLimits) {
		l.idle = 100 * time.Millisecond
		l.keepalive = 20 * time.Millisecond
	})
	out, _, status := runSSH(t, ts.mustDial(t, key), "web//logs -f")
	if out != "first\nsecond\n" || status != 0 {
		t.Errorf("got %q, status %d", out, status)
	}
}

func TestLoadOrCreateHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".pgo", "ssh_host_ed25519_key")
	first, err := loadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if first.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("host key type %s, want ed25519", first.PublicKey().Type())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	again, err := loadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.PublicKey().Marshal(), again.PublicKey().Marshal()) {
		t.Errorf("second start made a new host key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateHostKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable host key: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := loadOrCreateHostKey(bad); err == nil {
		t.Errorf("garbage host key accepted")
	}
}

func TestSSHConnectionCap(t *testing.T) {
	key := newTestKey(t)
	ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey())), func(l *sshLimits) { l.authenticated = 2 })
	first, second := ts.mustDial(t, key), ts.mustDial(t, key)
	// A ping on each proves the server counts both before the third comes:
	// the client's handshake can end before the server's does.
	for _, c := range []*ssh.Client{first, second} {
		if out, _, status := runSSH(t, c, "web//ping"); status != 0 || !strings.HasPrefix(out, "pong!") {
			t.Errorf("connection within the cap: %q, %d", out, status)
		}
	}
	third := ts.mustDial(t, key) // the handshake completes, then the server hangs up
	if _, err := third.NewSession(); err == nil {
		t.Errorf("third connection got a session with a cap of two")
	}
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := ts.dial(t, key)
		if err == nil {
			if _, _, status := runSSHMaybe(c, "web//ping"); status == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection after one of two closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runSSHMaybe is runSSH for a connection that may be gone: status -1 then.
func runSSHMaybe(c *ssh.Client, command string) (string, string, int) {
	sess, err := c.NewSession()
	if err != nil {
		return "", "", -1
	}
	defer sess.Close()
	out, err := sess.Output(command)
	if err != nil {
		return "", "", -1
	}
	return string(out), "", 0
}

// TestHandshakeAdmissionQuiet: while less than half the table is taken, one
// source (a CI fleet behind one address) may open more than its cap.
func TestHandshakeAdmissionQuiet(t *testing.T) {
	p := newHandshakes(sshLimits{unauthenticated: 8, unauthenticatedPerSource: 2, grace: time.Second})
	now := time.Unix(1_000_000, 0)
	for i := range 5 {
		ok, _ := p.admit(&handshakeConn{source: "ci", start: now}, now)
		if want := i < 4; ok != want {
			t.Fatalf("handshake %d of one source on a table of 8: admitted %v, want %v", i+1, ok, want)
		}
	}
	if ok, _ := p.admit(&handshakeConn{source: "other", start: now}, now); !ok {
		t.Fatal("another source was refused while the table had room")
	}
}

// TestHandshakeAdmission walks the handshake table through a flood: the
// per-source cap, pushing out the handshake stalled longest but never one
// stalled for less than grace, and a source's first handshake getting in
// while the table is full of fresh ones.
func TestHandshakeAdmission(t *testing.T) {
	p := newHandshakes(sshLimits{unauthenticated: 4, unauthenticatedPerSource: 2, grace: time.Second})
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	conn := func(source string, start time.Duration) *handshakeConn {
		return &handshakeConn{source: source, start: at(start)}
	}
	admit := func(c *handshakeConn, now time.Duration, wantOK bool, wantPushed *handshakeConn) {
		t.Helper()
		ok, pushed := p.admit(c, at(now))
		if ok != wantOK || pushed != wantPushed {
			t.Fatalf("admit %s at %s: %v, pushed %v; want %v, pushed %v", c.source, now, ok, name(pushed), wantOK, name(wantPushed))
		}
	}
	a1, a2, a3 := conn("a", 0), conn("a", 0), conn("a", 0)
	admit(a1, 0, true, nil)
	admit(a2, 0, true, nil)
	admit(a3, 0, false, nil) // a's cap
	b1, b2 := conn("b", 10*time.Millisecond), conn("b", 10*time.Millisecond)
	admit(b1, 10*time.Millisecond, true, nil)
	admit(b2, 10*time.Millisecond, true, nil)
	// Full of fresh handshakes: c's first gets in all the same, its second does not.
	c1, c2 := conn("c", 20*time.Millisecond), conn("c", 30*time.Millisecond)
	admit(c1, 20*time.Millisecond, true, nil)
	admit(c2, 30*time.Millisecond, false, nil)

	// a1's client spoke lately, b2's a while ago: a2, silent from the start, goes first.
	a1.heard.Store(at(1200 * time.Millisecond).UnixNano())
	b2.heard.Store(at(500 * time.Millisecond).UnixNano())
	now := 1500 * time.Millisecond
	d1, e1, f1, g1 := conn("d", now), conn("e", now), conn("f", now), conn("g", now)
	admit(d1, now, true, a2)
	admit(e1, now, true, b1)
	admit(f1, now+time.Millisecond, true, c1)
	admit(g1, now+2*time.Millisecond, true, b2)
	// Left: a1 (spoke 0.3s ago) and d1..g1, a few milliseconds old: none is pushed out.
	h1, h2 := conn("h", now), conn("h", now)
	admit(h1, now+3*time.Millisecond, true, nil)
	admit(h2, now+3*time.Millisecond, false, nil)
	// First handshakes of new sources get in up to twice the cap.
	admit(conn("i", now), now+4*time.Millisecond, true, nil)
	admit(conn("j", now), now+4*time.Millisecond, true, nil)
	admit(conn("k", now), now+4*time.Millisecond, false, nil)

	for _, c := range []*handshakeConn{a1, d1, e1, f1, g1, h1} {
		p.remove(c)
	}
	p.remove(a2) // pushed out already: no double count
	if len(p.conns) != 2 || p.bySource["a"] != 0 {
		t.Errorf("after removal: %d left, %d of a; want 2 and 0", len(p.conns), p.bySource["a"])
	}
}

func name(c *handshakeConn) string {
	if c == nil {
		return "nil"
	}
	return c.source + "@" + c.start.Format("05.000")
}

// TestHandshakeUnreadIsNotStalled: a client whose bytes the server has not
// read yet (the server is behind, not the client) is not pushed out as stalled.
func TestHandshakeUnreadIsNotStalled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func(banner string) *handshakeConn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if banner != "" {
			io.WriteString(c, banner)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		return newHandshakeConn(sc, time.Now().Add(-time.Minute))
	}
	spoke, silent := accept("SSH-2.0-OpenSSH_9.2\r\n"), accept("")
	waitUntil(t, "the client's banner to arrive", spoke.unread)
	if silent.unread() {
		t.Fatal("a silent client has bytes waiting")
	}
	p := newHandshakes(sshLimits{unauthenticated: 2, unauthenticatedPerSource: 10, grace: time.Second})
	p.admit(spoke, time.Now())
	p.admit(silent, time.Now())
	newcomer := newHandshakeConn(silent.Conn, time.Now())
	newcomer.source = "elsewhere"
	if _, pushed := p.admit(newcomer, time.Now()); pushed != silent {
		t.Errorf("pushed out %v, want the silent one", name(pushed))
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitLong(t, what, 5*time.Second, cond)
}

func waitLong(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClientAdmission: the caps per source and per key, and at the overall
// cap the connection idle longest is pushed out, counting a session that
// never started an op as idle once grace is over, and never one running an
// op or younger than grace.
func TestClientAdmission(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	cl := func(source, key string, start time.Duration) *client {
		return &client{source: source, key: key, activity: newActivity(at(start))}
	}
	var cs *clients
	admit := func(c *client, now time.Duration, wantPushed *client, wantErr string) {
		t.Helper()
		pushed, err := cs.admit(c, at(now))
		if pushed != wantPushed || (err == nil) != (wantErr == "") || err != nil && !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("admit %s/%s at %s: pushed %p, %v; want %p, %q", c.source, c.key, now, pushed, err, wantPushed, wantErr)
		}
	}
	limits := sshLimits{authenticated: 4, authenticatedPerSource: 2, authenticatedPerKey: 2, grace: time.Second}

	cs = newClients(limits)
	admit(cl("a", "k1", 0), 0, nil, "")
	admit(cl("a", "k2", 0), 0, nil, "")
	admit(cl("a", "k3", 0), 0, nil, "2 connections from a already")
	admit(cl("b", "k1", 0), 0, nil, "")
	admit(cl("c", "k1", 0), 0, nil, "2 connections with this key already")

	cs = newClients(limits)
	busy, noExec, recent, fresh := cl("a", "k1", 0), cl("b", "k2", 0), cl("c", "k3", 0), cl("d", "k4", 9500*time.Millisecond)
	busy.activity.openSession(10, at(0))
	busy.activity.startOp()
	for range 10 { // sessions that never start an op
		noExec.activity.openSession(10, at(time.Millisecond))
	}
	recent.activity.startOp()
	recent.activity.endOp(at(8 * time.Second))
	for _, c := range []*client{busy, noExec, recent, fresh} {
		admit(c, c.activity.since.Sub(t0), nil, "")
	}
	now := 10 * time.Second
	admit(cl("e", "k5", now), now, noExec, "") // idle 10s
	admit(cl("f", "k6", now), now, recent, "") // idle 2s
	// busy runs an op, fresh and the newcomers are younger than grace.
	admit(cl("g", "k7", now), now, nil, "4 connections already, none idle")
	if !cs.all[busy] || !cs.all[fresh] || cs.all[noExec] || cs.all[recent] || len(cs.all) != 4 {
		t.Errorf("left: busy %v, fresh %v, noExec %v, recent %v, %d in all", cs.all[busy], cs.all[fresh], cs.all[noExec], cs.all[recent], len(cs.all))
	}
	cs.remove(busy)
	cs.remove(noExec) // pushed out already: no double count
	if len(cs.all) != 3 || cs.bySource["a"] != 0 || cs.byKey["k2"] != 0 {
		t.Errorf("after removal: %d left, %+v, %+v", len(cs.all), cs.bySource, cs.byKey)
	}
}

// floodSource is the i-th loopback address a flood comes from; the
// measured clients come from 127.0.0.1, which is none of them.
func floodSource(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250) }

func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", addr)
}

// flood runs attackers against a server until stopped; every loop is
// bounded by the context, and each attacker pauses before it tries again.
type flood struct {
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	dialed atomic.Int64 // connections opened, for "the flood is on"
}

func startFlood(t *testing.T) *flood {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	f := &flood{ctx: ctx, stop: cancel}
	t.Cleanup(func() { f.stop(); f.wg.Wait() })
	return f
}

// holdConns keeps n connections from sources open, each sending banner
// ("" for none) and then nothing, and opens another when pgod closes one.
func (f *flood) holdConns(addr string, n, sources int, banner string) {
	for i := range n {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for f.ctx.Err() == nil {
				if c, err := dialFrom(floodSource(i%sources), addr); err == nil {
					f.dialed.Add(1)
					if banner != "" {
						io.WriteString(c, banner)
					}
					stop := context.AfterFunc(f.ctx, func() { c.Close() })
					io.Copy(io.Discard, c) // until pgod, or the end of the flood, closes it
					stop()
					c.Close()
				}
				sleepCtx(f.ctx, 100*time.Millisecond)
			}
		}()
	}
}

// failLogins logs in with key, which no service lists, in waves of wave
// connections from sources.
func (f *flood) failLogins(addr string, hostKey ssh.PublicKey, key ssh.Signer, wave, sources int) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(hostKey)}
		for f.ctx.Err() == nil {
			var wg sync.WaitGroup
			for i := range wave {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := dialFrom(floodSource(i%sources), addr)
					if err != nil {
						return
					}
					defer c.Close()
					f.dialed.Add(1)
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if sc, _, _, err := ssh.NewClientConn(c, addr, cfg); err == nil {
						sc.Close()
					}
				}()
			}
			wg.Wait()
			sleepCtx(f.ctx, 50*time.Millisecond)
		}
	}()
}

// holdSessions logs in with key conns times from sources and opens as many
// sessions as it may on each, never starting an op, and holds them; dialed
// counts the connections that got their sessions or were turned away.
func (f *flood) holdSessions(t *testing.T, addr string, hostKey ssh.PublicKey, key ssh.Signer, conns, sources int) {
	cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: 5 * time.Second}
	for i := range conns {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			settled := sync.OnceFunc(func() { f.dialed.Add(1) }) // holding its sessions, or turned away
			defer settled()
			c, err := dialFrom(floodSource(i%sources), addr)
			if err != nil {
				return
			}
			defer c.Close()
			sc, chans, reqs, err := ssh.NewClientConn(c, addr, cfg)
			if err != nil {
				return
			}
			client := ssh.NewClient(sc, chans, reqs)
			defer client.Close()
			for range defaultSSHLimits.sessions {
				if _, err := client.NewSession(); err != nil {
					return
				}
			}
			settled()
			<-f.ctx.Done()
		}()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// pingTimeout is how long one ping from a fresh client may take during a flood.
const pingTimeout = time.Second

// measurePings pings n times, one after the other, each from a fresh
// connection within pingTimeout, and returns the durations or the first failure.
func measurePings(n int, ping func(ctx context.Context) error) ([]time.Duration, error) {
	var took []time.Duration
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		start := time.Now()
		err := ping(ctx)
		cancel()
		if err != nil {
			return took, fmt.Errorf("ping %d of %d after %s: %v", i+1, n, time.Since(start).Round(time.Millisecond), err)
		}
		took = append(took, time.Since(start))
	}
	return took, nil
}

// pingsSucceed asserts that every one of n pings succeeds within
// pingTimeout. On a loaded machine a whole measurement may be unlucky:
// it is tried a second time, never more.
func pingsSucceed(t *testing.T, what string, n int, ping func(ctx context.Context) error) {
	t.Helper()
	took, err := measurePings(n, ping)
	if err != nil {
		t.Logf("%s: %v; measuring again", what, err)
		took, err = measurePings(n, ping)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	slices.Sort(took)
	t.Logf("%s: %d pings, p50 %s, max %s", what, n, took[n/2].Round(time.Millisecond), took[n-1].Round(time.Millisecond))
}

// goPing pings the service from 127.0.0.1 with x/crypto/ssh.
func (ts *testServer) goPing(key ssh.Signer) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(ts.hostKey.PublicKey())}
		c, err := dialFrom("127.0.0.1", ts.addr)
		if err != nil {
			return err
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		sc, chans, reqs, err := ssh.NewClientConn(c, ts.addr, cfg)
		if err != nil {
			return err
		}
		client := ssh.NewClient(sc, chans, reqs)
		defer client.Close()
		sess, err := client.NewSession()
		if err != nil {
			return err
		}
		out, err := sess.Output("web//ping")
		if err == nil && !strings.HasPrefix(string(out), "pong! - ") {
			err = fmt.Errorf("answer %q", out)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no pong within %s", pingTimeout)
		}
		return err
	}
}

// TestSSHFloods: during each kind of flood a fresh client still gets its
// pong, every time, within a second.
func TestSSHFloods(t *testing.T) {
	if testing.Short() {
		t.Skip("floods take a while")
	}
	key, stranger, hog := newTestKey(t), newTestKey(t), newTestKey(t)
	tests := []struct {
		name  string
		tune  func(*sshLimits)
		start func(f *flood, ts *testServer)
		on    int64 // connections the flood has opened once it is on
	}{
		{"200 silent connections", nil, func(f *flood, ts *testServer) { f.holdConns(ts.addr, 200, 20, "") }, 200},
		{"50 stalled after the banner", nil, func(f *flood, ts *testServer) { f.holdConns(ts.addr, 50, 5, "SSH-2.0-flood\r\n") }, 50},
		{"waves of 50 failing logins", nil, func(f *flood, ts *testServer) {
			f.failLogins(ts.addr, ts.hostKey.PublicKey(), stranger, 50, 5)
		}, 100},
		// Fewer slots than the default 512, so the hog can fill them all in a test.
		{"one key holding sessions without an exec", func(l *sshLimits) { l.authenticated = 64 }, func(f *flood, ts *testServer) {
			f.holdSessions(t, ts.addr, ts.hostKey.PublicKey(), hog, 100, 10)
		}, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey(), hog.PublicKey())), tc.tune)
			f := startFlood(t)
			tc.start(f, ts)
			waitLong(t, "the flood to be on", 30*time.Second, func() bool { return f.dialed.Load() >= tc.on })
			pingsSucceed(t, tc.name, 30, ts.goPing(key))
		})
	}
}

// dialFromAs connects from the loopback address src with key.
func (ts *testServer) dialFromAs(t *testing.T, src string, key ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	c, err := dialFrom(src, ts.addr)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(ts.hostKey.PublicKey()), Timeout: 5 * time.Second}
	sc, chans, reqs, err := ssh.NewClientConn(c, ts.addr, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	client := ssh.NewClient(sc, chans, reqs)
	t.Cleanup(func() { client.Close() })
	return client, nil
}

// TestSSHKeyOptions: from= and expiry-time= decide at the handshake and
// again at each op, for the service the op names; no-pty runs an op
// without the terminal the client asked for.
func TestSSHKeyOptions(t *testing.T) {
	fromKey, expired, noPTY, both := newTestKey(t), newTestKey(t), newTestKey(t), newTestKey(t)
	web, db := newFakeService("web"), newFakeService("db")
	web.setKeyLines(
		authorizedLine(t, `from="127.0.0.2,127.0.0.3"`, fromKey.PublicKey()),
		authorizedLine(t, `expiry-time="20200101"`, expired.PublicKey()),
		authorizedLine(t, `restrict`, noPTY.PublicKey()),
		authorizedLine(t, `from="!127.0.0.1,127.0.0.0/8"`, both.PublicKey()),
	)
	db.setKeys(both.PublicKey())
	ts := startSSH(t, newFakeCtl(web, db), nil)

	if _, err := ts.dialFromAs(t, "127.0.0.1", fromKey); err == nil {
		t.Errorf("from= key got in from an address it does not list")
	}
	c, err := ts.dialFromAs(t, "127.0.0.3", fromKey)
	if err != nil {
		t.Fatalf("from= key from a listed address: %v", err)
	}
	if out, _, status := runSSH(t, c, "web//ping"); status != 0 || !strings.HasPrefix(out, "pong!") {
		t.Errorf("from= key, listed address: %q, %d", out, status)
	}
	if _, err := ts.dialFromAs(t, "127.0.0.1", expired); err == nil {
		t.Errorf("expired key got in")
	}

	// Let in by db from anywhere, by web only from elsewhere than 127.0.0.1.
	c = ts.mustDial(t, both)
	if _, stderr, status := runSSH(t, c, "web//ping"); status != exitUnauthorized {
		t.Errorf("web from a refused address: %q, status %d", stderr, status)
	}
	if out, _, status := runSSH(t, c, "db//ping"); status != 0 || !strings.HasPrefix(out, "pong!") {
		t.Errorf("db: %q, %d", out, status)
	}
	c, err = ts.dialFromAs(t, "127.0.0.9", both)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, status := runSSH(t, c, "web//ping"); status != 0 {
		t.Errorf("web from an allowed address: status %d", status)
	}

	// restrict: the pty-req is not honoured, the op says so and runs without one.
	sess, err := ts.mustDial(t, noPTY).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errOut
	if err := sess.Run("web//exec -it app tty"); err != nil {
		t.Fatalf("exec -it: %v, %q", err, errOut.String())
	}
	if out.String() != "docker exec -i 0123456789ab tty\n" || !strings.Contains(errOut.String(), "ssh/test.pub:3 forbids a terminal") {
		t.Errorf("exec -it with a restrict key: stdout %q, stderr %q", out.String(), errOut.String())
	}
	if logs := ts.logs.String(); !strings.Contains(logs, "key_file=ssh/test.pub:3") || !strings.Contains(logs, "key_file=ssh/test.pub:1") {
		t.Errorf("op log lines do not name the key's line:\n%s", logs)
	}
}

func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1:22":                "192.0.2.1",
		"[::ffff:192.0.2.1]:22":       "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:22":   "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:2222": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:22":           "fe80::/64",
	} {
		if got := sourceOf(tcpAddr(addr)); got != want {
			t.Errorf("sourceOf(%s) = %q, want %q", addr, got, want)
		}
	}
}

// A deploy that did not end with the commit running and healthy gives the
// op its documented exit status and one line on stderr, as CI shows them.
func TestSSHDeployOutcomes(t *testing.T) {
	key := newTestKey(t)
	for _, tc := range []struct {
		op     string
		err    error
		status int
	}{
		{"up", deployFailure(resultRejected, "rejected abc1234: 1 policy violations"), exitRejected},
		{"up", deployFailure(resultRolledBack, "deploy of abc1234 failed, rolled back to def5678: compose up: boom"), exitFailed},
		{"up", deployFailure(resultUnhealthy, "deploy of abc1234 failed, rolled back to def5678: unhealthy: web-app-1 exited with status 1"), exitUnhealthy},
		{"up", deployFailure(resultTimeout, "deploy of abc1234 failed: timeout: not ready after 2m0s"), exitTimeout},
		{"restart", deployFailure(resultUnhealthy, "unhealthy: web-app-1 restarts repeatedly"), exitUnhealthy},
	} {
		svc := newFakeService("web", key.PublicKey())
		if tc.op == "up" {
			svc.upErr = tc.err
		} else {
			svc.healthErr = tc.err
		}
		ts := startSSH(t, newFakeCtl(svc), nil)
		_, stderr, status := runSSH(t, ts.mustDial(t, key), "web//"+tc.op)
		if status != tc.status {
			t.Errorf("%s ending in %q: exit status %d, want %d", tc.op, tc.err, status, tc.status)
		}
		if want := "pgod: " + tc.err.Error() + "\n"; stderr != want {
			t.Errorf("%s ending in %q: stderr %q, want %q", tc.op, tc.err, stderr, want)
		}
	}
}

// TestSSHReadOnlyKey: a key from ssh/ro/ runs the ops that change nothing,
// and every other op is refused with 77 before the service hears of it;
// an op's caller reaches the service for its history.
func TestSSHReadOnlyKey(t *testing.T) {
	roKey, rwKey := newTestKey(t), newTestKey(t)
	web := newFakeService("web")
	web.setKeyLines(string(ssh.MarshalAuthorizedKey(rwKey.PublicKey())), string(ssh.MarshalAuthorizedKey(roKey.PublicKey())))
	web.mu.Lock()
	web.keys[1].readOnly, web.keys[1].source = true, "ssh/ro/oncall.pub:1"
	web.mu.Unlock()
	ts := startSSH(t, newFakeCtl(web), nil)
	ro := ts.mustDial(t, roKey)
	for _, op := range []string{"ping", "ps", "logs", "status", "history 5", "diff", "check", "git hash"} {
		if _, stderr, status := runSSH(t, ro, "web//"+op); status == exitUnauthorized {
			t.Errorf("read-only key, %s: refused: %q", op, stderr)
		}
	}
	before, _ := web.recorded()
	for _, op := range []string{"up", "down", "restart", "stop", "start", "pull", "exec web true", "git pull", "freeze x", "unfreeze", "rollback abcd"} {
		_, stderr, status := runSSH(t, ro, "web//"+op)
		if status != exitUnauthorized || !strings.Contains(stderr, "read-only") || !strings.Contains(stderr, "ssh/ro/oncall.pub:1") {
			t.Errorf("read-only key, %s: status %d, %q; want %d and the reason", op, status, stderr, exitUnauthorized)
		}
	}
	if after, _ := web.recorded(); len(after) != len(before) {
		t.Errorf("the service ran %q for a read-only key", after[len(before):])
	}
	rw := ts.mustDial(t, rwKey)
	if _, stderr, status := runSSH(t, rw, "web//freeze release day"); status != 0 {
		t.Fatalf("freeze with a read-write key: %d %q", status, stderr)
	}
	if calls, _ := web.recorded(); calls[len(calls)-1][0] != "freeze release day by ssh/test.pub:1" {
		t.Errorf("freeze reached the service as %q", calls[len(calls)-1])
	}
}

func TestSSHOpArguments(t *testing.T) {
	key := newTestKey(t)
	web := newFakeService("web", key.PublicKey())
	ts := startSSH(t, newFakeCtl(web), nil)
	c := ts.mustDial(t, key)
	for _, op := range []string{"rollback", "rollback xyz1", "rollback ABCD", "rollback abc", "rollback abcd ef01", "history 0", "history x", "history 1 2", "diff x", "unfreeze now",
		"freeze '" + strings.Repeat("x", maxFreezeReason+1) + "'", "freeze a\x1b[2Jb"} {
		if _, stderr, status := runSSH(t, c, "web//"+op); status != exitBadRequest {
			t.Errorf("%s: status %d, %q; want %d", op, status, stderr, exitBadRequest)
		}
	}
	if _, stderr, status := runSSH(t, c, "web//rollback 0123abcd"); status != 0 {
		t.Errorf("rollback 0123abcd: %d %q", status, stderr)
	}
}
