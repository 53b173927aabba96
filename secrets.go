package main

// Committed secrets: a team encrypts a dotenv file to the host's SSH key
// with age and commits it as secrets.env.age beside its compose file. pgod
// decrypts it as root with its host key when it judges a commit, keeps the
// plain values in memory only, and hands them to compose through the
// environment of its processes, as it does pgo.toml's env. pgo.toml's env
// wins on a clash. pgo check only reads the file's header: it has no key.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

const (
	// secretsFile is the committed secrets' name, beside the compose file.
	secretsFile = "secrets.env.age"
	// maxSecretsFile bounds the encrypted file, and maxSecretsPlain what
	// it decrypts to; a dotenv file of secrets is a few kilobytes.
	maxSecretsFile  = 1 << 20
	maxSecretsPlain = 1 << 20
	// keptSecrets is how many commits' decrypted files a worker keeps:
	// the validated and deployed ones, and the heads judged since.
	keptSecrets = 4
)

// errNoAge is the rejection of a commit with secrets on a host without age.
var errNoAge = errors.New(secretsFile + " needs age to decrypt: install it (apt install age)")

// committedSecrets is one commit's decrypted secrets file.
type committedSecrets struct {
	commit string
	env    []string // KEY=VALUE, without the keys pgo.toml sets
	values []string // every value of the file, for redact
}

// secretsPath is the secrets file of svc relative to the repository top:
// beside the compose file pgo.toml names, or at the top.
func secretsPath(svc *Service) string {
	if svc.Compose == "" {
		return secretsFile
	}
	return filepath.Join(filepath.Dir(filepath.Clean(svc.Compose)), secretsFile)
}

// readSecretsFile reads the secrets file of svc in the checkout dir; nil
// when there is none. A symlink on the way, a file that is not regular and
// one larger than maxSecretsFile are refused: pgod reads as root.
func readSecretsFile(dir string, svc *Service) (data []byte, rel string, err error) {
	rel = secretsPath(svc)
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, rel, fmt.Errorf("checkout: %w", err)
	}
	if _, err := os.Lstat(filepath.Join(root, rel)); errors.Is(err, os.ErrNotExist) {
		return nil, rel, nil
	}
	data, _, v := readInCheckout(root, rel, false)
	switch {
	case v != nil:
		return nil, rel, errors.New(v.String())
	case len(data) > maxSecretsFile:
		return nil, rel, fmt.Errorf("%s: is larger than %d bytes", rel, maxSecretsFile)
	}
	return data, rel, nil
}

// decryptAge decrypts ciphertext with the age identity file, as pgod
// (root), in a clean environment and bounded in time and output. The
// ciphertext goes in on stdin and the plain text comes back in memory:
// neither is ever on a command line or on disk. Its errors name no value.
func decryptAge(ctx context.Context, identity string, ciphertext []byte) ([]byte, error) {
	bin, err := exec.LookPath("age")
	if err != nil {
		return nil, errNoAge
	}
	bounded, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	var root *account // as pgod: only root reads the host key
	cmd := root.command(bounded, root.baseEnv(), bin, "--decrypt", "-i", identity)
	cmd.Stdin = bytes.NewReader(ciphertext)
	cmd.WaitDelay = waitDelay
	stdout := &cappedBuffer{max: maxSecretsPlain, full: cancel}
	stderr := newTail(4 << 10)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	said := lastLines(strings.TrimSpace(strings.ReplaceAll(stderr.String(), "age: report unexpected or unhelpful errors at https://filippo.io/age/report", "")), 1)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case stdout.over:
		return nil, fmt.Errorf("decrypts to more than %d bytes", maxSecretsPlain)
	case bounded.Err() != nil:
		return nil, fmt.Errorf("age did not finish within %s", commandTimeout)
	case err == nil:
		return stdout.Bytes(), nil
	case strings.Contains(said, "no identity matched"):
		return nil, errors.New("no identity matched (encrypted for another host?): encrypt it to the line the recipient op prints")
	case strings.Contains(said, "identit"):
		return nil, fmt.Errorf("pgod cannot use its host key %s as an age identity (%s)", identity, said)
	case said != "":
		return nil, fmt.Errorf("the file is corrupt or was tampered with (%s)", said)
	}
	return nil, fmt.Errorf("the file is corrupt or was tampered with (age: %v)", err)
}

// reservedEnvNames and reservedEnvPrefixes are variables a team may not
// set: pgo sets them itself (PATH, HOME for the render), or they choose
// which engine, files or code compose and docker use, or where they send
// data (DOCKER_HOST, COMPOSE_FILE, LD_PRELOAD, OTEL_…).
var (
	reservedEnvNames = map[string]bool{"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true,
		"LANG": true, "LANGUAGE": true, "TMPDIR": true, "PWD": true, "SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
		"HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true, "ALL_PROXY": true,
		"GODEBUG": true, "GOGC": true, "GOMEMLIMIT": true, "GOMAXPROCS": true, "GOTRACEBACK": true}
	reservedEnvPrefixes = []string{"COMPOSE_", "DOCKER_", "BUILDKIT_", "BUILDX_", "LD_", "LC_", "XDG_", "OTEL_", "GIT_"}
)

func reservedEnvName(key string) bool {
	upper := strings.ToUpper(key)
	if reservedEnvNames[upper] {
		return true
	}
	for _, p := range reservedEnvPrefixes {
		if strings.HasPrefix(upper, p) {
			return true
		}
	}
	return false
}

