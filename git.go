package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// repo runs the system's git on one service's checkout, as the service's
// user, with a clean environment and neither the global nor the system git
// config: a team's repository must not be able to reach the host's settings.
//
// Credentials in the URL never reach a command line, where every local user
// could read them in ps: git gets the URL without them, and a credential
// helper pgod configures hands them over from the environment, which only the
// same user and root can read.
type repo struct {
	dir     string                          // the checkout, <dir>/<name>
	url     string                          // upstream; may hold credentials
	branch  string                          // tracked branch
	acct    *account                        // runs git
	secrets []string                        // scrubbed from every error
	observe func(command string, err error) // counts commands for metrics; may be nil
	log     *slog.Logger                    // --debug shows each command
	config  string                          // git config pgod writes for the user; "" for none

	lsRemoteTimeout time.Duration // how long upstream waits for its answer; 0 for defaultLsRemoteTimeout
	stallTimeout    time.Duration // a transfer that moves nothing this long is cut off; 0 for defaultStallTimeout
}

const (
	// defaultLsRemoteTimeout bounds a poll: ls-remote transfers no objects,
	// so an upstream that has not answered in this time is not going to.
	defaultLsRemoteTimeout = 30 * time.Second
	// defaultStallTimeout ends a clone or fetch whose server went silent,
	// long before the sync's own deadline. A busy server computing a pack
	// still sends keepalives, so silence this long means a stall.
	defaultStallTimeout = 60 * time.Second
	// maxGitOutput bounds what pgod reads of git's standard output; the
	// longest it parses is ls-remote of one ref, a line.
	maxGitOutput = 1 << 20
)

// Environment variables the credential helper reads the URL's credentials from.
const (
	usernameEnv = "PGO_GIT_USERNAME"
	passwordEnv = "PGO_GIT_PASSWORD"
)

// credentialHelper answers git's "get" with the credentials in the
// environment. git runs it with /bin/sh, where printf is a builtin (dash,
// bash, busybox), so the values are in no process's argv.
const credentialHelper = `!f() { test "$1" = get && printf 'username=%s\npassword=%s\n' "$` + usernameEnv + `" "$` + passwordEnv + `"; }; f`

// transports are the protocol names git knows; every one but the upstream's
// is pinned to "never", above whatever the checkout's .git/config says.
var transports = []string{"ext", "fd", "file", "ftp", "ftps", "git", "http", "https", "ssh"}

// env is the environment of git commands that stay in the checkout.
func (r *repo) env() []string { return r.environ(r.pinned()) }

