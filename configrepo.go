package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// configRepo is pgod's own pgo.toml on a branch of a git repository
// (--config-repo): the operator's GitOps. A new commit is fetched and its
// file checked as a reload checks one; only a commit that passes is applied
// and kept, with its id, as the last good config, which pgod starts from
// when the repository cannot be reached. The repository decides every
// service's user: it is as trusted as root, and pgod runs git on it as root.
type configRepo struct {
	repo    *repo  // the clone, <dir>/.pgo/.config/repo
	file    string // the config's path inside the repository
	dir     string // <dir>/.pgo/.config: the clone, the last good config and its commit
	signers string // authorized_keys file of the keys that may sign a commit; "" when none need be signed
}

// newConfigRepo follows file on branch of url; dir is pgod's --dir.
// With signers, a commit applies only when one of that file's keys signed it.
func newConfigRepo(url, branch, file, signers, dir string, log *slog.Logger, observe func(string, error)) (*configRepo, error) {
	root, err := lookupAccount("root")
	if err != nil {
		return nil, fmt.Errorf("config repository: %w", err)
	}
	// Not under a service's name: those never start with a dot.
	home := filepath.Join(dir, ".pgo", ".config")
	r := &repo{dir: filepath.Join(home, "repo"), url: url, branch: branch, acct: root,
		secrets: urlSecrets(url), log: log, observe: observe}
	return &configRepo{repo: r, file: file, dir: home, signers: signers}, nil
}

func (c *configRepo) savedPath() string  { return filepath.Join(c.dir, "pgo.toml") }
func (c *configRepo) commitPath() string { return filepath.Join(c.dir, "commit") }

// label names a commit's config in errors: "pgo.toml@1a2b3c4d", so that a
// line number reads "pgo.toml@1a2b3c4d:12: ...".
func (c *configRepo) label(commit string) string { return c.file + "@" + short(commit) }

// head asks the upstream for the branch's commit.
func (c *configRepo) head(ctx context.Context) (string, error) {
	commit, err := c.repo.upstream(ctx)
	if err != nil {
		return "", fmt.Errorf("config repository %s: %w", redactURL(c.repo.url), err)
	}
	return commit, nil
}

// read brings commit's objects in (a clone the first time) and returns the
// config file as that commit holds it. git reads the blob: no work tree, no
// link followed.
func (c *configRepo) read(ctx context.Context, commit string) ([]byte, error) {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	if c.repo.cloned() {
		err = c.repo.fetch(ctx)
	} else {
		err = c.repo.clone(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("config repository %s: %w", redactURL(c.repo.url), err)
	}
	data, err := c.repo.git(ctx, "-C", c.repo.dir, "cat-file", "blob", commit+":"+c.file)
	if err != nil {
		return nil, fmt.Errorf("config repository: commit %s has no file %s (set --config-file to its path in the repository): %w",
			short(commit), c.file, err)
	}
	return data, nil
}

// verify checks, with --config-signers, that a key of that file signed
// commit, as git's SSH signatures do (gpg.format=ssh). The file is read
// anew each time: a key added or removed counts from the next commit on.
func (c *configRepo) verify(ctx context.Context, commit string) error {
	if c.signers == "" {
		return nil
	}
	data, err := readNoFollow(c.signers, maxKeyFileSize)
	if err != nil {
		return fmt.Errorf("config commit %s cannot be verified: --config-signers: %w", short(commit), err)
	}
	keys, problems := parseKeyFile(c.signers, data, maxKeys, time.Now())
	if len(keys) == 0 {
		return fmt.Errorf("config commit %s cannot be verified: %s lists no key that may sign (%s)", short(commit), c.signers, strings.Join(problems, "; "))
	}
	if err := c.repo.verifyCommit(ctx, commit, keys); err != nil {
		return fmt.Errorf("config %w", err)
	}
	return nil
}

// keep makes commit's config the last good one. The commit is written
// last: a crash between the two leaves a config that the next start
// fetches again.
func (c *configRepo) keep(commit string, data []byte) error {
	if err := writeFileAtomic(c.savedPath(), data, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(c.commitPath(), []byte(commit+"\n"), 0o600)
}

// saved returns the last good config and its commit; errNoSavedConfig
// when no commit was ever applied on this host.
func (c *configRepo) saved() (data []byte, commit string, err error) {
	id, err := os.ReadFile(c.commitPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", errNoSavedConfig
	}
	if err != nil {
		return nil, "", err
	}
	commit = string(bytes.TrimSpace(id))
	if !isObjectID(commit) {
		return nil, "", fmt.Errorf("%s holds %q, not a commit id", c.commitPath(), commit)
	}
	data, err = os.ReadFile(c.savedPath())
	return data, commit, err
}

var errNoSavedConfig = errors.New("no config from the repository was applied on this host yet")

// describe is how the log names where configs come from.
func (c *configRepo) describe() string {
	return fmt.Sprintf("%s of branch %s of %s", c.file, c.repo.branch, strings.TrimSpace(redactURL(c.repo.url)))
}
