package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheckComposeVersion(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"2.40.3", "2.40.3", ""},
		{"v2.40.2", "2.40.2", ""},
		{"2.41.0-desktop.1", "2.41.0", ""},
		{"3.0.0", "3.0.0", ""},
		{"2.40.1", "", "too old"},
		{"2.39.9", "", "too old"},
		{"1.29.2", "", "Compose v1"},
		{"docker-compose version 1.25.0, build unknown", "", "cannot parse"},
		{"", "", "cannot parse"},
	}
	for _, tt := range tests {
		got, err := checkComposeVersion(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("checkComposeVersion(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("checkComposeVersion(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// fakeComposeDocker writes a docker substitute that runs script.
func fakeComposeDocker(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "docker")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestComposeVersionCommand(t *testing.T) {
	ctx := context.Background()
	if v, err := composeVersion(ctx, fakeComposeDocker(t, `[ "$*" = "compose version --short" ] && echo 2.40.3`)); err != nil || v != "2.40.3" {
		t.Errorf("composeVersion = %q, %v; want 2.40.3", v, err)
	}
	if _, err := composeVersion(ctx, fakeComposeDocker(t, `echo 2.20.2`)); err == nil || !strings.Contains(err.Error(), "too old") {
		t.Errorf("old compose: err = %v; want too old", err)
	}
	_, err := composeVersion(ctx, fakeComposeDocker(t, `echo "docker: 'compose' is not a docker command." >&2; exit 1`))
	if err == nil || !strings.Contains(err.Error(), "docker compose v2 is required") || !strings.Contains(err.Error(), "not a docker command") {
		t.Errorf("missing compose: err = %v", err)
	}
	if _, err := composeVersion(ctx, filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("missing docker binary: no error")
	}
}

func TestRealComposeVersion(t *testing.T) {
	requireCompose(t)
	if _, err := composeVersion(context.Background(), "docker"); err != nil {
		t.Fatalf("installed compose refused: %v", err)
	}
}

// TestRenderCleanEnvironment proves compose renders with only pgo's
// environment: the test's own variables do not interpolate, the service's
// env does, and remote includes are switched off.
func TestRenderCleanEnvironment(t *testing.T) {
	requireCompose(t)
	dir := t.TempDir()
	compose := "services:\n  web:\n    image: busybox\n    environment:\n      LEAK: \"${PGO_TEST_LEAK:-none}\"\n      GIVEN: \"${GIVEN:-none}\"\n      GIT: \"${COMPOSE_EXPERIMENTAL_GIT_REMOTE:-unset}\"\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGO_TEST_LEAK", "leaked")
	project, vs, err := renderProject(context.Background(), renderRequest{
		Service: &Service{Name: "team", Env: []string{"GIVEN=fromtoml"}}, Checkout: dir, Docker: "docker"})
	if err != nil || len(vs) > 0 {
		t.Fatalf("renderProject: %v %v", err, vs)
	}
	for _, want := range []string{`"LEAK": "none"`, `"GIVEN": "fromtoml"`, `"GIT": "false"`} {
		if !strings.Contains(string(project), want) {
			t.Errorf("rendered project lacks %s:\n%s", want, project)
		}
	}
}

// TestRenderOverrideIgnored: compose.override.yaml next to compose.yaml is
// never merged into what pgo validates and deploys.
func TestRenderOverrideIgnored(t *testing.T) {
	requireCompose(t)
	checkout, _ := filepath.Abs("testdata/policy/ok-override-ignored")
	project, vs, err := renderProject(context.Background(), renderRequest{Service: &Service{Name: "team"}, Checkout: checkout, Docker: "docker"})
	if err != nil || len(vs) > 0 {
		t.Fatalf("renderProject: %v %v", err, vs)
	}
	if strings.Contains(string(project), "privileged") || strings.Contains(string(project), "network_mode") {
		t.Errorf("override file merged into the project:\n%s", project)
	}
}

// TestRenderRefusedRedacted: compose's own refusal is a violation, and an
// env value from pgo.toml never shows in it.
func TestRenderRefusedRedacted(t *testing.T) {
	requireCompose(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: busybox\n    ports: [\"${TOKEN}\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, vs, err := renderProject(context.Background(), renderRequest{
		Service: &Service{Name: "team", Env: []string{"TOKEN=s3cr3t-t0ken"}}, Checkout: dir, Docker: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || !strings.Contains(vs[0].String(), "docker compose config refused the project") {
		t.Fatalf("violations = %v; want compose's refusal", vs)
	}
	// Compose quotes the interpolated value ("invalid containerPort: ..."); pgo blanks it.
	if strings.Contains(vs[0].String(), "s3cr3t") || !strings.Contains(vs[0].String(), "***") {
		t.Errorf("secret not redacted in violation: %s", vs[0])
	}
}

func TestViolationString(t *testing.T) {
	tests := []struct {
		v    violation
		want string
	}{
		{violation{File: "compose.yaml", Line: 12, Path: "services.web.privileged", Service: "web", Msg: "privileged is not allowed"}, `compose.yaml:12: service "web": privileged is not allowed`},
		{violation{File: "compose.yaml", Path: "services.web.privileged", Service: "web", Msg: "privileged is not allowed"}, `services.web.privileged: service "web": privileged is not allowed`},
		{violation{File: ".env", Line: 2, Msg: "setting COMPOSE_FILE is not allowed"}, `.env:2: setting COMPOSE_FILE is not allowed`},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("String() = %q; want %q", got, tt.want)
		}
	}
}

// TestRenderTrusted: a root service gets its violations as warnings and its
// project rendered, even past the pre-check.
func TestRenderTrusted(t *testing.T) {
	requireCompose(t)
	checkout, _ := filepath.Abs("testdata/policy/include")
	r := renderRequest{Service: &Service{Name: "team"}, Checkout: checkout, Docker: "docker"}
	project, vs, err := renderProject(context.Background(), r)
	if err != nil || project != nil || len(vs) == 0 {
		t.Fatalf("untrusted: project %d bytes, %v, %v; want no project, violations", len(project), vs, err)
	}
	r.Trusted = true
	project, vs, err = renderProject(context.Background(), r)
	if err != nil || project == nil {
		t.Fatalf("trusted: %v, %v; want the rendered project", vs, err)
	}
	all := fmt.Sprint(vs)
	for _, want := range []string{"include is not allowed", `service "evil": privileged is not allowed`} {
		if !strings.Contains(all, want) {
			t.Errorf("trusted warnings lack %q: %s", want, all)
		}
	}
}

// TestRenderFIFO: a FIFO where the compose file should be does not hang pgo.
func TestRenderFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "compose.yaml"), 0o644); err != nil {
		t.Skip(err)
	}
	src, err := precheck(dir, &Service{Name: "team"})
	if err != nil || len(src.violations) != 1 || !strings.Contains(src.violations[0].String(), "compose.yaml: is not a regular file") {
		t.Fatalf("precheck = %v, %v", src, err)
	}
}

// renderWith renders a one-service checkout with the given docker.
func renderWith(t *testing.T, docker string, within time.Duration) []violation {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: busybox\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, vs, err := renderWithin(context.Background(), renderRequest{Service: &Service{Name: "team"}, Checkout: dir, Docker: docker}, filepath.Join(dir, "compose.yaml"), within)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return vs
}

// TestRenderBounds: what compose runs under is bounded in memory (the
// limit reaches the docker process), output and time, and each bound
// broken is a refusal saying which.
func TestRenderBounds(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("no prlimit")
	}
	tests := []struct {
		name, script string
		want         string
	}{
		{"memory", `echo "data limit $(ulimit -d) KiB" >&2; exit 1`, "docker compose config refused the project: data limit 524288 KiB"},
		{"output", `head -c 9000000 /dev/zero`, "the rendered project is larger than 8388608 bytes"},
		{"time", `exec sleep 60`, "docker compose config did not finish within 1s"},
		{"crash", `echo "fatal error: runtime: out of memory" >&2; echo goroutine 1 >&2; exit 2`, "docker compose config needed more than 512 MiB of memory"},
		{"panic", `echo "panic: boom" >&2; for i in $(seq 50); do echo "frame $i" >&2; done; exit 2`, "docker compose config refused the project: panic: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := renderWith(t, fakeComposeDocker(t, tt.script), time.Second)
			if len(vs) != 1 || !strings.Contains(vs[0].Msg, tt.want) {
				t.Fatalf("violations %v; want %q", vs, tt.want)
			}
		})
	}
}

