package main

// The render: "docker compose config" turns the team's file into the
// canonical JSON that is checked and, exactly as checked, deployed. Compose
// runs as the service's user with that user's own groups (no docker group:
// rendering needs no engine), in an environment pgo makes up whole, and
// within bounds: a hostile file must not cost the host minutes of CPU or
// gigabytes of memory.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	// renderTimeout bounds one render; real projects take well under a second.
	renderTimeout = 60 * time.Second
	// renderMemory bounds the data segment of docker and compose (prlimit
	// --data); a real project needs some 50 MiB.
	renderMemory = 512 << 20
	// maxRendered bounds the canonical JSON.
	maxRendered = 8 << 20
	// renderHome is HOME for every render, in pgod as in pgo check, so "~"
	// and $HOME mean the same to both; host paths under it are refused.
	renderHome = "/nonexistent"
)

// composeConfigArgs is the one way pgo asks compose for the canonical project:
// one explicit file (so no override file is ever merged in), the checkout as
// project directory (its .env is read by compose from there), every profile.
func composeConfigArgs(name, file, checkout string) []string {
	return []string{"compose", "-p", name, "-f", file, "--project-directory", checkout,
		"--profile", "*", "config", "--format", "json"}
}

// renderEnv is the whole environment compose renders with, the same for
// pgod and pgo check: a minimal PATH, a fixed HOME, the service's user,
// remote includes and extends switched off, and the service's env from
// pgo.toml. Nothing of the caller's own environment.
func renderEnv(svc *Service) []string {
	var none *account // the base environment, without an account's HOME
	env := append(none.baseEnv(), "HOME="+renderHome, "USER="+svc.User, "LOGNAME="+svc.User,
		"COMPOSE_EXPERIMENTAL_GIT_REMOTE=false", "COMPOSE_EXPERIMENTAL_OCI_REMOTE=false")
	return append(env, svc.Env...)
}

// renderCompose runs "docker compose config" as the service's account and
// returns the canonical JSON. A project compose refuses, or that breaks the
// bounds, comes back as a violation; err is for when compose could not run
// or ctx was cancelled.
func renderCompose(ctx context.Context, r renderRequest, file string) ([]byte, []violation, error) {
	return renderWithin(ctx, r, file, renderTimeout)
}

// renderWithin is renderCompose with its time bound given.
func renderWithin(ctx context.Context, r renderRequest, file string, timeout time.Duration) ([]byte, []violation, error) {
	docker := r.Docker
	if docker == "" {
		docker = "docker"
	}
	docker, err := exec.LookPath(docker)
	if err != nil {
		return nil, nil, fmt.Errorf("docker compose config: %w", err)
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		return nil, nil, fmt.Errorf("prlimit (util-linux) bounds the memory of docker compose config and is not installed: %w", err)
	}
	bounded, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	limit := strconv.Itoa(renderMemory)
	args := append([]string{"--data=" + limit + ":" + limit, "--", docker}, composeConfigArgs(r.Service.Name, file, r.Checkout)...)
	cmd := r.Account.command(bounded, renderEnv(r.Service), prlimit, args...)
	cmd.Dir = r.Checkout
	cmd.WaitDelay = 5 * time.Second
	stdout := &cappedBuffer{max: maxRendered, full: cancel}
	head, tail := &cappedBuffer{max: 4 << 10}, newTail(maxTail)
	cmd.Stdout, cmd.Stderr = stdout, teeWriter{head, tail}
	err = cmd.Run()
	if r.Observe != nil {
		r.Observe("compose config", err)
	}
	refused := func(format string, args ...any) ([]byte, []violation, error) {
		return nil, []violation{{Msg: fmt.Sprintf(format, args...)}}, nil
	}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return nil, nil, fmt.Errorf("docker compose config: %w", ctx.Err())
	case stdout.over:
		return refused("the rendered project is larger than %d bytes, which is not allowed", maxRendered)
	case errors.Is(bounded.Err(), context.DeadlineExceeded):
		return refused("docker compose config did not finish within %s; the project is too big to render", timeout)
	case err == nil:
		return stdout.Bytes(), nil, nil
	case outOfMemory(head.String() + tail.String()):
		return refused("docker compose config needed more than %d MiB of memory; the project is too big to render", renderMemory>>20)
	case errors.As(err, &exit):
		msg := composeMessage(head.String(), tail.String())
		if msg == "" {
			msg = exit.String()
		}
		return refused("docker compose config refused the project: %s", redact(msg, r.Service.secrets()))
	default:
		return nil, nil, fmt.Errorf("docker compose config: %w", err)
	}
}

// outOfMemory reports whether a Go program died for want of memory, which
// is how the data limit shows.
func outOfMemory(stderr string) bool {
	for _, s := range []string{"out of memory", "cannot allocate memory", "pthread_create failed"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

// composeMessage is what compose said: its last lines, or for a crash the
// first line, which names it (the rest is a stack dump).
func composeMessage(head, tail string) string {
	head = strings.TrimSpace(head)
	if strings.HasPrefix(head, "panic:") || strings.HasPrefix(head, "fatal error:") {
		return firstLineOf(head)
	}
	return lastLines(strings.TrimSpace(tail), 3)
}

// teeWriter writes to both, as io.MultiWriter would, but never stops at the
// first writer's error: the head of standard error is kept, and the tail too.
type teeWriter struct{ first, second io.Writer }

func (t teeWriter) Write(p []byte) (int, error) {
	t.first.Write(p)
	t.second.Write(p)
	return len(p), nil
}

// minCompose is the oldest Compose v2 pgo accepts: older releases lack the
// canonical JSON output and the remote-resource switches pgo relies on.
var minCompose = [3]int{2, 40, 2}

var composeVersionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)`)

// composeVersion returns the Compose v2 version, or an error when compose is missing, v1, or older than 2.40.2.
func composeVersion(ctx context.Context, docker string) (string, error) {
	if docker == "" {
		docker = "docker"
	}
	var a *account // as the caller: the version does not depend on the user
	cmd := a.command(ctx, a.baseEnv(), docker, "compose", "version", "--short")
	stderr := newTail(maxTail)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if _, ok := err.(*exec.ExitError); ok && msg != "" {
			return "", fmt.Errorf("docker compose v2 is required (%s compose version: %s)", docker, firstLineOf(msg))
		}
		return "", fmt.Errorf("docker compose v2 is required: %s compose version: %w", docker, err)
	}
	return checkComposeVersion(strings.TrimSpace(string(out)))
}

// checkComposeVersion checks the output of "docker compose version --short".
func checkComposeVersion(v string) (string, error) {
	m := composeVersionRE.FindStringSubmatch(v)
	if m == nil {
		return "", fmt.Errorf("docker compose: cannot parse version %q; Compose v2 >= %d.%d.%d is required", v, minCompose[0], minCompose[1], minCompose[2])
	}
	var got [3]int
	for i := range got {
		got[i], _ = strconv.Atoi(m[i+1])
	}
	if got[0] < 2 {
		return "", fmt.Errorf("docker compose %s is Compose v1, which pgo does not support; install Compose v2 >= %d.%d.%d", v, minCompose[0], minCompose[1], minCompose[2])
	}
	for i := range got {
		if got[i] != minCompose[i] {
			if got[i] < minCompose[i] {
				return "", fmt.Errorf("docker compose %s is too old; pgo needs Compose v2 >= %d.%d.%d", v, minCompose[0], minCompose[1], minCompose[2])
			}
			break
		}
	}
	return strings.TrimPrefix(m[0], "v"), nil
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
