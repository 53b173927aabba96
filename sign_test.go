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

	"golang.org/x/crypto/ssh"
)

// signingKey is an ed25519 key made by ssh-keygen, as a team makes one.
type signingKey struct {
	file string        // the private key, for user.signingkey
	line string        // the public key as in its .pub file
	key  ssh.PublicKey // parsed
}

func newSigningKey(t *testing.T, name string) signingKey {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("no ssh-keygen")
	}
	file := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@laptop", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{file: file, line: strings.TrimSpace(string(pub)), key: key}
}

func (k signingKey) fingerprint() string { return ssh.FingerprintSHA256(k.key) }

// signRepo is a checkout for the test's own user, made with git init: the
// team's commits are made in it directly.
func signRepo(t *testing.T) *repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	r := testRepo(t, "file:///nowhere")
	gitT(t, "/", "init", "-q", "-b", "main", r.dir)
	return r
}

// commitFiles writes files (a "" content removes the file) into the
// checkout and commits them, signed by key when it has a file, and
// returns the commit.
func commitFiles(t *testing.T, r *repo, key signingKey, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(r.dir, name)
		if content == "" {
			os.Remove(path)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitT(t, r.dir, "add", "-A")
	args := []string{"-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", "change"}
	if key.file != "" {
		args = []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key.file, "commit", "-q", "--allow-empty", "-S", "-m", "change"}
	}
	gitT(t, r.dir, args...)
	return gitT(t, r.dir, "rev-parse", "HEAD")
}

// hashCommit writes a commit object of the given text into r and returns its id.
func hashCommit(t *testing.T, r *repo, text string) string {
	t.Helper()
	cmd := exec.Command("git", "-C", r.dir, "hash-object", "-t", "commit", "-w", "--stdin")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git hash-object: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func wantSigners(t *testing.T, r *repo, commit string, want ...string) []*authorizedKey {
	t.Helper()
	keys, problems, err := r.signersAt(context.Background(), commit)
	if err != nil || len(problems) != 0 {
		t.Fatalf("signersAt %s: %v, problems %q", short(commit), err, problems)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.source)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("signers at %s: %q, want %q", short(commit), got, want)
	}
	return keys
}

func wantVerifyError(t *testing.T, r *repo, commit string, signers []*authorizedKey, want string) {
	t.Helper()
	err := r.verifyCommit(context.Background(), commit, signers)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("verifyCommit %s: %v\nwant one line with %q", short(commit), err, want)
	}
}

