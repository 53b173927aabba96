//go:build e2e

package main

// The end-to-end harness: real Docker Engine, real Compose v2, real git. "make
// test" runs these with -tags e2e. When no engine or no Compose v2 answers,
// every TestE2E case is skipped after one loud "E2E SKIPPED: reason" line.
//
// Helpers for cases in other files:
//   e2eNeed(t)                      skip unless the engine and compose answer
//   newUpstream(t) *upstream        a bare repository plus a work clone; .commit(t, files) pushes
//   e2eUser(t) string               a non-root user for services (created once)
//   startDaemon(t, cfg string, extra...) *daemonProc   pgod on loopback ports, state in t.TempDir
//   waitFor(t, what, timeout, cond) polls cond until true or fails the test
//   projectContainers(t, project)   container name -> state, from the engine
//   testImage                       the local busybox image tag

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// testImage is built locally; its tag is not "latest" because compose
	// pull --policy missing pulls a "latest" image even when it is present.
	testImage = "pgo-test-busybox:e2e"
	e2eUser_  = "pgoe2e"
)

// e2eSkip is the reason the end-to-end tests cannot run here, "" when they can.
var e2eSkip string

func TestMain(m *testing.M) {
	e2eSkip = e2eSetup()
	if e2eSkip != "" {
		fmt.Printf("\n################################################################\n")
		fmt.Printf("E2E SKIPPED: %s\n", e2eSkip)
		fmt.Printf("################################################################\n\n")
	}
	os.Exit(m.Run())
}

// e2eSetup checks for the engine and Compose v2 and builds the test image.
func e2eSetup() string {
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return "no Docker Engine answers (docker info: " + firstLine(out, err) + ")"
	}
	if _, err := composeVersionOf("docker"); err != nil {
		return err.Error()
	}
	if os.Geteuid() != 0 {
		return "the end-to-end tests run pgod, which needs root"
	}
	if err := buildTestImage(); err != nil {
		return "cannot build the test image: " + err.Error()
	}
	return ""
}

// composeVersionOf asks docker compose for its version without the product's
// code, so that the harness does not depend on what it tests.
func composeVersionOf(docker string) (string, error) {
	out, err := exec.Command(docker, "compose", "version", "--short").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("no Compose v2 (docker compose version: %s)", firstLine(out, err))
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	var major, minor, patch int
	fmt.Sscanf(v, "%d.%d.%d", &major, &minor, &patch)
	if major != 2 || minor < 40 || (minor == 40 && patch < 2) {
		return "", fmt.Errorf("Compose %s is too old, 2.40.2 or later is needed", v)
	}
	return v, nil
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	return strings.SplitN(s, "\n", 2)[0]
}

// buildTestImage makes the one image every case uses: busybox-static on
// scratch, since no registry is reachable.
func buildTestImage() error {
	bb := "/bin/busybox"
	if out, err := exec.Command("file", "-L", bb).Output(); err == nil && !bytes.Contains(out, []byte("statically linked")) {
		return fmt.Errorf("%s is not static; install busybox-static", bb)
	}
	dir, err := os.MkdirTemp("", "pgo-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), data, 0o755); err != nil {
		return err
	}
	dockerfile := "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("docker", "build", "-q", "-t", testImage, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build: %s", firstLine(out, err))
	}
	return nil
}

func e2eNeed(t *testing.T) {
	t.Helper()
	if e2eSkip != "" {
		t.Skip("E2E SKIPPED: " + e2eSkip)
	}
}

var userOnce sync.Once

// e2eUser returns a non-root user for test services, made once per machine.
func e2eUser(t *testing.T) string {
	t.Helper()
	userOnce.Do(func() {
		if _, err := user.Lookup(e2eUser_); err == nil {
			return
		}
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", e2eUser_).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %s", firstLine(out, err))
		}
	})
	return e2eUser_
}

