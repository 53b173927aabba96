package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// policy times "pgo check" on a realistic compose file of -compose-services
// services, rendered by the real Docker Compose. A timing wrapper put first on
// pgo check's PATH records each docker call it makes, which gives the share of
// the check spent in compose; the render call is then also timed alone.
func (b *bench) policy() {
	figure := fmt.Sprintf("pgo check, %d-service compose file", b.o.composeSvcs)
	dir, err := b.policyProject()
	if err != nil {
		b.fail(figure, err)
		return
	}
	calls, pathEnv, err := b.timingDocker()
	if err != nil {
		b.fail(figure, err)
		return
	}
	check := []string{b.o.pgo, "check", dir}
	if out, code := runTimed(check, nil); code != 0 {
		// 1: violations in a project meant to be benign; 2: could not check.
		b.fail(figure, fmt.Errorf("exit %d, want 0:\n%s", code, firstLines(out, 8)))
		return
	}
	checkMs, _, err := b.repeatTimed(check, nil)
	if err != nil {
		b.fail(figure, err)
		return
	}
	wrappedMs, windows, err := b.repeatTimed(check, []string{pathEnv})
	if err != nil {
		b.fail(figure, err)
		return
	}
	calls.read()
	var share, own []float64
	for i, ms := range wrappedMs {
		inDocker := calls.within(windows[i])
		share = append(share, 100*inDocker/ms)
		own = append(own, ms-inDocker)
	}
	b.add(
		samplesRow(figure, "ms", checkMs),
		samplesRow("  share of pgo check spent in docker", "%", share),
		samplesRow("  pgo check's own part (check − docker calls)", "ms", own),
	)
	b.note("docker calls per pgo check: %s", calls.perRun(windows))
	config := calls.configArgs()
	if config == nil {
		return
	}
	configMs, _, err := b.repeatTimed(append([]string{calls.real}, config...), nil)
	if err != nil {
		b.fail("docker compose config alone", err)
		return
	}
	b.add(samplesRow("  docker compose config alone, pgo's flags", "ms", configMs))
}

// window is when one timed run ran.
type window struct{ start, end time.Time }

// repeatTimed runs argv once to warm caches, then -check-runs times, and
// returns the wall times in milliseconds and when each ran.
func (b *bench) repeatTimed(argv, env []string) ([]float64, []window, error) {
	var ms []float64
	var windows []window
	for i := 0; i <= b.o.checkRuns; i++ {
		start := time.Now()
		out, code := runTimed(argv, env)
		end := time.Now()
		if code != 0 {
			return nil, nil, fmt.Errorf("%s: exit %d:\n%s", strings.Join(argv[:min(3, len(argv))], " "), code, firstLines(out, 8))
		}
		if i > 0 {
			ms = append(ms, end.Sub(start).Seconds()*1000)
			windows = append(windows, window{start, end})
		}
	}
	return ms, windows, nil
}

// dockerCalls are the calls the timing wrapper recorded: "<start-ns> <end-ns> <args>".
type dockerCalls struct {
	real  string // the docker the wrapper runs
	log   string
	calls []dockerCall
}

type dockerCall struct {
	start, end time.Time
	args       []string
}

// timingDocker writes a docker wrapper that records each call's start and
// end, and returns the PATH that puts it first. (pgo check runs "docker" as
// found on its PATH, and gives it a clean environment of its own.)
func (b *bench) timingDocker() (*dockerCalls, string, error) {
	real, err := exec.LookPath("docker")
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(b.o.work, "timing-docker")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	c := &dockerCalls{real: real, log: filepath.Join(dir, "calls.log")}
	script := fmt.Sprintf(`#!/bin/sh
# Records each docker call of pgo check with its start and end (bench/driver).
start=$(date +%%s%%N)
%q "$@"
rc=$?
echo "$start $(date +%%s%%N) $*" >>%q
exit $rc
`, real, c.log)
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		return nil, "", err
	}
	return c, "PATH=" + dir + ":" + os.Getenv("PATH"), nil
}

func (c *dockerCalls) read() {
	data, _ := os.ReadFile(c.log)
	c.calls = nil
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		start, _ := strconv.ParseInt(f[0], 10, 64)
		end, _ := strconv.ParseInt(f[1], 10, 64)
		c.calls = append(c.calls, dockerCall{time.Unix(0, start), time.Unix(0, end), f[2:]})
	}
}

// within is the time, in milliseconds, spent in docker calls made during w.
func (c *dockerCalls) within(w window) float64 {
	var ms float64
	for _, call := range c.calls {
		if !call.start.Before(w.start) && !call.end.After(w.end) {
			ms += call.end.Sub(call.start).Seconds() * 1000
		}
	}
	return ms
}

// perRun counts the calls made during windows by subcommand, per window.
func (c *dockerCalls) perRun(windows []window) string {
	count := map[string]int{}
	for _, w := range windows {
		for _, call := range c.calls {
			if !call.start.Before(w.start) && !call.end.After(w.end) {
				count[subcommand(call.args)]++
			}
		}
	}
	var parts []string
	for sub, n := range count {
		parts = append(parts, fmt.Sprintf("%s %.1f", sub, float64(n)/float64(len(windows))))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// configArgs are the arguments of pgo check's "compose config" call.
func (c *dockerCalls) configArgs() []string {
	for _, call := range c.calls {
		if subcommand(call.args) == "compose config" {
			return call.args
		}
	}
	return nil
}

// composeEnv is the environment pgo gives compose: remote resources off.
var composeEnv = []string{"COMPOSE_EXPERIMENTAL_GIT_REMOTE=false", "COMPOSE_EXPERIMENTAL_OCI_REMOTE=false"}

// runTimed runs argv and returns its combined output and exit code (-1: did not start).
func runTimed(argv, env []string) (string, int) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), composeEnv...), env...)
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
    image: `+benchImage+`
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

// binarySize is the size of the one pgo binary; pgod and pgoctl are symlinks to it.
func (b *bench) binarySize() {
	fi, err := os.Stat(b.o.pgo)
	if err != nil {
		b.fail("binary size", err)
		return
	}
	b.add(valueRow("binary size of pgo (pgod, pgoctl: symlinks)", "MiB", mib(fi.Size()), ""))
}

// realComposeCost measures what one call of the real Compose, and of the
// plain docker ps that pgod's drift check runs through the CLI, costs in CPU:
// what the substitute docker hides.
func (b *bench) realComposeCost() {
	b.realCallCost("real docker compose ps: CPU per call",
		"docker", "compose", "-p", "pgo-bench-absent", "ps", "-a", "--format", "json")
	b.realCallCost("real docker ps by project label: CPU per call",
		"docker", "ps", "-a", "--filter", "label=com.docker.compose.project=pgo-bench-absent",
		"--filter", "label=com.docker.compose.oneoff=False", "--format", "{{.Names}}")
}

// realCallCost runs a real command a few times and returns its median CPU in
// milliseconds (0 when it fails), adding a row for it.
func (b *bench) realCallCost(figure string, argv ...string) float64 {
	var cpu []float64
	for i := 0; i <= b.o.checkRuns; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), composeEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.fail(figure, fmt.Errorf("%v: %s", err, firstLines(string(out), 3)))
			return 0
		}
		if i > 0 { // the first warms the caches
			cpu = append(cpu, (cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()).Seconds()*1000)
		}
	}
	b.add(samplesRow(figure, "CPU ms", cpu))
	return median(cpu)
}
