package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// With signed_commits on, a service deploys only commits that carry a
// valid SSH signature (git's gpg.format=ssh) by a read-write key of the
// commit deployed before, its ssh/*.pub, or, for the first deploy, by one
// of the service's signers in pgo.toml. A team rotates its signers as it
// rotates its keys: by a signed commit that changes ssh/. The keys are read
// from git's objects, never from the working tree, which may hold another
// commit, and the verdict is git's own, run as the service's user.

// allowedSignersPrincipal names every signer in the allowed-signers file
// pgod writes; which key signed is told by its fingerprint, not by a name.
const allowedSignersPrincipal = "pgo"

// Modes git records for a tree entry.
const (
	gitModeTree       = "040000"
	gitModeFile       = "100644"
	gitModeExecutable = "100755"
	gitModeSymlink    = "120000"
)

// treeEntry is one entry of git ls-tree -l.
type treeEntry struct {
	mode, kind, oid, name string
	size                  int64 // -1 for a tree or a submodule
}

// signersAt returns the read-write keys that commit lists under ssh/*.pub,
// read from git's objects, with the same bounds and problems as readKeys:
// only regular files count (no symlink, no submodule), and ssh/ro/ holds no
// signer. err is for git failing, problems for what the commit holds.
func (r *repo) signersAt(ctx context.Context, commit string) (keys []*authorizedKey, problems []string, err error) {
	if !isObjectID(commit) {
		return nil, nil, fmt.Errorf("signers: %q is not a commit id", commit)
	}
	top, err := r.lsTree(ctx, commit+"^{commit}", "ssh")
	if err != nil {
		return nil, nil, fmt.Errorf("signers of commit %s: %w", short(commit), err)
	}
	i := slices.IndexFunc(top, func(e treeEntry) bool { return e.name == "ssh" })
	switch {
	case i < 0:
		return nil, nil, nil
	case top[i].mode == gitModeSymlink:
		return nil, []string{"ssh/: not a directory (a symlink is not followed); no key loaded"}, nil
	case top[i].mode != gitModeTree:
		return nil, []string{"ssh/: not a directory; no key loaded"}, nil
	}
	entries, err := r.lsTree(ctx, top[i].oid)
	if err != nil {
		return nil, nil, fmt.Errorf("signers of commit %s: %w", short(commit), err)
	}
	if len(entries) > maxKeyDirEntries {
		return nil, []string{fmt.Sprintf("ssh/: more than %d entries; no key loaded", maxKeyDirEntries)}, nil
	}
	kr := &keyReader{now: time.Now()}
	files, _ := capFiles(kr, keyEntries(entries), nil)
	for _, e := range files {
		if err := r.addBlob(ctx, kr, e); err != nil {
			return nil, nil, fmt.Errorf("signers of commit %s: %w", short(commit), err)
		}
	}
	return kr.keys, kr.problems, nil
}

// keyEntries are the entries of entries named *.pub, sorted by name.
func keyEntries(entries []treeEntry) []treeEntry {
	var files []treeEntry
	for _, e := range entries {
		if strings.HasSuffix(e.name, ".pub") {
			files = append(files, e)
		}
	}
	slices.SortFunc(files, func(a, b treeEntry) int { return strings.Compare(a.name, b.name) })
	return files
}

// addBlob adds the keys of the ssh/ entry e to kr when e is a regular file
// within maxKeyFileSize, and says why not otherwise.
func (r *repo) addBlob(ctx context.Context, kr *keyReader, e treeEntry) error {
	where := "ssh/" + e.name
	if e.kind != "blob" || (e.mode != gitModeFile && e.mode != gitModeExecutable) {
		kr.problemf("%s: skipped, not a regular file", where)
		return nil
	}
	if e.size < 0 || e.size > maxKeyFileSize {
		kr.problemf("%s: skipped, not a regular file under %d KiB", where, maxKeyFileSize>>10)
		return nil
	}
	data, err := r.git(ctx, "-C", r.dir, "cat-file", "blob", e.oid)
	if err != nil {
		return err
	}
	kr.add(where, data, false)
	return nil
}

// lsTree lists the entries of treeish, only those of paths when given
// (git matches a path against whole names: "ssh" is never "ssh2").
func (r *repo) lsTree(ctx context.Context, treeish string, paths ...string) ([]treeEntry, error) {
	args := append([]string{"-C", r.dir, "ls-tree", "-z", "-l", treeish, "--"}, paths...)
	out, err := r.git(ctx, args...)
	if err != nil {
		return nil, err
	}
	return parseTree(out)
}