// sh runs a command and fails the test when it fails.
func sh(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// upstream is a service's git server: a bare repository, readable by every
// user (pgod clones as the service's user), and a clone to commit in.
type upstream struct {
	bare, work string
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	root := openTempDir(t)
	u := &upstream{bare: filepath.Join(root, "upstream.git"), work: filepath.Join(root, "work")}
	sh(t, root, "git", "init", "-q", "--bare", "-b", "main", u.bare)
	sh(t, root, "git", "init", "-q", "-b", "main", u.work)
	return u
}

// commit writes files (path -> content; "" deletes) into the work clone,
// commits and pushes them, and returns the new commit.
func (u *upstream) commit(t *testing.T, files map[string]string) string {
	t.Helper()
	for path, content := range files {
		full := filepath.Join(u.work, path)
		if content == "" {
			os.Remove(full)
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, u.work, "git", "add", "-A")
	sh(t, u.work, "git", "commit", "-q", "--allow-empty", "-m", "change")
	sh(t, u.work, "git", "push", "-q", u.bare, "HEAD:main")
	return sh(t, u.work, "git", "rev-parse", "HEAD")
}

// openTempDir is a t.TempDir that service users can traverse: pgod runs git
// and compose as them.
func openTempDir(t *testing.T) string {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	return dir
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// daemonProc is a pgod started by a test.
type daemonProc struct {
	cmd             *exec.Cmd
	dir, datadir    string
	config          string
	sshAddr, metric string
	hooks           string // the --webhooks address
	mu              sync.Mutex
	log             bytes.Buffer
}

// pgoBinary is the binary "make build" made, or the one PGO_BINARY names
// (make e2e builds one with the race detector); the tests run it as a user would.
func pgoBinary(t *testing.T) string {
	t.Helper()
	name := "pgo"
	if b := os.Getenv("PGO_BINARY"); b != "" {
		name = b
	}
	p, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing: run make build first", p)
	}
	return p
}

// startDaemon writes cfg to a pgo.toml and starts pgod on it with a short
// poll interval unless extra sets one. It is stopped when the test ends.
func startDaemon(t *testing.T, cfg string, extra ...string) *daemonProc {
	t.Helper()
	root := openTempDir(t)
	d := &daemonProc{
		dir:     filepath.Join(root, "state"),
		datadir: filepath.Join(root, "data"),
		config:  filepath.Join(root, "pgo.toml"),
		sshAddr: freePort(t),
		metric:  freePort(t),
		hooks:   freePort(t),
	}
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start(t, extra...)
	t.Cleanup(func() {
		d.stop(t)
		// The config as the test left it too: a reload may have added services.
		final, _ := os.ReadFile(d.config)
		downProjects(t, cfg+"\n"+string(final))
		unmountUnder(t, root)
	})
	return d
}

// unmountUnder undoes every mount below dir (pgod's bind pins and their
// tmpfs), deepest first, so that the temporary directory can go.
func unmountUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("mountinfo: %v", err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if out, err := exec.Command("umount", "-l", points[i]).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %s", points[i], firstLine(out, err))
		}
	}
}

func (d *daemonProc) start(t *testing.T, extra ...string) {
	t.Helper()
	args := []string{"daemon", "-c", d.config, "-d", d.dir, "--datadir", d.datadir,
		"-s", d.sshAddr, "-m", d.metric, "--webhooks", d.hooks, "-t", "2s", "--debug"}
	args = append(args, extra...)
	d.cmd = exec.Command(pgoBinary(t), args...)
	d.cmd.Env = append(os.Environ(), "PGOD_TEST_SECRET_IN_ENV=must-not-leak")
	d.cmd.Stdout = &lockedWriter{d: d}
	d.cmd.Stderr = &lockedWriter{d: d}
	// A session of its own: pgod's commands start process groups of their
	// own, but stay in its session, so kill can end them all as systemd would.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// stop ends pgod with SIGTERM, as systemd would.
func (d *daemonProc) stop(t *testing.T) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-done
		t.Errorf("pgod did not stop on SIGTERM within 20s")
	}
	d.cmd = nil
	if t.Failed() {
		d.logTail(t)
	}
}