// TestVerifyCommit: a commit deploys only when signed, untampered, by a
// listed key that has not expired; every refusal is one line that names
// the commit and says what to do.
func TestVerifyCommit(t *testing.T) {
	alice, mallory, carol := newSigningKey(t, "alice"), newSigningKey(t, "mallory"), newSigningKey(t, "carol")
	r := signRepo(t)
	deployed := commitFiles(t, r, alice, map[string]string{
		"ssh/alice.pub": alice.line + "\n",
		"ssh/carol.pub": `expiry-time="20991231" ` + carol.line + "\n",
	})
	signers := wantSigners(t, r, deployed, "ssh/alice.pub:1", "ssh/carol.pub:1")
	ctx := context.Background()

	byAlice := commitFiles(t, r, alice, map[string]string{"compose.yaml": "services: {}\n"})
	if err := r.verifyCommit(ctx, byAlice, signers); err != nil {
		t.Errorf("signed by a listed key: %v", err)
	}
	byCarol := commitFiles(t, r, carol, map[string]string{"compose.yaml": "services: {a: {}}\n"})
	if err := r.verifyCommit(ctx, byCarol, signers); err != nil {
		t.Errorf("signed by a listed key that expires in 2099: %v", err)
	}

	unsigned := commitFiles(t, r, signingKey{}, map[string]string{"compose.yaml": "services: {b: {}}\n"})
	wantVerifyError(t, r, unsigned, signers, "commit "+short(unsigned)+" is not signed; signed_commits is on for this service: sign it with an SSH key listed under ssh/ of the deployed commit (git commit -S with gpg.format=ssh)")

	byMallory := commitFiles(t, r, mallory, map[string]string{"compose.yaml": "services: {c: {}}\n"})
	wantVerifyError(t, r, byMallory, signers, "commit "+short(byMallory)+" is signed by "+mallory.fingerprint()+", which is not a key under ssh/ of the deployed commit")

	expired, err := parseKeyLine([]byte(`expiry-time="20200101" ` + carol.line))
	if err != nil {
		t.Fatal(err)
	}
	expired.source = "ssh/carol.pub:1"
	wantVerifyError(t, r, byCarol, []*authorizedKey{signers[0], expired}, "commit "+short(byCarol)+" is signed by "+carol.fingerprint()+", whose key (ssh/carol.pub:1) expired at 2020-01-01")
	wantVerifyError(t, r, byCarol, []*authorizedKey{expired}, "commit "+short(byCarol)+" cannot be verified: every key that may sign it has expired")

	original := gitT(t, r.dir, "cat-file", "commit", byAlice)
	tampered := hashCommit(t, r, strings.Replace(original, "\n\nchange", "\n\nchange, and more", 1)+"\n")
	wantVerifyError(t, r, tampered, signers, "commit "+short(tampered)+" has a bad signature")

	header, _, _ := strings.Cut(gitT(t, r.dir, "cat-file", "commit", unsigned), "\n\n")
	pgp := hashCommit(t, r, header+"\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nchange\n")
	wantVerifyError(t, r, pgp, signers, "commit "+short(pgp)+" carries an OpenPGP or X.509 signature; signed_commits takes SSH signatures only")

	wantVerifyError(t, r, byAlice, nil, "commit "+short(byAlice)+" cannot be verified: signed_commits is on for this service, but no key may sign")

	first := (&Service{Signers: []string{mallory.line}}).signerKeys()
	if err := r.verifyCommit(ctx, byMallory, first); err != nil {
		t.Errorf("first deploy, signed by a signer of pgo.toml: %v", err)
	}
	wantVerifyError(t, r, byAlice, first, "commit "+short(byAlice)+" is signed by "+alice.fingerprint()+", which is not a key in signers of the service in pgo.toml")
}