// parseTree reads git ls-tree -z -l: "MODE TYPE OID SIZE\tNAME\x00", the
// size padded with spaces, "-" for a tree.
func parseTree(out []byte) ([]treeEntry, error) {
	var entries []treeEntry
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, name, ok := strings.Cut(string(rec), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 4 || !isObjectID(f[2]) {
			return nil, fmt.Errorf("git ls-tree: unexpected line %q", rec)
		}
		e := treeEntry{mode: f[0], kind: f[1], oid: f[2], name: name, size: -1}
		if n, err := strconv.ParseInt(f[3], 10, 64); err == nil {
			e.size = n
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// verifyCommit returns nil only when commit carries a valid SSH signature
// by one of signers that has not expired now. Its error is one line that
// names the commit and says what to do.
//
// The verdict is git's (verify-commit's exit status, which folds in
// ssh-keygen's), with its configuration pinned at the command level, above
// every config file: the checkout's .git/config is the service user's to
// write (a container may bind the checkout), so what it says of gpg.* must
// not point the check at another allowed-signers file, nor run another
// program. gpg.ssh.defaultKeyCommand only picks a key to sign with and plays
// no part in verifying.
func (r *repo) verifyCommit(ctx context.Context, commit string, signers []*authorizedKey) error {
	if !isObjectID(commit) {
		return fmt.Errorf("signature: %q is not a commit id", commit)
	}
	id := short(commit)
	if len(signers) == 0 {
		return fmt.Errorf("commit %s cannot be verified: signed_commits is on for this service, but no key may sign: list the team's public keys under ssh/ (before the first deploy, in signers in pgo.toml)", id)
	}
	now := time.Now()
	current := slices.DeleteFunc(slices.Clone(signers), func(k *authorizedKey) bool { return k.expired(now) })
	if len(current) == 0 {
		return fmt.Errorf("commit %s cannot be verified: every key that may sign it has expired (expiry-time=); list a current key %s", id, signersOrigin(signers))
	}
	file, cleanup, err := r.writeAllowedSigners(current)
	if err != nil {
		return fmt.Errorf("commit %s cannot be verified: %w", id, err)
	}
	defer cleanup()
	sig, err := r.signature(ctx, file, commit)
	if err != nil {
		return fmt.Errorf("commit %s: signature: %w", id, err)
	}
	if findFingerprint(current, sig.fingerprint) == nil || sig.status != 'G' && sig.status != 'U' {
		return r.signatureProblem(ctx, commit, sig, signers, now)
	}
	// A listed key, and git's verdict on it: verify-commit's exit status
	// folds in ssh-keygen's. "U" for a listed key means ssh-keygen could
	// not use the file, and verify-commit says why.
	_, err = r.run(ctx, r.signatureEnv(file), "", "-C", r.dir, "verify-commit", commit)
	switch {
	case err == nil && sig.status == 'G':
		return nil
	case err == nil:
		err = fmt.Errorf("git's status %q", sig.status)
	}
	return fmt.Errorf("commit %s: its signature by %s, a key listed %s, did not verify: %v", id, sig.fingerprint, signersOrigin(signers), err)
}

// commitSignature is what git says of a commit's signature.
type commitSignature struct {
	status      byte   // %G?: G good, B bad, U unknown key, N none, E cannot check, ...
	fingerprint string // %GF: SHA256:... of the key that signed; "" when unsigned
}

// signature asks git for commit's signature status and signing key,
// checked against the allowed-signers file.
func (r *repo) signature(ctx context.Context, file, commit string) (commitSignature, error) {
	out, err := r.run(ctx, r.signatureEnv(file), "", "-C", r.dir, "log", "-1", "--no-show-signature", "--format=%G?%x00%GF", commit, "--")
	if err != nil {
		return commitSignature{}, err
	}
	status, fingerprint, ok := strings.Cut(strings.TrimSpace(string(out)), "\x00")
	if !ok || len(status) != 1 {
		return commitSignature{}, fmt.Errorf("git log: unexpected signature status %q", out)
	}
	return commitSignature{status: status[0], fingerprint: fingerprint}, nil
}

// signatureProblem explains why sig does not let commit deploy.
func (r *repo) signatureProblem(ctx context.Context, commit string, sig commitSignature, signers []*authorizedKey, now time.Time) error {
	id := short(commit)
	origin := signersOrigin(signers)
	rule, ruleOn, addKey := "signed_commits", "signed_commits is on for this service", "add the key in a commit signed by one"
	if file, ok := configSignersFile(signers); ok {
		rule, ruleOn, addKey = "--config-signers", "--config-signers asks for signed config commits", "add the key to "+file
	}
	switch {
	case sig.status == 'N' && r.foreignSignature(ctx, commit):
		return fmt.Errorf("commit %s carries an OpenPGP or X.509 signature; %s takes SSH signatures only: sign it with an SSH key listed %s (git commit -S with gpg.format=ssh)", id, rule, origin)
	case sig.status == 'N':
		return fmt.Errorf("commit %s is not signed; %s: sign it with an SSH key listed %s (git commit -S with gpg.format=ssh)", id, ruleOn, origin)
	case sig.status == 'B':
		return fmt.Errorf("commit %s has a bad signature: the commit is not what was signed; sign it again with a key listed %s (git commit --amend -S --no-edit)", id, origin)
	case sig.status != 'G' && sig.status != 'U' || sig.fingerprint == "":
		return fmt.Errorf("commit %s: its signature could not be checked (git's status %q); is ssh-keygen (OpenSSH) installed?", id, sig.status)
	}
	if k := findFingerprint(signers, sig.fingerprint); k != nil && k.expired(now) {
		return fmt.Errorf("commit %s is signed by %s, whose key (%s) expired at %s: sign it with a current key listed %s",
			id, sig.fingerprint, k.source, k.expiry.Format(time.RFC3339), origin)
	}
	return fmt.Errorf("commit %s is signed by %s, which is not a key %s: sign it with one that is, or %s",
		id, sig.fingerprint, origin, addKey)
}

// foreignSignature reports whether commit carries a signature git did not
// take for an SSH one: an OpenPGP or X.509 signature, which pgod never
// verifies, as the service user's own keyring would decide it.
func (r *repo) foreignSignature(ctx context.Context, commit string) bool {
	out, err := r.git(ctx, "-C", r.dir, "cat-file", "commit", commit)
	if err != nil {
		return false
	}
	header, _, _ := bytes.Cut(out, []byte("\n\n"))
	for line := range strings.Lines(string(header)) {
		if strings.HasPrefix(line, "gpgsig ") || strings.HasPrefix(line, "gpgsig-sha256 ") {
			return !strings.Contains(line, "-----BEGIN SSH SIGNATURE-----")
		}
	}
	return false
}

// signatureEnv is the environment of a git command that checks a
// signature against the allowed-signers file: pgod's pinned config, and
// for gpg.* only what pgod says, in the same command-level scope as -c.
// (It goes in the environment rather than as -c on the command line, so
// that git's verb stays the command's first argument after -C, as r.run
// names it for the metrics.)
func (r *repo) signatureEnv(file string) []string {
	return r.environ(append(r.pinned(),
		[2]string{"gpg.format", "ssh"},
		[2]string{"gpg.ssh.program", "ssh-keygen"}, // from pgod's PATH, not one a config names
		[2]string{"gpg.ssh.allowedSignersFile", file},
		[2]string{"gpg.ssh.revocationKeys", "/dev/null"},
		// git picks the program by what the signature looks like, not by
		// gpg.format: an OpenPGP or X.509 signature must never verify, as
		// it would by whatever keyring the service user's home holds.
		[2]string{"gpg.program", "/bin/false"},
		[2]string{"gpg.openpgp.program", "/bin/false"},
		[2]string{"gpg.x509.program", "/bin/false"},
		// A key found in the file is "fully" trusted; one that is not, "undefined".
		[2]string{"gpg.minTrustLevel", "fully"},
		[2]string{"log.showSignature", "false"},
	))
}

// writeAllowedSigners writes signers as an ssh-keygen allowed-signers file
// for git, run as the service's user, to read, and returns its path and
// what removes it. The file and its fresh directory belong to pgod (root)
// and the user's group may only read them: a file the user owned could be
// swapped for another by any process of that user while git reads it.
func (r *repo) writeAllowedSigners(signers []*authorizedKey) (string, func(), error) {
	var b strings.Builder
	for _, k := range signers {
		fmt.Fprintf(&b, "%s namespaces=\"git\" %s\n", allowedSignersPrincipal, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.key))))
	}
	dir, err := os.MkdirTemp("", "pgo-signers-")
	if err != nil {
		return "", func() {}, fmt.Errorf("allowed signers: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	file := filepath.Join(dir, "allowed_signers")
	if err := writeReadableBy(r.acct, dir, file, b.String()); err != nil {
		cleanup()
		return "", func() {}, fmt.Errorf("allowed signers: %w", err)
	}
	return file, cleanup, nil
}

// writeReadableBy writes data to file in dir, both made readable by acct's
// group and no one else but their owner.
func writeReadableBy(acct *account, dir, file, data string) error {
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		return err
	}
	if acct == nil || acct.root() || int(acct.UID) == os.Geteuid() {
		return nil
	}
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{file, 0o640}, {dir, 0o750}} {
		if err := os.Chown(p.path, -1, int(acct.GID)); err != nil {
			return err
		}
		if err := os.Chmod(p.path, p.mode); err != nil {
			return err
		}
	}
	return nil
}

// configSignersFile returns the --config-signers file the keys were read
// from, whose sources are "/path:line"; ok is false for a service's keys.
func configSignersFile(signers []*authorizedKey) (file string, ok bool) {
	if len(signers) == 0 || !strings.HasPrefix(signers[0].source, "/") {
		return "", false
	}
	file, _, _ = strings.Cut(signers[0].source, ":")
	return file, true
}

// findFingerprint returns the first of keys whose SHA256 fingerprint is fp, or nil.
func findFingerprint(keys []*authorizedKey, fp string) *authorizedKey {
	for _, k := range keys {
		if ssh.FingerprintSHA256(k.key) == fp {
			return k
		}
	}
	return nil
}

// signersOrigin says where signers were listed, for an error: under ssh/
// of the deployed commit, in pgo.toml for the first deploy, or in the
// --config-signers file for a config commit.
func signersOrigin(signers []*authorizedKey) string {
	if file, ok := configSignersFile(signers); ok {
		return "in " + file
	}
	for _, k := range signers {
		if !strings.HasPrefix(k.source, "ssh/") {
			return "in signers of the service in pgo.toml"
		}
	}
	return "under ssh/ of the deployed commit"
}
