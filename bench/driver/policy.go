package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// policy times "pgo check" on a realistic compose file of -compose-services
// services, rendered by the real Docker Compose, and "docker compose config"
// alone with the flags pgo uses, for the share of the check spent in it.
func (b *bench) policy() {
	figure := fmt.Sprintf("pgo check, %d-service compose file", b.o.composeSvcs)
	dir, err := b.policyProject()
	if err != nil {
		b.fail(figure, err)
		return
	}
	check := []string{b.o.pgo, "check", dir}
	if out, code := runTimed(check); code != 0 {
		// 1: violations in a project meant to be benign; 2: could not check.
		b.fail(figure, fmt.Errorf("exit %d, want 0:\n%s", code, firstLines(out, 8)))
		return
	}
	config := []string{"docker", "compose", "-p", "policybench", "-f", filepath.Join(dir, "compose.yaml"),
		"--project-directory", dir, "--profile", "*", "config", "--format", "json"}
	version := []string{"docker", "compose", "version", "--short"}
	checkMs, err := b.repeatTimed(check)
	if err != nil {
		b.fail(figure, err)
		return
	}
	configMs, err := b.repeatTimed(config)
	if err != nil {
		b.fail("docker compose config alone", err)
		return
	}
	versionMs, err := b.repeatTimed(version)
	if err != nil {
		b.fail("docker compose version alone", err)
		return
	}
	b.rows = append(b.rows,
		samplesRow(figure, "ms", checkMs, 0, 0),
		samplesRow("  docker compose config alone", "ms", configMs, 0, 0),
		samplesRow("  docker compose version alone", "ms", versionMs, 0, 0),
		valueRow("  share of pgo check in compose config", "%", 100*median(configMs)/median(checkMs), "", 0, 0),
		valueRow("  share of pgo check in pgo itself (check - config - version)", "%",
			100*(median(checkMs)-median(configMs)-median(versionMs))/median(checkMs), "", 0, 0),
	)
}

// repeatTimed runs argv once to warm caches, then -check-runs times, and
// returns the wall times in milliseconds.
func (b *bench) repeatTimed(argv []string) ([]float64, error) {
	var ms []float64
	for i := 0; i <= b.o.checkRuns; i++ {
		start := time.Now()
		out, code := runTimed(argv)
		elapsed := time.Since(start)
		if code != 0 {
			return nil, fmt.Errorf("%s: exit %d:\n%s", strings.Join(argv[:3], " "), code, firstLines(out, 8))
		}
		if i > 0 {
			ms = append(ms, elapsed.Seconds()*1000)
		}
	}
	return ms, nil
}

// composeEnv is the environment pgo gives compose: remote resources off.
var composeEnv = []string{"COMPOSE_EXPERIMENTAL_GIT_REMOTE=false", "COMPOSE_EXPERIMENTAL_OCI_REMOTE=false"}

// runTimed runs argv and returns its combined output and exit code (-1: did not start).
func runTimed(argv []string) (string, int) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), composeEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	return err.Error(), -1
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}

// policyProject writes a benign project as a team would: a web tier behind
// an internal network, each service with a bind mount inside the checkout, a
// named volume, a health check and labels.
func (b *bench) policyProject() (string, error) {
	dir := filepath.Join(b.o.work, "policy")
	var s strings.Builder
	s.WriteString("services:\n")
	for i := 1; i <= b.o.composeSvcs; i++ {
		name := fmt.Sprintf("app%02d", i)
		if err := os.MkdirAll(filepath.Join(dir, "data", name), 0o755); err != nil {
			return "", err
		}
		fmt.Fprintf(&s, `  %[1]s:
    image: pgo-test-busybox:latest
    command: ["httpd", "-f", "-p", "8080"]
    restart: unless-stopped
    environment:
      APP_NAME: %[1]s
      LOG_LEVEL: info
    volumes:
      - ./data/%[1]s:/data
      - cache-%[1]s:/cache
    networks:
      - backend
    labels:
      bench.tier: web
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://localhost:8080/"]
      interval: 30s
      timeout: 5s
      retries: 3
`, name)
		if i > 1 {
			s.WriteString("    depends_on:\n      - app01\n")
		}
	}
	s.WriteString("networks:\n  backend: {}\nvolumes:\n")
	for i := 1; i <= b.o.composeSvcs; i++ {
		fmt.Fprintf(&s, "  cache-app%02d: {}\n", i)
	}
	return dir, os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(s.String()), 0o644)
}

// binarySize is the size of the one pgo binary; pgod and pgoctl are symlinks
// to it, where the reference ships two binaries.
func (b *bench) binarySize() {
	fi, err := os.Stat(b.o.pgo)
	if err != nil {
		b.fail("binary size", err)
		return
	}
	b.rows = append(b.rows, valueRow("binary size of pgo (pgod, pgoctl: symlinks)", "MB", mb(fi.Size()), "", refBinaryMB, betterBy))
}

// gitFloor measures what git alone costs for what pgod must do with it: a
// clone of every repository (cold start) and an ls-remote of every branch
// (one poll cycle), run one after another without pgo. No daemon can use
// less CPU than this while it shells out to git.
func (b *bench) gitFloor() {
	dst := filepath.Join(b.o.work, "floor")
	var clone, lsRemote strings.Builder
	for i, name := range b.names {
		fmt.Fprintf(&clone, "git clone -q --single-branch -b main %q %q || exit 1\n", b.repository(name), filepath.Join(dst, strconv.Itoa(i)))
		fmt.Fprintf(&lsRemote, "git ls-remote %q refs/heads/main >/dev/null || exit 1\n", b.repository(name))
	}
	for _, f := range []struct {
		figure, script string
	}{
		{fmt.Sprintf("floor: git clone ×%d, no pgo", len(b.names)), clone.String()},
		{fmt.Sprintf("floor: git ls-remote ×%d, no pgo", len(b.names)), lsRemote.String()},
	} {
		cmd := exec.Command("sh", "-c", f.script)
		cmd.Env = append(os.Environ(), gitEnv...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.fail(f.figure, fmt.Errorf("%v: %s", err, firstLines(string(out), 3)))
			continue
		}
		// The shell waits for every git, so its rusage holds theirs.
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		b.rows = append(b.rows, valueRow(f.figure, "CPU s", cpu.Seconds(), "", 0, 0))
	}
	os.RemoveAll(dst)
}
