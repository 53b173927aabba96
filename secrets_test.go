package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseDotenv(t *testing.T) {
	env, err := parseDotenv([]byte("# the shop's secrets\n\nTOKEN=s3cret-token\r\n  # indented comment\nURL=postgres://u:p@db/x?a=b\nEMPTY=\nQUOTED=\"two words\"\nSINGLE='x'\nHALF=\"open\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"TOKEN=s3cret-token", "URL=postgres://u:p@db/x?a=b", "EMPTY=", "QUOTED=two words", "SINGLE=x", `HALF="open`}
	if !slices.Equal(env, want) {
		t.Errorf("env = %q, want %q", env, want)
	}
}

// A bad line is named by its number, and by its key when it has a good
// one; never by its value, nor by a line that might be one.
func TestParseDotenvRefusesWithoutTheValue(t *testing.T) {
	const value = "hunter2-value"
	for _, tc := range []struct{ file, want string }{
		{"A=1\n" + value + "\n", "line 2: not KEY=VALUE"},
		{"A=1\n\n1A=" + value + "\n", "line 3: the name before \"=\" is not a variable name"},
		{"A B=" + value + "\n", "line 1: the name before"},
		{"KEY =" + value + "\n", "line 1: the name before"},
		{"TOKEN=a\n# x\nTOKEN=" + value + "\n", "line 3: TOKEN is set again (first on line 1)"},
		{"DOCKER_HOST=tcp://" + value + "\n", "line 1: DOCKER_HOST is not allowed"},
		{"compose_file=" + value + "\n", "line 1: compose_file is not allowed"},
		{"PATH=/tmp/" + value + "\n", "line 1: PATH is not allowed"},
		{"LD_PRELOAD=" + value + "\n", "line 1: LD_PRELOAD is not allowed"},
		{"X=" + value + "\x00\n", "line 1: the value of X holds a NUL byte"},
	} {
		_, err := parseDotenv([]byte(tc.file))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), value) {
			t.Errorf("%q: the error shows the value: %v", tc.file, err)
		}
	}
}

func TestMergeSecretsPgoTomlWins(t *testing.T) {
	env, shadowed := mergeSecrets([]string{"MODE=production", "DB_PASSWORD=from-toml"},
		[]string{"API_KEY=from-file", "DB_PASSWORD=from-file"})
	if !slices.Equal(env, []string{"API_KEY=from-file"}) || !slices.Equal(shadowed, []string{"DB_PASSWORD"}) {
		t.Errorf("env %q, shadowed %q", env, shadowed)
	}
}

// ageHeaderFile builds an age file by hand: one stanza per type, a MAC and
// a payload of the smallest size, as pgo check reads it.
func ageHeaderFile(types ...string) []byte {
	var b bytes.Buffer
	b.WriteString(ageIntro + "\n")
	body := base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for _, typ := range types {
		switch typ {
		case ageSSHEd25519:
			b.WriteString("-> ssh-ed25519 7yzvaA " + body + "\n" + body + "\n")
		default:
			b.WriteString("-> " + typ + " " + body + "\n" + body + "\n")
		}
	}
	b.WriteString("--- " + body + "\n")
	b.Write(bytes.Repeat([]byte{0xa5}, ageMinPayload))
	return b.Bytes()
}

// armorAge is age's armor around a binary file.
func armorAge(bin []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(bin)
	var b strings.Builder
	b.WriteString(ageArmorBegin + "\n")
	for len(enc) > ageColumns {
		b.WriteString(enc[:ageColumns] + "\n")
		enc = enc[ageColumns:]
	}
	b.WriteString(enc + "\n" + ageArmorEnd + "\n")
	return []byte(b.String())
}