// TestVerifyCommitIgnoresTheCheckoutsConfig: gpg settings in the
// checkout's .git/config, which the service's user may write, neither run
// a program nor change whose signature counts.
func TestVerifyCommitIgnoresTheCheckoutsConfig(t *testing.T) {
	alice, mallory := newSigningKey(t, "alice"), newSigningKey(t, "mallory")
	r := signRepo(t)
	deployed := commitFiles(t, r, alice, map[string]string{"ssh/alice.pub": alice.line + "\n"})
	signers := wantSigners(t, r, deployed, "ssh/alice.pub:1")
	byAlice := commitFiles(t, r, alice, map[string]string{"a": "1\n"})
	byMallory := commitFiles(t, r, mallory, map[string]string{"a": "2\n"})

	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	program := writeFile(t, dir, "fake-ssh-keygen", "#!/bin/sh\ntouch "+ran+"\nexit 0\n")
	os.Chmod(program, 0o755)
	allowed := writeFile(t, dir, "allowed", "pgo "+mallory.line+"\n")
	f, err := os.OpenFile(filepath.Join(r.dir, ".git", "config"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("[gpg]\n\tprogram = " + program + "\n\tminTrustLevel = undefined\n[gpg \"ssh\"]\n\tprogram = " + program +
		"\n\tallowedSignersFile = " + allowed + "\n[gpg \"openpgp\"]\n\tprogram = " + program + "\n[log]\n\tshowSignature = true\n")
	f.Close()

	if err := r.verifyCommit(context.Background(), byAlice, signers); err != nil {
		t.Errorf("signed by the listed key: %v", err)
	}
	wantVerifyError(t, r, byMallory, signers, "is signed by "+mallory.fingerprint()+", which is not a key under ssh/")
	header, _, _ := strings.Cut(gitT(t, r.dir, "cat-file", "commit", byAlice), "\ngpgsig ")
	pgp := hashCommit(t, r, header+"\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nchange\n")
	wantVerifyError(t, r, pgp, signers, "carries an OpenPGP or X.509 signature")
	if _, err := os.Stat(ran); err == nil {
		t.Error("git ran the program the checkout's .git/config named")
	}
}

// TestSignersAtReadsTheCommit: the signers are those of the commit asked
// about, read from git's objects, whatever the working tree holds; the
// keys of ssh/ro/ are not signers.
func TestSignersAtReadsTheCommit(t *testing.T) {
	alice, bob, oncall, eve := newSigningKey(t, "alice"), newSigningKey(t, "bob"), newSigningKey(t, "oncall"), newSigningKey(t, "eve")
	r := signRepo(t)
	older := commitFiles(t, r, signingKey{}, map[string]string{
		"ssh/alice.pub":     "# the team\n" + alice.line + "\n",
		"ssh/ro/oncall.pub": oncall.line + "\n",
		"ssh/notes.txt":     bob.line + "\n",
	})
	newer := commitFiles(t, r, signingKey{}, map[string]string{"ssh/alice.pub": "", "ssh/bob.pub": bob.line + "\n"})
	writeFile(t, filepath.Join(r.dir, "ssh"), "eve.pub", eve.line+"\n") // in the working tree only

	keys := wantSigners(t, r, older, "ssh/alice.pub:2")
	if keys[0].blob != string(alice.key.Marshal()) || keys[0].readOnly {
		t.Errorf("signer of the older commit: %+v, want alice's key, read-write", keys[0])
	}
	wantSigners(t, r, newer, "ssh/bob.pub:1")

	none := commitFiles(t, r, signingKey{}, map[string]string{"ssh/bob.pub": "", "ssh/ro/oncall.pub": "", "ssh/notes.txt": "", "ssh/eve.pub": ""})
	if keys, problems, err := r.signersAt(context.Background(), none); keys != nil || problems != nil || err != nil {
		t.Errorf("a commit without ssh/: %d keys, %q, %v", len(keys), problems, err)
	}
	if _, _, err := r.signersAt(context.Background(), strings.Repeat("0", 40)); err == nil || !strings.Contains(err.Error(), "signers of commit 0000000") {
		t.Errorf("a commit that is not there: %v", err)
	}
}

// TestSignersAtReadsOnlyRegularFiles: a symlink (to a key elsewhere in the
// tree), a submodule, a big file and a symlinked ssh/ yield no signer but
// a problem each, as readKeys says them; the same bounds apply.
func TestSignersAtReadsOnlyRegularFiles(t *testing.T) {
	alice, mallory := newSigningKey(t, "alice"), newSigningKey(t, "mallory")
	r := signRepo(t)
	commitFiles(t, r, signingKey{}, map[string]string{
		"keys/mallory.pub": mallory.line + "\n",
		"ssh/alice.pub":    alice.line + "\n",
		"ssh/big.pub":      strings.Repeat("#"+strings.Repeat("x", 1023)+"\n", 65),
		"ssh/bad.pub":      `command="/bin/sh" ` + mallory.line + "\n",
	})
	if err := os.Symlink("../keys/mallory.pub", filepath.Join(r.dir, "ssh", "link.pub")); err != nil {
		t.Fatal(err)
	}
	gitT(t, r.dir, "add", "-A")
	gitT(t, r.dir, "update-index", "--add", "--cacheinfo", "160000,"+gitT(t, r.dir, "rev-parse", "HEAD")+",ssh/sub.pub")
	gitT(t, r.dir, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "a symlink and a submodule")
	commit := gitT(t, r.dir, "rev-parse", "HEAD")
	if mode := gitT(t, r.dir, "ls-tree", commit, "--", "ssh/link.pub"); !strings.HasPrefix(mode, "120000 ") {
		t.Fatalf("ssh/link.pub is not a symlink in the commit: %q", mode)
	}

	keys, problems, err := r.signersAt(context.Background(), commit)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].source != "ssh/alice.pub:1" {
		t.Errorf("signers: %d keys, want ssh/alice.pub:1 alone; problems %q", len(keys), problems)
	}
	want := []string{
		"ssh/bad.pub:1: key skipped, option command is not supported",
		"ssh/big.pub: skipped, not a regular file under 64 KiB",
		"ssh/link.pub: skipped, not a regular file",
		"ssh/sub.pub: skipped, not a regular file",
	}
	if len(problems) != len(want) {
		t.Errorf("problems:\n%s\nwant %d", strings.Join(problems, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(at(problems, i), w) {
			t.Errorf("problem %d = %q, want %q...", i, at(problems, i), w)
		}
	}

	gitT(t, r.dir, "rm", "-q", "-r", "--cached", "ssh")
	os.RemoveAll(filepath.Join(r.dir, "ssh"))
	if err := os.Symlink("keys", filepath.Join(r.dir, "ssh")); err != nil {
		t.Fatal(err)
	}
	linked := commitFiles(t, r, signingKey{}, nil)
	keys, problems, err = r.signersAt(context.Background(), linked)
	if err != nil || len(keys) != 0 || len(problems) != 1 || !strings.Contains(problems[0], "a symlink is not followed") {
		t.Errorf("ssh/ a symlink: %d keys, problems %q, %v", len(keys), problems, err)
	}

	os.Remove(filepath.Join(r.dir, "ssh"))
	many := map[string]string{}
	for i := range maxKeyFiles + 2 {
		many[fmt.Sprintf("ssh/k%03d.pub", i)] = alice.line + "\n"
	}
	commit = commitFiles(t, r, signingKey{}, many)
	keys, problems, err = r.signersAt(context.Background(), commit)
	if err != nil || len(keys) != maxKeyFiles || len(problems) != 1 || !strings.Contains(problems[0], "only the first 64 by name are read") {
		t.Errorf("%d files: %d keys, problems %q, %v", maxKeyFiles+2, len(keys), problems, err)
	}
}

// TestVerifyCommitAsTheServiceUser: git and ssh-keygen run as the
// service's user, who can read the allowed-signers file pgod writes but
// not change it.
func TestVerifyCommitAsTheServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run git as another user")
	}
	alice, mallory := newSigningKey(t, "alice"), newSigningKey(t, "mallory")
	r := signRepo(t)
	deployed := commitFiles(t, r, alice, map[string]string{"ssh/alice.pub": alice.line + "\n"})
	byAlice := commitFiles(t, r, alice, map[string]string{"a": "1\n"})
	byMallory := commitFiles(t, r, mallory, map[string]string{"a": "2\n"})

	traversable(t, filepath.Dir(r.dir))
	home := traversable(t, t.TempDir())
	r.acct = &account{Name: "nobody", UID: 65534, GID: 65534, Home: home}
	r.config = writeFile(t, home, "gitconfig", "[safe]\n\tdirectory = *\n")
	os.Chmod(r.config, 0o644)
	signers := wantSigners(t, r, deployed, "ssh/alice.pub:1")
	if err := r.verifyCommit(context.Background(), byAlice, signers); err != nil {
		t.Errorf("signed by the listed key, checked as nobody: %v", err)
	}
	wantVerifyError(t, r, byMallory, signers, "is signed by "+mallory.fingerprint()+", which is not a key under ssh/")

	file, cleanup, err := r.writeAllowedSigners(signers)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	for path, mode := range map[string]os.FileMode{file: 0o640, filepath.Dir(file): 0o750 | os.ModeDir} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != mode || st.Uid != 0 || st.Gid != 65534 {
			t.Errorf("%s: mode %v, owner %d:%d; want %v, 0:65534", path, fi.Mode(), st.Uid, st.Gid, mode)
		}
	}
	cleanup()
	if _, err := os.Stat(filepath.Dir(file)); !os.IsNotExist(err) {
		t.Errorf("the allowed-signers directory is left after cleanup: %v", err)
	}
}
