package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	hostKey := newTestKey(t)
	logs := &syncBuffer{}
	srv := newSSHServer(ctl, hostKey, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
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
	for _, want := range []string{"service=web", "key=" + ssh.FingerprintSHA256(key.PublicKey()), "remote=127.0.0.1:", "op=exec", "status=3", "duration="} {
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
	for _, want := range []string{"branch:      main", "deployed:    aaaa", "upstream:    bbbb", "result:      rejected",
		`  - service "app": privileged is not allowed`, "stopped:     yes", "containers:  0 running of 2 desired", "last deploy: never", "(1m0s ago)"} {
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

// TestSSHFlood: 200 TCP connections that never say a word must not keep a
// real client from its pong.
func TestSSHFlood(t *testing.T) {
	key := newTestKey(t)
	ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey())), nil)
	for range 200 {
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatalf("flood: %v", err)
		}
		defer conn.Close()
	}
	done := make(chan string, 1)
	go func() {
		c, err := ts.dial(t, key)
		if err != nil {
			done <- "dial: " + err.Error()
			return
		}
		sess, err := c.NewSession()
		if err != nil {
			done <- "session: " + err.Error()
			return
		}
		out, err := sess.Output("web//ping")
		if err != nil {
			done <- "ping: " + err.Error()
			return
		}
		done <- string(out)
	}()
	select {
	case got := <-done:
		if !strings.HasPrefix(got, "pong! - ") {
			t.Errorf("ping during a flood: %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong within 5s during a flood of half-open connections")
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