func TestParseAgeFile(t *testing.T) {
	good := ageHeaderFile(ageSSHEd25519, "X25519", ageSSHEd25519)
	h, err := parseAgeFile(good)
	if err != nil || h.armored || len(h.recipients) != 3 || h.count(ageSSHEd25519) != 2 {
		t.Fatalf("binary: %+v, %v", h, err)
	}
	h, err = parseAgeFile(armorAge(good))
	if err != nil || !h.armored || h.count(ageSSHEd25519) != 2 {
		t.Fatalf("armored: %+v, %v", h, err)
	}
	// A body longer than one line: full lines of 64 columns, then a shorter one.
	long := base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 48))
	multi := bytes.Replace(good, []byte("-> X25519"), []byte("-> X25519 x\n"+long+"\n"+long[:10]+"\n-> other"), 1)
	if _, err := parseAgeFile(multi); err != nil {
		t.Errorf("a stanza with a body of two lines: %v", err)
	}

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not an age file"},
		{"plain dotenv", []byte("TOKEN=x\n"), "not an age file"},
		{"v2", bytes.Replace(good, []byte("/v1"), []byte("/v2"), 1), "not an age file"},
		{"no MAC", good[:bytes.Index(good, []byte("---"))], "ends before its MAC line"},
		{"no recipient", ageHeaderFile(), "no recipient"},
		{"short MAC", bytes.Replace(good, []byte("--- "), []byte("--- AAAA\n--- "), 1), "the MAC is not 32 bytes"},
		{"payload cut", good[:len(good)-1], "payload after the header is missing"},
		{"stanza body not base64", bytes.Replace(good, []byte("\nBwcH"), []byte("\n*wcH"), 1), "not base64"},
		{"stanza line", bytes.Replace(good, []byte("-> X25519"), []byte("->  X25519"), 1), "empty or not printable"},
		{"ssh-ed25519 without its tag", bytes.Replace(good, []byte("ssh-ed25519 7yzvaA "), []byte("ssh-ed25519 "), 1), "a tag and a share"},
		{"garbage line", bytes.Replace(good, []byte("-> X25519"), []byte("hello"), 1), "expected a recipient stanza"},
		{"armor cut", bytes.TrimSuffix(armorAge(good), []byte(ageArmorEnd+"\n")), "the last line is not"},
		{"armor not base64", bytes.Replace(armorAge(good), []byte("YWdl"), []byte("!!!!"), 1), "not base64"},
	} {
		if _, err := parseAgeFile(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzAgeHeader: the header parser never panics; what it accepts has a
// recipient, and its armor says the same as the binary form.
func FuzzAgeHeader(f *testing.F) {
	f.Add(ageHeaderFile(ageSSHEd25519))
	f.Add(armorAge(ageHeaderFile(ageSSHEd25519, "X25519")))
	f.Add([]byte(ageIntro + "\n-> ssh-ed25519 a b\n\n--- x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseAgeFile(data)
		if err != nil {
			return
		}
		if len(h.recipients) == 0 {
			t.Fatalf("accepted without a recipient: %q", data)
		}
		if !h.armored {
			if a, err := parseAgeFile(armorAge(data)); err != nil || !slices.Equal(a.recipients, h.recipients) {
				t.Fatalf("armored, it reads differently: %+v, %v", a, err)
			}
		}
	})
}

// needAge skips a test that runs the real age; CI installs it (.ci/run).
func needAge(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("age"); err != nil {
		t.Skip("needs age (apt install age)")
	}
}

// hostKeyFile writes a pgod host key as pgod does and returns its path and
// its recipient line.
func hostKeyFile(t *testing.T, dir string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, "ssh_host_ed25519_key")
	if _, err := createHostKey(path); err != nil {
		t.Fatal(err)
	}
	signer, err := loadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, recipientLine(signer.PublicKey(), "testhost")
}

// ageEncrypt encrypts plain to the recipient lines with the real age.
func ageEncrypt(t *testing.T, plain string, armor bool, recipients ...string) []byte {
	t.Helper()
	args := []string{"--encrypt"}
	if armor {
		args = append(args, "-a")
	}
	for _, r := range recipients {
		args = append(args, "-r", r)
	}
	cmd := exec.Command("age", args...)
	cmd.Stdin = strings.NewReader(plain)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("age %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// otherRecipient is the public key line of a key pgod does not have.
func otherRecipient(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "k")).CombinedOutput()
	if err != nil {
		t.Skipf("ssh-keygen: %v: %s", err, out)
	}
	return strings.TrimSpace(readTestFile(t, filepath.Join(dir, "k.pub")))
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The host key file pgod writes is an age identity; a file for another
// key, a tampered one and a host without age are told apart, and no
// message shows the plain text.
func TestDecryptAgeWithTheHostKey(t *testing.T) {
	needAge(t)
	key, recipient := hostKeyFile(t, t.TempDir())
	ctx := context.Background()
	const plain = "TOKEN=plain-text-value\n"
	for _, armor := range []bool{false, true} {
		sealed := ageEncrypt(t, plain, armor, otherRecipient(t), recipient)
		got, err := decryptAge(ctx, key, sealed)
		if err != nil || string(got) != plain {
			t.Fatalf("armor %v: %q, %v", armor, got, err)
		}
		if h, err := parseAgeFile(sealed); err != nil || h.armored != armor || h.count(ageSSHEd25519) != 2 {
			t.Errorf("armor %v: pgo check reads %+v, %v", armor, h, err)
		}
	}
	_, err := decryptAge(ctx, key, ageEncrypt(t, plain, false, otherRecipient(t)))
	if err == nil || !strings.Contains(err.Error(), "no identity matched (encrypted for another host?)") {
		t.Errorf("for another key: %v", err)
	}
	sealed := ageEncrypt(t, plain, false, recipient)
	sealed[len(sealed)-3] ^= 1
	_, err = decryptAge(ctx, key, sealed)
	if err == nil || !strings.Contains(err.Error(), "the file is corrupt or was tampered with") || strings.Contains(err.Error(), "plain-text") {
		t.Errorf("tampered: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := decryptAge(ctx, key, sealed); err == nil || err.Error() != "secrets.env.age needs age to decrypt: install it (apt install age)" {
		t.Errorf("without age: %v", err)
	}
}

func TestRecipientLineIsAnAuthorizedKey(t *testing.T) {
	key := newTestKey(t)
	line := recipientLine(key.PublicKey(), "deploy")
	parsed, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || !bytes.Equal(parsed.Marshal(), key.PublicKey().Marshal()) || comment != "pgod@deploy" || !strings.HasPrefix(line, "ssh-ed25519 AAAA") {
		t.Errorf("recipient line %q: %v", line, err)
	}
}

// The recipient op prints the host key line, to any key of the service,
// read-only ones included.
func TestSSHRecipientOp(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.keys[0].readOnly = true
	ts := startSSH(t, newFakeCtl(svc), nil)
	stdout, stderr, status := runSSH(t, ts.mustDial(t, key), "web//recipient")
	want := recipientLine(ts.hostKey.PublicKey(), mustHostname(t)) + "\n"
	if stdout != want || stderr != "" || status != 0 {
		t.Errorf("recipient: %q %q %d, want %q", stdout, stderr, status, want)
	}
	if _, stderr, status := runSSH(t, ts.mustDial(t, key), "web//recipient now"); status != exitBadRequest {
		t.Errorf("recipient with an argument: %d %q", status, stderr)
	}
}

func TestSecretsCheck(t *testing.T) {
	svc := &Service{Name: "shop"}
	dir := t.TempDir()
	if line, ok := secretsCheck(dir, svc); line != "" || !ok {
		t.Errorf("no file: %q %v", line, ok)
	}
	write := func(rel string, data []byte) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(secretsFile, armorAge(ageHeaderFile(ageSSHEd25519, "X25519")))
	if line, ok := secretsCheck(dir, svc); !ok || line != "secrets.env.age: well-formed age file (armored), 2 recipients, 1 of them ssh-ed25519; pgod decrypts it at deploy, pgo check cannot" {
		t.Errorf("good file: %q %v", line, ok)
	}
	write(secretsFile, ageHeaderFile("X25519"))
	if line, ok := secretsCheck(dir, svc); ok || !strings.Contains(line, "no ssh-ed25519 recipient") {
		t.Errorf("no ssh-ed25519 recipient: %q %v", line, ok)
	}
	write(secretsFile, []byte("TOKEN=not-encrypted\n"))
	if line, ok := secretsCheck(dir, svc); ok || line != "secrets.env.age: not a well-formed age file: not an age file: it does not start with age-encryption.org/v1" {
		t.Errorf("plain file: %q %v", line, ok)
	}
	os.Remove(filepath.Join(dir, secretsFile))
	os.Symlink("/etc/shadow", filepath.Join(dir, secretsFile))
	if line, ok := secretsCheck(dir, svc); ok || !strings.HasPrefix(line, "secrets.env.age: ") || !strings.Contains(line, "symlink") {
		t.Errorf("symlink: %q %v", line, ok)
	}
	write("deploy/"+secretsFile, bytes.Repeat([]byte("x"), maxSecretsFile+1))
	svc.Compose = "deploy/compose.yaml"
	if line, ok := secretsCheck(dir, svc); ok || line != "deploy/secrets.env.age: is larger than 1048576 bytes" {
		t.Errorf("beside a compose file in a subdirectory, too large: %q %v", line, ok)
	}
}

// pgo check fails on a malformed secrets file and says what it found.
func TestCheckReportsTheSecretsFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, secretsFile), []byte("TOKEN=x\n"), 0o644)
	render := func(context.Context, renderRequest) ([]byte, []violation, error) {
		return []byte(`{"services": {}}`), nil, nil
	}
	var stdout, stderr bytes.Buffer
	code := check([]string{"-s", "shop", dir}, &stdout, &stderr, render, nil)
	if code != 1 || !strings.Contains(stdout.String(), "secrets.env.age: not a well-formed age file") || strings.Contains(stdout.String(), "passes the policy") {
		t.Errorf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	os.WriteFile(filepath.Join(dir, secretsFile), ageHeaderFile(ageSSHEd25519), 0o644)
	stdout.Reset()
	code = check([]string{"-s", "shop", dir}, &stdout, &stderr, render, nil)
	if code != 0 || !strings.Contains(stdout.String(), "secrets.env.age: well-formed age file (binary), 1 recipients") || !strings.Contains(stdout.String(), "passes the policy") {
		t.Errorf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

// secretsWorker is a deployed worker whose host key is a file age can use.
func secretsWorker(t *testing.T, compose string, env ...string) (*worker, *gitRepo, string, string) {
	t.Helper()
	needAge(t)
	w, _, g, first := deployedWorker(t, compose)
	key, recipient := hostKeyFile(t, t.TempDir())
	w.d.flags.hostKey = key
	w.svc.Env = env
	return w, g, first, recipient
}

// pushFiles commits files (path -> content) to g and returns the commit.
func (g *gitRepo) pushFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(g.work, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitT(t, g.work, "add", "-A")
	gitT(t, g.work, "commit", "-q", "-m", "secrets")
	gitT(t, g.work, "push", "-q", g.bare, "HEAD:main")
	return gitT(t, g.work, "rev-parse", "HEAD")
}

const secretsCompose = "services:\n  web:\n    image: busybox:stable\n    command: [\"sleep\", \"1000\"]\n    environment:\n      TOKEN: ${TOKEN}\n      SHARED: ${SHARED}\n"

// A commit's secrets reach the render and compose's environment, pgo.toml
// winning a clash, and every message hides them; a file pgod cannot
// decrypt rejects the commit and what was validated stays.
func TestWorkerCommittedSecrets(t *testing.T) {
	w, g, _, recipient := secretsWorker(t, goodCompose, "SHARED=from-toml")
	ctx := context.Background()
	second := g.pushFiles(t, map[string][]byte{"compose.yaml": []byte(secretsCompose),
		secretsFile: ageEncrypt(t, "TOKEN=committed-token-1\nSHARED=from-file\n", true, recipient)})
	if err := w.sync(ctx, nil, false); err != nil {
		t.Fatalf("sync: %v", err)
	}
	st, _, validated := w.snapshot()
	if st.Deployed != second || !bytes.Contains(validated, []byte(`"TOKEN": "committed-token-1"`)) || !bytes.Contains(validated, []byte(`"SHARED": "from-toml"`)) {
		t.Fatalf("deployed %s, want %s; project:\n%s", st.Deployed, second, validated)
	}
	env := w.composeEnv()
	if !slices.Contains(env, "TOKEN=committed-token-1") || !slices.Contains(env, "SHARED=from-toml") || slices.Contains(env, "SHARED=from-file") {
		t.Errorf("compose's environment: %q", env)
	}
	if got := redact("compose said committed-token-1", w.secrets); got != "compose said ***" {
		t.Errorf("redact: %q", got)
	}

	rotated := g.pushFiles(t, map[string][]byte{secretsFile: ageEncrypt(t, "TOKEN=committed-token-2\n", false, recipient)})
	if err := w.sync(ctx, nil, false); err != nil {
		t.Fatalf("sync of the rotation: %v", err)
	}
	if st, deployed, _ := w.snapshot(); st.Deployed != rotated || !bytes.Contains(deployed, []byte("committed-token-2")) {
		t.Fatalf("the rotation did not deploy: %s\n%s", st.Deployed, deployed)
	}

	for _, tc := range []struct {
		name, reason string
		file         []byte
	}{
		{"another host", "secrets.env.age: no identity matched (encrypted for another host?)", ageEncrypt(t, "TOKEN=x-for-another\n", false, otherRecipient(t))},
		{"tampered", "secrets.env.age: the file is corrupt or was tampered with", func() []byte {
			b := ageEncrypt(t, "TOKEN=tampered-value\n", false, recipient)
			b[len(b)-5] ^= 0x40
			return b
		}()},
		{"bad line", "secrets.env.age: line 2: not KEY=VALUE", ageEncrypt(t, "TOKEN=a\nbare-secret-line\n", false, recipient)},
	} {
		commit := g.pushFiles(t, map[string][]byte{secretsFile: tc.file})
		err := w.sync(ctx, nil, false)
		st, deployed, _ := w.snapshot()
		if err == nil || st.Rejected != commit || len(st.Rejection) != 1 || !strings.HasPrefix(st.Rejection[0], tc.reason) {
			t.Errorf("%s: err %v, rejection %q of %s", tc.name, err, st.Rejection, short(st.Rejected))
		}
		if st.Deployed != rotated || !bytes.Contains(deployed, []byte("committed-token-2")) || !slices.Contains(w.composeEnv(), "TOKEN=committed-token-2") {
			t.Errorf("%s: what runs changed: %s", tc.name, st.Deployed)
		}
		if strings.Contains(strings.Join(st.Rejection, " "), "bare-secret-line") {
			t.Errorf("%s: the rejection shows the file's text", tc.name)
		}
	}
}

// Without age on pgod's PATH, a commit with a secrets file is rejected with the fix.
func TestWorkerSecretsNeedAge(t *testing.T) {
	w, g, first, recipient := secretsWorker(t, goodCompose)
	sealed := ageEncrypt(t, "TOKEN=x\n", false, recipient)
	t.Setenv("PATH", pathOnly(t, "git", "prlimit"))
	commit := g.pushFiles(t, map[string][]byte{secretsFile: sealed})
	w.sync(context.Background(), nil, false)
	if st := w.status(); st.Rejected != commit || st.Deployed != first || !slices.Equal(st.Rejection, []string{"secrets.env.age needs age to decrypt: install it (apt install age)"}) {
		t.Errorf("without age: deployed %s, rejected %s: %q", short(st.Deployed), short(st.Rejected), st.Rejection)
	}
}

// pathOnly is a PATH holding only the commands named.
func pathOnly(t *testing.T, commands ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, c := range commands {
		p, err := exec.LookPath(c)
		if err != nil {
			t.Skipf("needs %s", c)
		}
		if err := os.Symlink(p, filepath.Join(dir, c)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A policy violation that quotes an interpolated secret shows it as ***.
func TestWorkerRejectionHidesCommittedSecrets(t *testing.T) {
	w, g, first, recipient := secretsWorker(t, goodCompose)
	compose := "services:\n  web:\n    image: busybox:stable\n    volumes: [\"/etc/${HIDDEN_DIR}:/x\"]\n"
	commit := g.pushFiles(t, map[string][]byte{"compose.yaml": []byte(compose),
		secretsFile: ageEncrypt(t, "HIDDEN_DIR=secret-dir-name\n", false, recipient)})
	w.sync(context.Background(), nil, false)
	st := w.status()
	reasons := strings.Join(st.Rejection, "\n")
	if st.Rejected != commit || st.Deployed != first || !strings.Contains(reasons, "/etc/***") || strings.Contains(reasons+st.Attempt.Reason, "secret-dir-name") {
		t.Errorf("rejected %s, deployed %s:\n%s\n%s", short(st.Rejected), short(st.Deployed), reasons, st.Attempt.Reason)
	}
}

// A pgod that starts again decrypts the checkout's secrets once more:
// compose gets them, and redact hides them, before any new commit.
func TestWorkerRestoresCommittedSecrets(t *testing.T) {
	w, g, _, recipient := secretsWorker(t, goodCompose)
	g.pushFiles(t, map[string][]byte{"compose.yaml": []byte(secretsCompose),
		secretsFile: ageEncrypt(t, "TOKEN=restored-token\n", false, recipient)})
	if err := w.sync(context.Background(), nil, false); err != nil {
		t.Fatal(err)
	}
	again := newWorker(w.d, w.svc, w.acct, newServiceLock())
	if err := again.restore(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(again.composeEnv(), "TOKEN=restored-token") || redact("restored-token", again.secrets) != "***" {
		t.Errorf("after a restart: env %q", again.composeEnv())
	}
}
