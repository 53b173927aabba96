//go:build e2e

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// policyE2ENeed skips unless the engine, Compose v2 and the test image answer.
func policyE2ENeed(t *testing.T) {
	t.Helper()
	requireCompose(t)
	if out, err := exec.Command("docker", "image", "inspect", "pgo-test-busybox:e2e").CombinedOutput(); err != nil {
		t.Skipf("E2E SKIPPED: no engine or no test image pgo-test-busybox:e2e: %v: %s", err, bytes.TrimSpace(out))
	}
}

// TestE2EPolicyDeploysWhatWasChecked renders and validates a project, deploys
// the validated JSON on stdin as the daemon does, and inspects what the engine
// runs: the mounts are the host paths the policy resolved ("$$" escapes
// included) and nothing was re-interpolated on the way.
func TestE2EPolicyDeploysWhatWasChecked(t *testing.T) {
	policyE2ENeed(t)
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkout, data := filepath.Join(base, "checkout"), filepath.Join(base, "data", "pgopolicye2e")
	for _, d := range []string{filepath.Join(checkout, "${X}"), filepath.Join(data, "out")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	compose := `services:
  web:
    image: pgo-test-busybox:e2e
    command: ["sh", "-c", "echo $$HOME > /out/home; sleep 600"]
    volumes:
      - "./$${X}:/x:ro"
      - ${DATA}/out:/out
`
	if err := os.WriteFile(filepath.Join(checkout, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(checkout, ".env"), []byte("X=/etc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := &Service{Name: "pgopolicye2e", Env: []string{"DATA=" + data}}
	r := renderRequest{Service: svc, Checkout: checkout, DataDir: data, Docker: "docker"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	project, vs, err := renderProject(ctx, r)
	if err != nil || len(vs) > 0 {
		t.Fatalf("renderProject: %v %v", err, vs)
	}
	run := func(stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "docker", append([]string{"compose", "-p", svc.Name, "-f", "-", "--project-directory", checkout}, args...)...)
		cmd.Env = renderEnv(svc)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		cmd := exec.Command("docker", "compose", "-p", svc.Name, "-f", "-", "--project-directory", checkout, "down", "-v", "-t", "0")
		cmd.Stdin = bytes.NewReader(project)
		cmd.Run()
	})
	run(project, "up", "-d")

	id := strings.TrimSpace(run(project, "ps", "-q", "web"))
	out, err := exec.Command("docker", "inspect", id).Output()
	if err != nil {
		t.Fatal(err)
	}
	var inspect []struct {
		HostConfig struct{ Privileged bool }
		Mounts     []struct{ Source, Destination string }
	}
	if err := json.Unmarshal(out, &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("docker inspect: %v", err)
	}
	if inspect[0].HostConfig.Privileged {
		t.Error("container runs privileged")
	}
	mounts := map[string]string{}
	for _, m := range inspect[0].Mounts {
		mounts[m.Destination] = m.Source
	}
	if got, want := mounts["/x"], filepath.Join(checkout, "${X}"); got != want {
		t.Errorf("/x mounted from %q; want the literal %q the policy checked (not /etc from .env)", got, want)
	}
	if got, want := mounts["/out"], filepath.Join(data, "out"); got != want {
		t.Errorf("/out mounted from %q; want %q", got, want)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		home, err := os.ReadFile(filepath.Join(data, "out", "home"))
		if err == nil && len(home) > 0 {
			if strings.TrimSpace(string(home)) == "" || strings.Contains(string(home), "$") {
				t.Errorf("container's $HOME = %q; the $$ escape did not reach the container's shell", home)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container never wrote /out/home")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
