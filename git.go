package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// repo runs the system's git on one service's checkout, as the service's
// user, with a clean environment and neither the global nor the system git
// config: a team's repository must not be able to reach the host's settings.
type repo struct {
	dir     string                          // the checkout, <dir>/<name>
	url     string                          // upstream; may hold credentials
	branch  string                          // tracked branch
	acct    *account                        // runs git
	secrets []string                        // scrubbed from every error
	observe func(command string, err error) // counts commands for metrics; may be nil
	log     *slog.Logger                    // --debug shows each command
	config  string                          // git config pgod writes for the user; "" for none
}

func (r *repo) env() []string {
	global := r.config
	if global == "" {
		global = "/dev/null"
	}
	return append(r.acct.baseEnv(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+global,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false",
		"SSH_ASKPASS=/bin/false",
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes",
		// The checkout belongs to the service's user; whatever got into its
		// .git must not make git run commands: no hooks, no fsmonitor.
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=core.hooksPath", "GIT_CONFIG_VALUE_0=/dev/null",
		"GIT_CONFIG_KEY_1=core.fsmonitor", "GIT_CONFIG_VALUE_1=false",
	)
}

// git runs git with args and returns its standard output. Errors carry git's
// standard error, with the repository's credentials scrubbed.
func (r *repo) git(ctx context.Context, args ...string) ([]byte, error) {
	if r.log != nil {
		r.log.Debug("run", "cmd", redact("git "+strings.Join(args, " "), r.secrets))
	}
	cmd := r.acct.command(ctx, r.env(), "git", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	verb := "git " + args[0]
	if args[0] == "-C" && len(args) > 2 {
		verb = "git " + args[2]
	}
	if r.observe != nil {
		r.observe(verb, err)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%s: %s", verb, redact(lastLines(msg, 5), r.secrets))
	}
	return stdout.Bytes(), nil
}

// writeConfig writes the only git config the service's git sees. A local
// upstream (a path or file:// URL) usually belongs to another user, and git
// refuses such a repository unless it is named as a safe directory, which
// only the global config may do. path is written by root and readable by all.
func (r *repo) writeConfig(path string) error {
	local := strings.TrimPrefix(r.url, "file://")
	if !strings.HasPrefix(local, "/") {
		r.config = ""
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(path, []byte("[safe]\n\tdirectory = "+local+"\n"), 0o644); err != nil {
		return err
	}
	r.config = path
	return nil
}

// cloned reports whether the checkout exists.
func (r *repo) cloned() bool {
	_, err := os.Stat(filepath.Join(r.dir, ".git"))
	return err == nil
}

// clone makes the checkout. A half-made one from an earlier failure is removed first.
func (r *repo) clone(ctx context.Context) error {
	if err := os.RemoveAll(r.dir); err != nil {
		return err
	}
	// git creates the checkout as the service's user, so the parent must be
	// writable by it only for this moment: clone into a fresh directory we own
	// for the user instead.
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(r.dir, int(r.acct.UID), int(r.acct.GID)); err != nil {
		return err
	}
	_, err := r.git(ctx, "clone", "--quiet", "--no-tags", "--single-branch", "--branch", r.branch, "--", r.url, r.dir)
	if err == nil {
		// pgod passes the URL on every fetch; keeping it out of .git/config
		// keeps a token in it out of reach of a container that binds "./".
		_, err = r.git(ctx, "-C", r.dir, "remote", "remove", "origin")
	}
	if err != nil {
		os.RemoveAll(r.dir)
	}
	return err
}

// upstream asks the remote for the branch's commit without transferring objects.
func (r *repo) upstream(ctx context.Context) (string, error) {
	out, err := r.git(ctx, "-C", r.dir, "ls-remote", "--heads", "--", r.url, "refs/heads/"+r.branch)
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 {
		return "", fmt.Errorf("branch %q not found upstream", r.branch)
	}
	return fields[0], nil
}

// fetch brings the branch's objects in; call it only when upstream moved.
func (r *repo) fetch(ctx context.Context) error {
	_, err := r.git(ctx, "-C", r.dir, "fetch", "--quiet", "--no-tags", "--", r.url,
		"+refs/heads/"+r.branch+":refs/remotes/origin/"+r.branch)
	return err
}

// head returns the commit checked out.
func (r *repo) head(ctx context.Context) (string, error) {
	out, err := r.git(ctx, "-C", r.dir, "rev-parse", "HEAD")
	return strings.TrimSpace(string(out)), err
}

// checkout puts commit's files in the checkout. Untracked files (the Caddy
// snippet, data a container wrote) are left alone.
func (r *repo) checkout(ctx context.Context, commit string) error {
	_, err := r.git(ctx, "-C", r.dir, "checkout", "--quiet", "--force", "--detach", commit)
	return err
}

// stage checks commit out into a separate worktree at dir, so a commit can be
// rendered and judged without touching the live checkout.
func (r *repo) stage(ctx context.Context, dir, commit string) error {
	if _, err := os.Stat(dir); err == nil {
		r.unstage(ctx, dir) // left by a crash
	}
	_, err := r.git(ctx, "-C", r.dir, "worktree", "add", "--quiet", "--force", "--detach", dir, commit)
	return err
}

// unstage removes a staging worktree made by stage.
func (r *repo) unstage(ctx context.Context, dir string) {
	r.git(ctx, "-C", r.dir, "worktree", "remove", "--force", dir)
	os.RemoveAll(dir)
	r.git(ctx, "-C", r.dir, "worktree", "prune")
}

// lastLines keeps the last n lines of s: git's useful message is at the end.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
