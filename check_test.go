package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// runPgo runs the pgo command line and returns exit code, stdout and stderr.
func runPgo(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"pgo"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCheckReferenceConfig(t *testing.T) {
	code, stdout, stderr := checkWith(&fakeRender{}, "-c", "testdata/config/reference.toml")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "pgo miek https://oauth2:***@gitlab.science.ru.nl/cncz/pgo.git main\n"
	if stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	for _, token := range []string{"glpat-Xy3kQ9vLm2TzRw8pNc4B", "dckr_pat_7hG2kLmN9pQrS4tUvW"} {
		if strings.Contains(stdout+stderr, token) {
			t.Errorf("output shows token %q", token)
		}
	}
}

func TestCheckEveryKeyConfig(t *testing.T) {
	code, stdout, stderr := checkWith(&fakeRender{}, "--config", "testdata/config/full.toml")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "caddy root git@gitlab.science.ru.nl:cncz/pgo-caddy.git main\n" +
		"web web https://***@github.com/example/web production\n"
	if stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	for _, secret := range []string{"ghp_8sHj2KdLq0wErTy6UiOp", "9fT4xQ2wLp7vB3nM", "Zk8Wq3Rt6Yu1Io4P", "s3cr3t-pw", "e1f0c3b2a9d8e7f6a5b4c3d2"} {
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("output shows secret %q", secret)
		}
	}
}

func TestCheckInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pgo.toml")
	doc := `[[services]]
name = "web"
repo = "https://oauth2:glpat-hidden-token@gitlab.example.org/web.git"
env = [ "1X=hidden-value" ]

[[services]]
name = "web"
user = "web"
repository = "https://example.org/web.git"
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runPgo("check", "-c", path)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	want := path + `:1: service "web": user is required
` + path + `:1: service "web": repository is required
` + path + `:3: service "web": unknown key "repo" at line 3; did you mean "repository"?
` + path + `:4: service "web": env[0]: "1X" is not a valid environment variable name
` + path + `:6: service "web": name is already used by the service at line 1
`
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
	if strings.Contains(stderr, "hidden") {
		t.Errorf("stderr shows a secret")
	}
}

func TestCheckInvalidTOML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgo.toml")
	if err := os.WriteFile(path, []byte("[[services]]\nname = \"web\"\nname = \"other\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runPgo("check", "-c", path)
	want := path + `:3: invalid TOML: duplicate key "name" (first defined at line 2) at line 3, column 1` + "\n"
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

func TestCheckFlags(t *testing.T) {
	flags := []string{"-c, --config", "-s, --service", "--datadir", "-h, --help", "PATH"}
	for _, help := range []string{"-h", "--help", "-help"} {
		code, stdout, stderr := runPgo("check", help)
		if code != 0 || stderr != "" {
			t.Errorf("check %s: exit %d, stderr %q", help, code, stderr)
		}
		for _, f := range flags {
			if !strings.Contains(stdout, f) {
				t.Errorf("check %s: usage does not name %q", help, f)
			}
		}
	}

	code, stdout, stderr := runPgo("check", "--bogus")
	if code != 2 || stdout != "" {
		t.Errorf("unknown flag: exit %d, stdout %q", code, stdout)
	}
	if first, rest, _ := strings.Cut(stderr, "\n"); first != "pgo check: flag provided but not defined: -bogus" || rest != checkUsage {
		t.Errorf("unknown flag: stderr = %q", stderr)
	}

	code, _, stderr = runPgo("check", "-c", "testdata/config/reference.toml", "a", "b")
	if code != 2 || !strings.HasPrefix(stderr, "pgo check: one PATH at most, got 2\n") {
		t.Errorf("two paths: exit %d, stderr %q", code, stderr)
	}

	f := &fakeRender{}
	if code, _, stderr := checkWith(f, t.TempDir(), "-c", "testdata/config/reference.toml", "--datadir", "/srv"); code != 0 || f.req.DataDir != "/srv/pgo" {
		t.Errorf("flags after PATH: exit %d, stderr %q, datadir %q", code, stderr, f.req.DataDir)
	}
	dashDir := filepath.Join(t.TempDir(), "-c")
	if err := os.Mkdir(dashDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := checkWith(f, "-s", "web", "--", dashDir); code != 0 || f.req.Checkout != dashDir {
		t.Errorf("PATH after --: exit %d, stderr %q, checkout %q", code, stderr, f.req.Checkout)
	}

	code, _, stderr = runPgo("check", "--datadir", "relative", ".")
	if code != 2 || !strings.HasPrefix(stderr, "pgo check: --datadir must be an absolute path\n") {
		t.Errorf("relative datadir: exit %d, stderr %q", code, stderr)
	}

	code, _, stderr = runPgo("check", "-c", filepath.Join(t.TempDir(), "missing.toml"))
	if code != 2 || !strings.Contains(stderr, "no such file or directory") {
		t.Errorf("missing config: exit %d, stderr %q", code, stderr)
	}
}

// fakeRender records the request and answers with canned violations.
type fakeRender struct {
	project    string // the rendered project; default {}
	req        renderRequest
	calls      int
	violations []violation
	err        error
}

func (f *fakeRender) render(_ context.Context, r renderRequest) ([]byte, []violation, error) {
	f.req = r
	f.calls++
	if f.project == "" {
		return []byte("{}"), f.violations, f.err
	}
	return []byte(f.project), f.violations, f.err
}

// checkWith runs pgo check with render on a host where every user exists.
func checkWith(render *fakeRender, args ...string) (int, string, string) {
	return checkOn(render, func(name string) (*account, error) {
		if name == "root" {
			return &account{Name: name}, nil
		}
		return &account{Name: name, UID: 1000, GID: 1000}, nil
	}, args...)
}

func checkOn(render *fakeRender, lookup lookupFunc, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := check(args, &stdout, &stderr, render.render, lookup)
	return code, stdout.String(), stderr.String()
}

func TestCheckProjectWithConfig(t *testing.T) {
	checkout := t.TempDir()
	f := &fakeRender{violations: []violation{
		{File: "compose.yaml", Line: 12, Service: "frontend", Msg: "privileged is not allowed"},
		{Path: "services.db.environment.PASSWORD", Service: "db", Msg: "value 9fT4xQ2wLp7vB3nM must not come from the host"},
	}}
	code, stdout, stderr := checkWith(f, "-c", "testdata/config/full.toml", "-s", "web", "--datadir", "/srv/data", checkout)
	if code != 1 || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 1", code, stderr)
	}
	want := "compose.yaml:12: service \"frontend\": privileged is not allowed\n" +
		"services.db.environment.PASSWORD: service \"db\": value *** must not come from the host\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	r := f.req
	if r.Service == nil || r.Service.Name != "web" || r.Checkout != checkout || r.DataDir != "/srv/data/web" ||
		r.Docker != "docker" || r.Account != nil || r.Trusted {
		t.Errorf("request = %+v", r)
	}
	// The other services of the config own their names, as they do in pgod.
	if fmt.Sprint(r.Others) != "[caddy]" {
		t.Errorf("others = %v; want [caddy]", r.Others)
	}
	if checkWith(f, checkout); f.req.Others != nil {
		t.Errorf("without -c: others = %v; want none known", f.req.Others)
	}
}

func TestCheckProjectTrustedRoot(t *testing.T) {
	f := &fakeRender{violations: []violation{{File: "compose.yaml", Line: 3, Service: "caddy", Msg: "ports: host port 8080 is not allowed"}}}
	code, stdout, _ := checkWith(f, "-c", "testdata/config/full.toml", "-s", "caddy", t.TempDir())
	if code != 0 || stdout != "warning: compose.yaml:3: service \"caddy\": ports: host port 8080 is not allowed\n" {
		t.Errorf("exit %d, stdout %q; want 0 and a warning", code, stdout)
	}
	if !f.req.Trusted || f.req.DataDir != "/data/caddy" {
		t.Errorf("request = %+v, want trusted with the default datadir", f.req)
	}
}

func TestCheckProjectWithoutConfig(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	checkout := filepath.Join(t.TempDir(), "My Project.git")
	if err := os.Mkdir(checkout, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fakeRender{}
	code, stdout, stderr := checkWith(f, checkout)
	if code != 0 || stdout != checkout+": ok, service \"my-project-git\" passes the policy\n" || stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and one line that says ok", code, stdout, stderr)
	}
	want := Service{Name: "my-project-git", User: me.Username, Branch: "main"}
	if f.req.Service == nil || !reflectEqualService(*f.req.Service, want) || f.req.Trusted || f.req.DataDir != "/data/my-project-git" {
		t.Errorf("request = %+v, service %+v; want %+v, untrusted", f.req, f.req.Service, want)
	}

	code, _, _ = checkWith(f, "-s", "api", checkout)
	if code != 0 || f.req.Service.Name != "api" {
		t.Errorf("-s without -c: exit %d, name %q", code, f.req.Service.Name)
	}
	code, _, stderr = checkWith(f, "-s", "Bad Name", checkout)
	if code != 2 || !strings.Contains(stderr, `service name "Bad Name" is not allowed`) {
		t.Errorf("bad -s: exit %d, stderr %q", code, stderr)
	}
}

func reflectEqualService(a, b Service) bool {
	return a.Name == b.Name && a.User == b.User && a.Branch == b.Branch && a.Repository == b.Repository
}

func TestCheckProjectCannotCheck(t *testing.T) {
	f := &fakeRender{err: errors.New("docker compose: version 2.20.0 is too old, need 2.40.2 or newer")}
	code, stdout, stderr := checkWith(f, t.TempDir())
	if code != 2 || stdout != "" || !strings.HasSuffix(stderr, ": docker compose: version 2.20.0 is too old, need 2.40.2 or newer\n") {
		t.Errorf("render error: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	f = &fakeRender{}
	missing := filepath.Join(t.TempDir(), "nope")
	if code, _, stderr := checkWith(f, missing); code != 2 || !strings.Contains(stderr, "no such file or directory") || f.calls != 0 {
		t.Errorf("missing PATH: exit %d, stderr %q, render called %d times", code, stderr, f.calls)
	}
	file := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := checkWith(f, file); code != 2 || !strings.Contains(stderr, "is not a directory") {
		t.Errorf("file as PATH: exit %d, stderr %q", code, stderr)
	}

	code, _, stderr = checkWith(f, "-c", "testdata/config/full.toml", t.TempDir())
	if code != 2 || stderr != "pgo check: testdata/config/full.toml has 2 services (caddy, web): pick one with -s\n" {
		t.Errorf("several services: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = checkWith(f, "-c", "testdata/config/full.toml", "-s", "nope", t.TempDir())
	if code != 2 || stderr != "pgo check: testdata/config/full.toml has no service \"nope\"\n" {
		t.Errorf("unknown service: exit %d, stderr %q", code, stderr)
	}
	// -s with -c and no PATH checks the current directory as that service.
	code, _, _ = checkWith(f, "-c", "testdata/config/reference.toml", "-s", "pgo")
	if wd, _ := os.Getwd(); code != 0 || f.req.Checkout != wd || f.req.Service.Name != "pgo" {
		t.Errorf("-s without PATH: exit %d, checkout %q", code, f.req.Checkout)
	}
}

func TestSanitizeServiceName(t *testing.T) {
	tests := map[string]string{
		"web":                    "web",
		"My Project.git":         "my-project-git",
		"--x":                    "x",
		"...":                    "pgo",
		strings.Repeat("a", 70):  strings.Repeat("a", 63),
		"Ünïcode":                "n-code",
		"_under":                 "under",
		"café-au-lait_2":         "caf--au-lait_2",
		"/":                      "pgo",
		"ok-already_fine-123abc": "ok-already_fine-123abc",
	}
	for in, want := range tests {
		if got := sanitizeServiceName(in); got != want {
			t.Errorf("sanitizeServiceName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckChild is no test of its own: TestCheckSignalEndsCompose runs the
// test binary through it as "pgo check DIR".
func TestCheckChild(t *testing.T) {
	dir := os.Getenv("PGO_TEST_CHECK_DIR")
	if dir == "" {
		t.Skip("runs only as TestCheckSignalEndsCompose's child")
	}
	os.Exit(runCheck([]string{dir}, os.Stdout, os.Stderr))
}

// TestCheckSignalEndsCompose: SIGTERM or SIGINT to "pgo check" ends the
// compose it runs, and compose's own children, which live in a process group
// of their own and would otherwise be left running.
func TestCheckSignalEndsCompose(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			bin, pids := t.TempDir(), filepath.Join(t.TempDir(), "pids")
			// The stand-in for docker records itself and a child, and waits.
			script := "#!/bin/sh\nsleep 600 &\necho $$ $! > " + pids + ".tmp\nmv " + pids + ".tmp " + pids + "\nwait\n"
			if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			project := t.TempDir()
			if err := os.WriteFile(filepath.Join(project, "compose.yaml"), []byte("services:\n  web:\n    image: busybox\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestCheckChild$")
			cmd.Env = append(os.Environ(), "PGO_TEST_CHECK_DIR="+project, "PATH="+bin+":"+os.Getenv("PATH"))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var compose []int
			pollUntil(t, "compose to start", func() bool {
				data, err := os.ReadFile(pids)
				if err != nil {
					return false
				}
				for _, f := range strings.Fields(string(data)) {
					pid, _ := strconv.Atoi(f)
					compose = append(compose, pid)
				}
				return true
			})
			cmd.Process.Signal(sig)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("pgo check did not end on %s; output:\n%s", sig, out.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Errorf("exit %d after %s; want 2 (could not check); output:\n%s", code, sig, out.String())
			}
			for _, pid := range compose {
				pollUntil(t, fmt.Sprintf("process %d to end", pid), func() bool { return !processAlive(pid) })
			}
		})
	}
}

// processAlive reports whether pid runs: it exists and is no zombie.
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// pollUntil polls cond every 20ms for up to 20 seconds.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCheckUsersOnHost: checking the config alone, as on pgod's host, finds a
// user that does not exist, says where and how to create it, and the
// service lines are not printed.
func TestCheckUsersOnHost(t *testing.T) {
	onlyRoot := func(name string) (*account, error) {
		if name == "root" {
			return &account{Name: name}, nil
		}
		return nil, fmt.Errorf("user %q: %w", name, user.UnknownUserError(name))
	}
	code, stdout, stderr := checkOn(&fakeRender{}, onlyRoot, "-c", "testdata/config/full.toml")
	want := "testdata/config/full.toml:11: service \"web\": user web does not exist on this host; create it with: adduser --system --group web\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
	}
	if code, stdout, _ := checkOn(&fakeRender{}, onlyRoot, "-c", "testdata/config/full.toml", "--no-users"); code != 0 || !strings.Contains(stdout, "web web ") {
		t.Errorf("--no-users: exit %d, stdout %q", code, stdout)
	}
	// Checking a project, as in a team's CI, does not need the host's users.
	if code, _, stderr := checkOn(&fakeRender{}, onlyRoot, "-c", "testdata/config/full.toml", "-s", "web", t.TempDir()); code != 0 {
		t.Errorf("project check with a missing user: exit %d, stderr %q", code, stderr)
	}
}

// TestCheckURLsNameServices: a url routed to a compose service the project
// does not have is an error with the config's file and line.
func TestCheckURLsNameServices(t *testing.T) {
	f := &fakeRender{project: `{"services":{"frontend":{},"db":{}}}`}
	code, stdout, _ := checkWith(f, "-c", "testdata/config/full.toml", "-s", "web", t.TempDir())
	want := "testdata/config/full.toml:11: service \"web\": urls: api.example.org routes to compose service \"api\", which the project does not have; services: db, frontend\n"
	if code != 1 || stdout != want {
		t.Errorf("exit %d, stdout %q; want 1 and %q", code, stdout, want)
	}
	f.project = `{"services":{"frontend":{},"api":{}}}`
	if code, stdout, _ := checkWith(f, "-c", "testdata/config/full.toml", "-s", "web", t.TempDir()); code != 0 || !strings.HasSuffix(stdout, ": ok, service \"web\" passes the policy\n") {
		t.Errorf("every url's service exists: exit %d, stdout %q", code, stdout)
	}
}