// logTail logs the end of pgod's log a line a call, so that each line keeps
// the file:line prefix that make e2e's filter lets through to CI's output.
func (d *daemonProc) logTail(t *testing.T) {
	lines := strings.Split(strings.TrimRight(d.logs(), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	t.Logf("pgod log, last %d lines:", len(lines))
	for _, l := range lines {
		t.Logf("pgod: %s", l)
	}
}

// kill ends pgod and every command it started with SIGKILL, as a crash under
// systemd would (the unit's whole control group goes).
func (d *daemonProc) kill(t *testing.T) {
	sid := fmt.Sprint(d.cmd.Process.Pid)
	exec.Command("pkill", "-KILL", "-s", sid).Run()
	d.cmd.Wait()
	d.cmd = nil
	waitFor(t, "pgod's commands to die", 10*time.Second, func() bool {
		return exec.Command("pgrep", "-s", sid).Run() != nil
	})
}

// logTailLines is how much of pgod's log a failed test shows.
const logTailLines = 60

func (d *daemonProc) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

type lockedWriter struct{ d *daemonProc }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	return w.d.log.Write(p)
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// projectContainers maps the project's container names to their state.
func projectContainers(t *testing.T, project string) map[string]string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label=com.docker.compose.project="+project,
		"--format", "{{.Names}} {{.State}}").Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, state, ok := strings.Cut(sc.Text(), " "); ok {
			m[name] = state
		}
	}
	return m
}

// containerID returns the id of a project's container, "" when there is none.
func containerID(t *testing.T, name string) string {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "name=^"+name+"$").Output()
	return strings.TrimSpace(string(out))
}

// downProjects removes every project a test's config named, so cases never see each other's containers.
func downProjects(t *testing.T, cfg string) {
	for _, line := range strings.Split(cfg, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "name" {
			continue
		}
		name := strings.Trim(strings.TrimSpace(v), `"`)
		exec.Command("docker", "compose", "-p", name, "down", "--remove-orphans", "--volumes", "-t", "1").Run()
	}
}

// uniqueName gives each case its own service and project name.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1_000_000_000)
}

// webCompose is a compose file whose one service, web, serves page over
// HTTP on port 8080 inside its network. httpd runs as PID 1 and ignores
// SIGTERM, so a short grace period keeps replacing it quick.
func webCompose(page string) string {
	return `services:
  web:
    image: ` + testImage + `
    command: ["sh", "-c", "mkdir -p /srv && echo ` + page + ` > /srv/index.html && exec httpd -f -p 8080 -h /srv"]
    restart: unless-stopped
    stop_grace_period: 1s
`
}

// fetchPage asks the project's web service for its page from inside its container.
func fetchPage(project string) (string, error) {
	out, err := exec.Command("docker", "exec", project+"-web-1", "wget", "-qO-", "http://127.0.0.1:8080/").CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestE2EComposeUp proves the harness itself: the test image runs under
// docker compose and answers.
func TestE2EComposeUp(t *testing.T) {
	e2eNeed(t)
	dir := t.TempDir()
	name := uniqueName("harness")
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(webCompose("hello")), 0o644)
	t.Cleanup(func() { exec.Command("docker", "compose", "-p", name, "down", "-t", "1").Run() })
	sh(t, dir, "docker", "compose", "-p", name, "up", "-d")
	var got string
	waitFor(t, "httpd to answer", 20*time.Second, func() bool {
		var err error
		got, err = fetchPage(name)
		return err == nil
	})
	if got != "hello" {
		t.Fatalf("httpd answered %q, want %q", got, "hello")
	}
}

const sighup = syscall.SIGHUP