// environ is the clean base environment with config as git's command-level
// config: it overrides every config file, the checkout's .git/config too.
func (r *repo) environ(config [][2]string) []string {
	global := r.config
	if global == "" {
		global = "/dev/null"
	}
	stall := r.stall()
	env := append(r.acct.baseEnv(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+global,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false",
		"SSH_ASKPASS=/bin/false",
		// A dead server or network is noticed within the stall timeout.
		// GIT_SSH_COMMAND wins over core.sshCommand in any config.
		fmt.Sprintf("GIT_SSH_COMMAND=ssh -o BatchMode=yes -o ConnectTimeout=%d -o ServerAliveInterval=%d -o ServerAliveCountMax=4",
			seconds(stall/2), seconds(stall/4)),
		// Set, even empty, it makes git ignore core.gitProxy, a command.
		"GIT_PROXY_COMMAND=",
		"GIT_CONFIG_COUNT="+strconv.Itoa(len(config)),
	)
	for i, kv := range config {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	return env
}

// pinned is the config every git command gets. The checkout belongs to the
// service's user; whatever got into its .git must not make git run commands
// (hooks, fsmonitor, a credential helper, a transport such as ext:: that runs
// one, submodules) nor let a transfer hang.
func (r *repo) pinned() [][2]string {
	config := [][2]string{
		{"core.hooksPath", "/dev/null"},
		{"core.fsmonitor", "false"},
		{"credential.helper", ""}, // an empty value empties the list of helpers
		{"fetch.recurseSubmodules", "false"},
		{"submodule.recurse", "false"},
		// gc --auto after a fetch runs in the command's process group, so
		// the deadline ends it too, instead of a detached daemon.
		{"gc.autoDetach", "false"},
		{"http.lowSpeedLimit", "1"},
		{"http.lowSpeedTime", strconv.Itoa(seconds(r.stall()))},
		{"protocol.allow", "never"},
	}
	allowed := allowedTransports(transportOf(r.url))
	for _, t := range transports {
		if !slices.Contains(allowed, t) {
			config = append(config, [2]string{"protocol." + t + ".allow", "never"})
		}
	}
	for _, t := range allowed {
		config = append(config, [2]string{"protocol." + t + ".allow", "always"})
	}
	return config
}

// remoteEnv is the environment of a command that reaches the upstream: the
// credentials of the URL, handed to git by a helper scoped to the upstream's
// own scheme, host and port, so a redirect to another host never gets them.
func (r *repo) remoteEnv() ([]string, error) {
	_, cred := splitCredentials(r.url)
	config := r.pinned()
	if cred == nil {
		return r.environ(config), nil
	}
	if strings.ContainsAny(cred.username+cred.password, "\n\x00") {
		return nil, errors.New("the repository URL's credentials hold a line break or NUL; git cannot take them")
	}
	config = append(config, [2]string{"credential." + cred.scope + ".helper", credentialHelper})
	return append(r.environ(config), usernameEnv+"="+cred.username, passwordEnv+"="+cred.password), nil
}

// stall is how long a transfer may move nothing before git gives it up.
func (r *repo) stall() time.Duration {
	if r.stallTimeout > 0 {
		return r.stallTimeout
	}
	return defaultStallTimeout
}

// seconds is d in whole seconds, at least one.
func seconds(d time.Duration) int { return max(1, int(d/time.Second)) }

// git runs git with args in the environment of env() and returns its
// standard output. Errors carry git's standard error, with the repository's
// credentials scrubbed.
func (r *repo) git(ctx context.Context, args ...string) ([]byte, error) {
	return r.run(ctx, r.env(), "", args...)
}

// remote runs a git command that reaches the upstream, in dir ("" for
// pgod's own working directory), with the URL's credentials in its
// environment. The URL in args must be plainURL, without them.
func (r *repo) remote(ctx context.Context, dir string, args ...string) ([]byte, error) {
	env, err := r.remoteEnv()
	if err != nil {
		return nil, err
	}
	return r.run(ctx, env, dir, args...)
}

func (r *repo) run(ctx context.Context, env []string, dir string, args ...string) ([]byte, error) {
	if r.log != nil {
		r.log.Debug("run", "cmd", redact("git "+strings.Join(args, " "), r.secrets))
	}
	cmd := r.acct.command(ctx, env, "git", args...)
	cmd.Dir = dir
	stdout := &cappedBuffer{max: maxGitOutput}
	stderr := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	verb := "git " + args[0]
	if args[0] == "-C" && len(args) > 2 {
		verb = "git " + args[2]
	}
	if err == nil && stdout.over {
		err = fmt.Errorf("output exceeds %d bytes", maxGitOutput)
	}
	if r.observe != nil {
		r.observe(verb, err)
	}
	if err == nil {
		return stdout.buf.Bytes(), nil
	}
	msg := redact(lastLines(strings.TrimSpace(stderr.String()), 5), r.secrets)
	switch {
	case stdout.over:
		return nil, fmt.Errorf("%s: output exceeds %d bytes; pgod reads no more", verb, maxGitOutput)
	case ctx.Err() != nil && msg != "":
		return nil, fmt.Errorf("%s: %w: %s", verb, ctx.Err(), msg)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: %w", verb, ctx.Err())
	case msg != "":
		return nil, fmt.Errorf("%s: %s", verb, msg)
	}
	return nil, fmt.Errorf("%s: %s", verb, redact(err.Error(), r.secrets))
}

// gitCredential is what a URL's userinfo hands to git's credential helper.
type gitCredential struct {
	username, password string
	scope              string // scheme://host[:port] the helper answers for
}

// splitCredentials returns u without its credentials, and them. Only
// http(s) URLs carry any: a user name in ssh://git@host or git@host:path is
// not a secret and stays. A lone http(s) userinfo is a token, sent as the
// user name with an empty password, as git and curl do for it.
func splitCredentials(u string) (string, *gitCredential) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || !isHTTP(scheme) {
		return u, nil
	}
	userinfo, after, ok := splitUserinfo(rest)
	if !ok {
		return u, nil
	}
	user, password, _ := strings.Cut(userinfo, ":")
	host := after
	if end := strings.IndexAny(after, "/?#"); end >= 0 {
		host = after[:end]
	}
	return scheme + "://" + after, &gitCredential{
		username: urlDecode(user),
		password: urlDecode(password),
		scope:    strings.ToLower(scheme) + "://" + host,
	}
}

// urlDecode undoes percent-encoding as git does for userinfo; a malformed
// escape stays as written.
func urlDecode(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// plainURL is the upstream's URL as it goes on git's command line.
func (r *repo) plainURL() string {
	plain, _ := splitCredentials(r.url)
	return plain
}

// transportOf names the transport git uses for u, as protocol.<name>.allow
// spells it: a remote helper ("helper::address"), the scheme of a URL, ssh
// for scp-style host:path, file for a path.
func transportOf(u string) string {
	if helper, _, ok := strings.Cut(u, "::"); ok && helper != "" && !strings.ContainsAny(helper, ":/") {
		return strings.ToLower(helper)
	}
	if scheme, _, ok := strings.Cut(u, "://"); ok && scheme != "" && !strings.ContainsAny(scheme, "/@") {
		switch s := strings.ToLower(scheme); s {
		case "git+ssh", "ssh+git":
			return "ssh"
		default:
			return s
		}
	}
	if colon := strings.IndexByte(u, ':'); colon > 0 && !strings.Contains(u[:colon], "/") {
		return "ssh"
	}
	return "file"
}

// allowedTransports are the transports git may use for an upstream reached
// by t: an http upstream may redirect to https, never the other way round.
func allowedTransports(t string) []string {
	if t == "http" {
		return []string{"http", "https"}
	}
	return []string{t}
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
	config := []byte("[safe]\n\tdirectory = " + local + "\n")
	if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, config) {
		// Made again at every start when missing or different: not synced.
		if err := replaceFile(path, config, 0o644, nil); err != nil {
			return err
		}
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
	_, err := r.remote(ctx, "/", "clone", "--quiet", "--no-tags", "--single-branch", "--branch", r.branch, "--", r.plainURL(), r.dir)
	if err == nil {
		// pgod passes the URL on every fetch; keeping it out of .git/config
		// keeps it, and so a remote a hostile config could redefine, out
		// of the checkout that a container may bind as "./".
		err = r.forgetRemote()
	}
	if err != nil {
		os.RemoveAll(r.dir)
	}
	return err
}

// forgetRemote drops the remote and the branch's tracking from the config
// git clone just wrote, as "git remote remove origin" would, without
// starting git again: a cold start of hundreds of services pays for every
// process. Nothing but that clone has touched the file yet.
func (r *repo) forgetRemote() error {
	path := filepath.Join(r.dir, ".git", "config")
	data, err := readNoFollow(path, maxGitConfig)
	if err != nil {
		return fmt.Errorf("git clone: %w", err)
	}
	kept := withoutSections(string(data), `[remote "origin"]`, `[branch "`+r.branch+`"]`)
	// Not synced: git does not sync its config either, and a clone cut
	// short by a crash is made again.
	if err := replaceFile(path, []byte(kept), 0o644, r.acct); err != nil {
		return fmt.Errorf("git clone: config: %w", err)
	}
	return nil
}

// maxGitConfig bounds what pgod reads of a checkout's .git/config.
const maxGitConfig = 64 << 10

// withoutSections is a git config file as git writes it, one section header
// a line, without the sections whose header is one of headers.
func withoutSections(config string, headers ...string) string {
	var b strings.Builder
	drop := false
	for line := range strings.Lines(config) {
		if h := strings.TrimSpace(line); strings.HasPrefix(h, "[") {
			drop = slices.Contains(headers, h)
		}
		if !drop {
			b.WriteString(line)
		}
	}
	return b.String()
}

// upstream asks the remote for the branch's commit without transferring
// objects, within lsRemoteTimeout. It runs outside the checkout, so nothing
// in the checkout's .git/config applies. ls-remote matches its pattern
// against the end of ref names (a branch "x/refs/heads/main" matches
// "refs/heads/main" too), so only the line whose ref is exactly the branch's
// counts.
func (r *repo) upstream(ctx context.Context) (string, error) {
	timeout := r.lsRemoteTimeout
	if timeout <= 0 {
		timeout = defaultLsRemoteTimeout
	}
	lsCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ref := "refs/heads/" + r.branch
	out, err := r.remote(lsCtx, "/", "ls-remote", "--heads", "--", r.plainURL(), ref)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("git ls-remote: timed out after %s waiting for the upstream to answer", timeout)
		}
		return "", err
	}
	for line := range strings.Lines(string(out)) {
		commit, name, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		if ok && name == ref {
			if !isObjectID(commit) {
				return "", fmt.Errorf("git ls-remote: %q is not a commit id", commit)
			}
			return commit, nil
		}
	}
	return "", fmt.Errorf("branch %q not found upstream", r.branch)
}