// parseDotenv reads the decrypted file: KEY=VALUE lines, blank lines and
// "#" comments skipped. The value is the rest of the line, taken as it is
// but for one pair of matching quotes around it. A line that is anything
// else, a key set twice and a reserved key are refused by line number and
// key; no message ever holds a value, or a line that might be one.
func parseDotenv(data []byte) ([]string, error) {
	var env []string
	first := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxSecretsPlain+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: not KEY=VALUE", n)
		case !envNameRE.MatchString(key):
			return nil, fmt.Errorf("line %d: the name before \"=\" is not a variable name (letters, digits and _, not starting with a digit, no blanks)", n)
		case first[key] > 0:
			return nil, fmt.Errorf("line %d: %s is set again (first on line %d)", n, key, first[key])
		case reservedEnvName(key):
			return nil, fmt.Errorf("line %d: %s is not allowed: pgo sets it, or it changes how compose and docker run", n, key)
		case strings.ContainsRune(value, 0):
			return nil, fmt.Errorf("line %d: the value of %s holds a NUL byte", n, key)
		}
		first[key] = n
		env = append(env, key+"="+unquote(value))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the decrypted file: %v", err)
	}
	return env, nil
}

// unquote strips one pair of matching quotes around a value.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// mergeSecrets drops from committed the keys pgo.toml's env sets: the
// operator's word is last. It returns the rest and the keys dropped.
func mergeSecrets(toml, committed []string) (env, shadowed []string) {
	set := map[string]bool{}
	for _, kv := range toml {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for _, kv := range committed {
		if k, _, _ := strings.Cut(kv, "="); set[k] {
			shadowed = append(shadowed, k)
			continue
		}
		env = append(env, kv)
	}
	return env, shadowed
}

// envValues are the values of KEY=VALUE entries.
func envValues(env []string) []string {
	values := make([]string, 0, len(env))
	for _, kv := range env {
		_, v, _ := strings.Cut(kv, "=")
		values = append(values, v)
	}
	return values
}

// openSecrets decrypts the secrets file of commit, checked out in dir, and
// returns its env without the keys pgo.toml sets; nil when the commit has
// none. reason says why the commit is to be rejected; err is for what kept
// it from being judged. The values join w.secrets, so that everything pgod
// prints hides them. Only the holder of the service's lock calls it.
func (w *worker) openSecrets(ctx context.Context, commit, dir string) (env []string, reason string, err error) {
	data, rel, err := readSecretsFile(dir, w.svc)
	if err != nil {
		return nil, err.Error(), nil
	}
	if data == nil {
		return nil, "", nil
	}
	plain, err := decryptAge(ctx, w.d.flags.hostKey, data)
	switch {
	case ctx.Err() != nil:
		return nil, "", ctx.Err()
	case errors.Is(err, errNoAge):
		return nil, err.Error(), nil
	case err != nil:
		return nil, rel + ": " + err.Error(), nil
	}
	committed, err := parseDotenv(plain)
	if err != nil {
		return nil, rel + ": " + err.Error(), nil
	}
	env, shadowed := mergeSecrets(w.svc.Env, committed)
	for _, k := range shadowed {
		w.log.Warn(fmt.Sprintf("%s of %s sets %s, which pgo.toml's env sets too: pgo.toml's value is used", rel, short(commit), k))
	}
	w.keepSecrets(committedSecrets{commit: commit, env: env, values: envValues(committed)})
	return env, "", nil
}

// keepSecrets remembers a commit's decrypted file, forgetting the oldest
// beyond keptSecrets that is neither validated nor deployed, and makes
// w.secrets the pgo.toml secrets and every value kept.
func (w *worker) keepSecrets(c committedSecrets) {
	w.mu.Lock()
	kept := slices.DeleteFunc(w.sealed, func(k committedSecrets) bool { return k.commit == c.commit })
	kept = append(kept, c)
	for i := 0; len(kept) > keptSecrets && i < len(kept); {
		if k := kept[i].commit; k == w.st.Validated || k == w.st.Deployed || k == c.commit {
			i++
			continue
		}
		kept = slices.Delete(kept, i, i+1)
	}
	w.sealed = kept
	secrets := w.svc.secrets()
	for _, k := range kept {
		secrets = append(secrets, k.values...)
	}
	w.mu.Unlock()
	w.secrets = secrets
}

// committedEnv is the decrypted env of the validated commit, nil when it
// has none or pgod has not decrypted it.
func (w *worker) committedEnv() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range w.sealed {
		if k.commit == w.st.Validated {
			return k.env
		}
	}
	return nil
}

// renderRequestWith is renderRequest for a commit whose committed env is env.
func (w *worker) renderRequestWith(dir string, env []string) renderRequest {
	r := w.renderRequest(dir)
	r.Service = w.renderService(env)
	return r
}

// renderService is the service as a render sees it: its env is the
// committed env and then pgo.toml's, which so comes last, for compose's
// interpolation, the pre-check's sizes and redact.
func (w *worker) renderService(env []string) *Service {
	if len(env) == 0 {
		return w.svc
	}
	svc := *w.svc
	svc.Env = append(slices.Clip(env), w.svc.Env...)
	return &svc
}

// restoreSecrets decrypts the checkout's secrets again when pgod starts,
// for the validated commit it holds: compose and redact need them before
// any new commit comes. A failure is only logged: the next commit judged
// decides.
func (w *worker) restoreSecrets(commit string) {
	_, reason, err := w.openSecrets(context.Background(), commit, w.checkout)
	if err != nil {
		reason = err.Error()
	}
	if reason != "" {
		w.log.Warn("committed secrets of " + short(commit) + ": " + reason)
	}
}

// recipientLine is the host key as the age recipient a team encrypts to:
// an authorized_keys line, "ssh-ed25519 AAAA… pgod@HOST".
func recipientLine(key ssh.PublicKey, hostname string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	return line + " pgod@" + hostname
}