// TestRenderMemoryLimitStopsCompose: the real compose, handed a billion
// laughs behind the pre-check's back, dies at the data limit instead of
// eating the host's memory.
func TestRenderMemoryLimitStopsCompose(t *testing.T) {
	requireCompose(t)
	if testing.Short() {
		t.Skip("takes compose some seconds to reach the limit")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(billionLaughs()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, vs, err := renderCompose(ctx, renderRequest{Service: &Service{Name: "team"}, Checkout: dir, Docker: "docker"}, file)
	if err != nil || len(vs) != 1 || !strings.Contains(vs[0].Msg, "needed more than 512 MiB of memory") {
		t.Fatalf("render = %v, %v; want compose stopped at the memory limit", vs, err)
	}
}

// TestRenderHomeAlike: pgo check (no account) and pgod (the service's
// account, with its own home) render with the same HOME, so ~ means the
// same to both and is refused by both, in the same words.
func TestRenderHomeAlike(t *testing.T) {
	requireCompose(t)
	dir := t.TempDir()
	compose := "services:\n  web:\n    image: busybox\n    environment: {H: \"${HOME}\"}\n    volumes: [\"~/data:/data\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, a := range []*account{nil, {Name: "root", Home: "/root"}} {
		project, vs, err := renderProject(context.Background(), renderRequest{Service: &Service{Name: "team", User: "root"}, Checkout: dir, DataDir: "/data/team", Account: a, Docker: "docker"})
		if err != nil {
			t.Fatal(err)
		}
		verdicts = append(verdicts, fmt.Sprint(vs)+string(project))
	}
	if verdicts[0] != verdicts[1] {
		t.Fatalf("pgo check and pgod judge differently:\n%s\n%s", verdicts[0], verdicts[1])
	}
	if !strings.Contains(verdicts[0], "bind mount source ~/data: ~ and $HOME are not allowed in host paths") {
		t.Errorf("~ not refused: %s", verdicts[0])
	}
}

// TestRenderWithoutEngine: compose config needs no engine, so the render
// runs as the service's user without the docker group.
func TestRenderWithoutEngine(t *testing.T) {
	requireCompose(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as nobody")
	}
	dir := t.TempDir()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if strings.HasPrefix(d, os.TempDir()+"/") {
			os.Chmod(d, 0o755)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: busybox\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nobody := &account{Name: "nobody", UID: 65534, GID: 65534, Home: "/nonexistent"}
	project, vs, err := renderProject(context.Background(), renderRequest{Service: &Service{Name: "team", User: "nobody"}, Checkout: dir, Account: nobody, Docker: "docker"})
	if err != nil || len(vs) > 0 || !strings.Contains(string(project), `"name": "team"`) {
		t.Fatalf("render as nobody: %v, %v\n%s", vs, err, project)
	}
}

func TestRelocate(t *testing.T) {
	stage, checkout := "/var/lib/pgo/shop/.git/pgo-stage", "/var/lib/pgo/shop"
	in := `{"services":{"web":{"build":{"context":"/var/lib/pgo/shop/.git/pgo-stage"},` +
		`"volumes":[{"type":"bind","source":"/var/lib/pgo/shop/.git/pgo-stage/conf","target":"/conf"}],` +
		`"command":["echo","/var/lib/pgo/shop/.git/pgo-stage-evil"]}}}`
	got, ok := relocate([]byte(in), stage, checkout)
	want := `{"services":{"web":{"build":{"context":"/var/lib/pgo/shop"},` +
		`"volumes":[{"type":"bind","source":"/var/lib/pgo/shop/conf","target":"/conf"}],` +
		`"command":["echo","/var/lib/pgo/shop/.git/pgo-stage-evil"]}}}`
	if string(got) != want {
		t.Errorf("relocate =\n%s\nwant\n%s", got, want)
	}
	if ok {
		t.Error("relocate said ok although the staging path still shows inside a string")
	}
	if _, ok := relocate([]byte(`{"services":{"web":{"build":{"context":"/var/lib/pgo/shop/.git/pgo-stage/app"}}}}`), stage, checkout); !ok {
		t.Error("relocate refused a project whose paths all start with the staging path")
	}
}