// isObjectID reports whether s is a full SHA-1 or SHA-256 object id.
func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

// fetch brings the branch's objects in; call it only when upstream moved.
// The refspec names the branch in full, which git matches exactly before any
// other ref whose name merely ends in it. A remote named as the URL in
// .git/config would lend the fetch its upload-pack, a command git runs for a
// local upstream, and only the command line overrides it.
func (r *repo) fetch(ctx context.Context) error {
	_, err := r.remote(ctx, "", "-C", r.dir, "fetch", "--quiet", "--no-tags", "--upload-pack=git-upload-pack", "--", r.plainURL(),
		"+refs/heads/"+r.branch+":refs/remotes/origin/"+r.branch)
	return err
}

// head returns the commit checked out. It reads .git's files as rev-parse
// would, and runs rev-parse only when they hold anything else than a
// detached HEAD or a branch's plain ref: every deploy asks.
func (r *repo) head(ctx context.Context) (string, error) {
	if commit, ok := r.headFromFiles(); ok {
		return commit, nil
	}
	out, err := r.git(ctx, "-C", r.dir, "rev-parse", "HEAD")
	return strings.TrimSpace(string(out)), err
}

// headFromFiles reads HEAD: a commit id, or "ref: refs/heads/NAME" whose
// id is in its loose ref file or in packed-refs. Links are not followed.
func (r *repo) headFromFiles() (string, bool) {
	gitDir := filepath.Join(r.dir, ".git")
	data, err := readNoFollow(filepath.Join(gitDir, "HEAD"), 4<<10)
	if err != nil {
		return "", false
	}
	head := strings.TrimSpace(string(data))
	if isObjectID(head) {
		return head, true
	}
	ref, ok := strings.CutPrefix(head, "ref: ")
	if !ok || !strings.HasPrefix(ref, "refs/heads/") || !fs.ValidPath(ref) {
		return "", false
	}
	if data, err := readNoFollow(filepath.Join(gitDir, ref), 4<<10); err == nil {
		id := strings.TrimSpace(string(data))
		return id, isObjectID(id)
	}
	packed, err := readNoFollow(filepath.Join(gitDir, "packed-refs"), maxGitOutput)
	if err != nil {
		return "", false
	}
	for line := range strings.Lines(string(packed)) {
		id, name, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && name == ref && isObjectID(id) {
			return id, true
		}
	}
	return "", false
}

// hasCommit reports, by its error, whether the clone holds commit.
func (r *repo) hasCommit(ctx context.Context, commit string) error {
	_, err := r.git(ctx, "-C", r.dir, "cat-file", "-e", commit+"^{commit}")
	return err
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
