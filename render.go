package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// composeConfigArgs is the one way pgo asks compose for the canonical project:
// one explicit file (so no override file is ever merged in), the checkout as
// project directory (its .env is read by compose from there), every profile.
func composeConfigArgs(name, file, checkout string) []string {
	return []string{"compose", "-p", name, "-f", file, "--project-directory", checkout,
		"--profile", "*", "config", "--format", "json"}
}

// composeEnv is the whole environment compose renders with: the account's
// minimal one, remote includes and extends switched off, and the service's env
// from pgo.toml. Nothing of pgod's own environment.
func composeEnv(a *account, svc *Service) []string {
	env := a.baseEnv()
	env = append(env, "COMPOSE_EXPERIMENTAL_GIT_REMOTE=false", "COMPOSE_EXPERIMENTAL_OCI_REMOTE=false")
	return append(env, svc.Env...)
}

// render runs "docker compose config" as the service's account and returns
// the canonical JSON. A project compose refuses comes back as a violation
// carrying compose's message; err is for when compose could not run.
func renderCompose(ctx context.Context, r renderRequest, file string) ([]byte, []violation, error) {
	docker := r.Docker
	if docker == "" {
		docker = "docker"
	}
	cmd := r.Account.command(ctx, composeEnv(r.Account, r.Service), docker, composeConfigArgs(r.Service.Name, file, r.Checkout)...)
	cmd.Dir = r.Checkout
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), nil, nil
	case ctx.Err() != nil:
		return nil, nil, fmt.Errorf("docker compose config: %w", ctx.Err())
	case errors.As(err, &exit):
		msg := redactEnv(strings.TrimSpace(stderr.String()), r.Service.Env)
		if msg == "" {
			msg = exit.String()
		}
		return nil, []violation{{Msg: "docker compose config refused the project: " + msg}}, nil
	default:
		return nil, nil, fmt.Errorf("docker compose config: %w", err)
	}
}

// redactEnv blanks the values of the service's env (operator secrets such as
// tokens) should compose quote one in an error message.
func redactEnv(msg string, env []string) string {
	for _, kv := range env {
		_, v, ok := strings.Cut(kv, "=")
		if ok && len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "***")
		}
	}
	return msg
}
