package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// newKeyFile makes an ed25519 key and writes it, unencrypted and in OpenSSH format, to dir/name.
func newKeyFile(t *testing.T, dir, name string) (ssh.Signer, string, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	data := pem.EncodeToMemory(block)
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, path, data
}

// ctlRun runs pgoctl in-process with env as its environment and home as $HOME.
type ctlRun struct {
	home  string
	env   map[string]string
	stdin *os.File
}

func (r *ctlRun) run(args ...string) (stdout, stderr string, status int) {
	var out, errOut bytes.Buffer
	c := &ctlClient{stdin: r.stdin, stdout: &out, stderr: &errOut, home: r.home,
		getenv: func(k string) string { return r.env[k] }}
	status = c.run(args)
	return out.String(), errOut.String(), status
}

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCtlUsage(t *testing.T) {
	r := &ctlRun{home: t.TempDir()}
	out, _, status := r.run("-h")
	if status != 0 {
		t.Errorf("-h: status %d", status)
	}
	for _, want := range []string{"-i KEYFILE", "-p PORT", "--known-hosts FILE", "-h, --help", "PGOCTL_ID", "PGOCTL_HOSTKEY", "HOSTS:NAME//OP",
		"--config FILE", "PGOCTL_CONFIG", "--parallel N", "--connect-timeout D", "[[groups]]", "@prod:web//"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	for _, args := range [][]string{{"-x", "h:web//ping"}, {}, {"web//ping"}, {"h:web"}, {"h:web//"}, {"-p", "http", "h:web//ping"}} {
		_, stderr, status := r.run(args...)
		if status != exitUsage || !strings.HasPrefix(stderr, "pgoctl: ") {
			t.Errorf("pgoctl %q: status %d, stderr %q; want %d and an error", args, status, stderr, exitUsage)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		target  string
		args    []string
		hosts   []string
		command string
	}{
		{"prod1:web//ps", nil, []string{"prod1"}, "web//ps"},
		{"prod1:web//logs -f", []string{"app"}, []string{"prod1"}, "web//logs -f app"},
		{"[::1]:web//exec", []string{"app", "sh", "-c", "echo 'a  b'"}, []string{"::1"}, `web//exec app sh -c 'echo '\''a  b'\'''`},
		{"h.example.org:web//git", []string{"pull"}, []string{"h.example.org"}, "web//git pull"},
		{"web1,web2:shop//status", nil, []string{"web1", "web2"}, "shop//status"},
		{"@prod,web3,[::1]:*//status", nil, []string{"@prod", "web3", "::1"}, "*//status"},
		{"web1,web1:shop//ps", nil, []string{"web1", "web1"}, "shop//ps"}, // duplicates go when resolved
	}
	for _, tc := range tests {
		hosts, command, err := parseTarget(tc.target, tc.args)
		if err != nil || !slices.Equal(hosts, tc.hosts) || command != tc.command {
			t.Errorf("parseTarget(%q, %q) = %q, %q, %v; want %q, %q", tc.target, tc.args, hosts, command, err, tc.hosts, tc.command)
		}
	}
	for _, bad := range []string{"web1,:shop//ps", ",web1:shop//ps", "@:shop//ps", "web1,,web2:shop//ps"} {
		if _, _, err := parseTarget(bad, nil); err == nil || !strings.Contains(err.Error(), "empty host name") {
			t.Errorf("parseTarget(%q): %v, want an empty host name error", bad, err)
		}
	}
}

func TestCtlTrustOnFirstUseAndMismatch(t *testing.T) {
	dir := t.TempDir()
	key, keyFile, _ := newKeyFile(t, dir, "id")
	svc := newFakeService("web", key.PublicKey())
	ts := startSSH(t, newFakeCtl(svc), nil)
	known := filepath.Join(dir, "config", "known_hosts")
	r := &ctlRun{home: dir}
	args := []string{"-i", keyFile, "-p", port(t, ts.addr), "--known-hosts", known, "127.0.0.1:web//ping"}

	out, stderr, status := r.run(args...)
	hostPort := "[127.0.0.1]:" + port(t, ts.addr)
	if status != 0 || !strings.HasPrefix(out, "pong! - ") {
		t.Fatalf("first use: status %d, %q %q", status, out, stderr)
	}
	wantNotice := "pgoctl: trusting " + hostPort + " on first use: ssh-ed25519 " + ssh.FingerprintSHA256(ts.hostKey.PublicKey())
	if !strings.HasPrefix(stderr, wantNotice) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("first use notice = %q, want one line starting %q", stderr, wantNotice)
	}
	data, err := os.ReadFile(known)
	if err != nil || string(data) != knownhosts.Line([]string{hostPort}, ts.hostKey.PublicKey())+"\n" {
		t.Errorf("known_hosts = %q, %v", data, err)
	}
	if fi, _ := os.Stat(known); fi.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v", fi.Mode())
	}

	// Second time: known, silent.
	if _, stderr, status := r.run(args...); status != 0 || stderr != "" {
		t.Errorf("second use: status %d, stderr %q", status, stderr)
	}

	// The same host with a hashed entry (OpenSSH's HashKnownHosts) is known too.
	hashed := filepath.Join(dir, "hashed")
	os.WriteFile(hashed, []byte("# comment\n"+knownhosts.HashHostname(hostPort)+" "+
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ts.hostKey.PublicKey())))+"\n"), 0o600)
	hargs := append([]string{}, args...)
	hargs[5] = hashed
	if _, stderr, status := r.run(hargs...); status != 0 || stderr != "" {
		t.Errorf("hashed entry: status %d, stderr %q", status, stderr)
	}

	// Another key for this host: refused, loudly, and the op never runs.
	other := newTestKey(t)
	os.WriteFile(known, []byte(knownhosts.Line([]string{hostPort}, other.PublicKey())+"\n"), 0o600)
	calls, _ := svc.recorded()
	out, stderr, status = r.run(append(args[:6:6], "127.0.0.1:web//up")...)
	if status != exitSSH || out != "" {
		t.Errorf("mismatch: status %d, stdout %q", status, out)
	}
	for _, want := range []string{"HOST KEY MISMATCH for " + hostPort, ssh.FingerprintSHA256(ts.hostKey.PublicKey()),
		ssh.FingerprintSHA256(other.PublicKey()), known + ":1", "Refusing to connect"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("mismatch message lacks %q:\n%s", want, stderr)
		}
	}
	if after, _ := svc.recorded(); len(after) != len(calls) {
		t.Errorf("op ran despite a host key mismatch: %q", after[len(calls):])
	}
	if data, _ := os.ReadFile(known); strings.Count(string(data), "\n") != 1 {
		t.Errorf("known_hosts changed on mismatch:\n%s", data)
	}
}

func TestCtlPinnedHostKey(t *testing.T) {
	dir := t.TempDir()
	key, keyFile, _ := newKeyFile(t, dir, "id")
	ts := startSSH(t, newFakeCtl(newFakeService("web", key.PublicKey())), nil)
	known := filepath.Join(dir, "known_hosts")
	args := []string{"-i", keyFile, "-p", port(t, ts.addr), "--known-hosts", known, "127.0.0.1:web//ping"}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ts.hostKey.PublicKey())))
	for _, pin := range []string{ssh.FingerprintSHA256(ts.hostKey.PublicKey()), authorized + " pgod@prod1",
		"SHA256:old\n" + ssh.FingerprintSHA256(ts.hostKey.PublicKey())} {
		r := &ctlRun{home: dir, env: map[string]string{"PGOCTL_HOSTKEY": pin}}
		if out, stderr, status := r.run(args...); status != 0 || stderr != "" || !strings.HasPrefix(out, "pong!") {
			t.Errorf("pinned %q: status %d, %q, %q", pin, status, out, stderr)
		}
	}
	if _, err := os.Stat(known); err == nil {
		t.Errorf("a pinned host key wrote %s", known)
	}
	r := &ctlRun{home: dir, env: map[string]string{"PGOCTL_HOSTKEY": ssh.FingerprintSHA256(newTestKey(t).PublicKey())}}
	if _, stderr, status := r.run(args...); status != exitSSH || !strings.Contains(stderr, "HOST KEY MISMATCH") {
		t.Errorf("wrong pin: status %d, %q", status, stderr)
	}
	r = &ctlRun{home: dir, env: map[string]string{"PGOCTL_HOSTKEY": "ssh-ed25519 garbage"}}
	if _, stderr, status := r.run(args...); status != exitUsage || !strings.Contains(stderr, "PGOCTL_HOSTKEY") {
		t.Errorf("unparsable pin: status %d, %q", status, stderr)
	}
}

func TestCtlKeys(t *testing.T) {
	dir := t.TempDir()
	key, _, pemData := newKeyFile(t, filepath.Join(dir, ".ssh"), "id_ed25519")
	svc := newFakeService("web", key.PublicKey())
	svc.dockerScripts["exec"] = `echo "$@" >&2; read x; echo "got $x"; exit 3`
	ts := startSSH(t, newFakeCtl(svc), nil)
	pin := map[string]string{"PGOCTL_HOSTKEY": ssh.FingerprintSHA256(ts.hostKey.PublicKey())}
	p := port(t, ts.addr)

	// The default key from ~/.ssh, the op's exit status and stdin for exec -i.
	stdin, err := os.Open(writeFile(t, dir, "stdin", "hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	r := &ctlRun{home: dir, env: pin, stdin: stdin}
	out, stderr, status := r.run("-p", p, "127.0.0.1:web//exec", "-i", "app", "sh", "-c", "echo 'a  b'")
	if out != "got hello\n" || status != 3 {
		t.Errorf("exec: %q, status %d, stderr %q; want \"got hello\\n\", 3", out, status, stderr)
	}
	if !strings.Contains(stderr, "sh -c echo 'a  b'") {
		t.Errorf("quoted argument did not arrive whole: %q", stderr)
	}

	// PGOCTL_ID holds the key itself.
	env := map[string]string{"PGOCTL_ID": string(pemData), "PGOCTL_HOSTKEY": pin["PGOCTL_HOSTKEY"]}
	r = &ctlRun{home: t.TempDir(), env: env}
	if out, stderr, status := r.run("-p", p, "127.0.0.1:web//ping"); status != 0 || !strings.HasPrefix(out, "pong!") {
		t.Errorf("PGOCTL_ID: status %d, %q %q", status, out, stderr)
	}

	// Another key: known to no service, refused at the handshake.
	_, otherFile, _ := newKeyFile(t, dir, "other")
	r = &ctlRun{home: dir, env: pin}
	if _, stderr, status := r.run("-i", otherFile, "-p", p, "127.0.0.1:web//ping"); status != exitSSH || !strings.Contains(stderr, "refused key SHA256:") {
		t.Errorf("unknown key: status %d, %q", status, stderr)
	}

	// A key other services list gets the server's Unauthorized and its status.
	otherKey, otherFile2, _ := newKeyFile(t, dir, "db")
	svc2 := newFakeService("db", otherKey.PublicKey())
	ts2 := startSSH(t, newFakeCtl(svc, svc2), nil)
	r = &ctlRun{home: dir, env: map[string]string{"PGOCTL_HOSTKEY": ssh.FingerprintSHA256(ts2.hostKey.PublicKey())}}
	if _, stderr, status := r.run("-i", otherFile2, "-p", port(t, ts2.addr), "127.0.0.1:web//ps"); status != exitUnauthorized || !strings.HasPrefix(stderr, "Unauthorized: ") {
		t.Errorf("other service's key: status %d, %q", status, stderr)
	}

	// An encrypted key: a clear error, not a prompt.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	enc := writeFile(t, dir, "encrypted", string(pem.EncodeToMemory(block)))
	if _, stderr, status := r.run("-i", enc, "-p", p, "127.0.0.1:web//ping"); status != exitUsage || !strings.Contains(stderr, "is encrypted with a passphrase") {
		t.Errorf("encrypted key: status %d, %q", status, stderr)
	}
	r = &ctlRun{home: dir, env: map[string]string{"PGOCTL_ID": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n"}}
	if _, stderr, status := r.run("-p", p, "127.0.0.1:web//ping"); status != exitUsage || !strings.Contains(stderr, "key PGOCTL_ID: ") || strings.Contains(stderr, "not really") {
		t.Errorf("bad PGOCTL_ID: status %d, %q", status, stderr)
	}
	r = &ctlRun{home: t.TempDir()}
	if _, stderr, status := r.run("-p", p, "127.0.0.1:web//ping"); status != exitUsage || !strings.Contains(stderr, "no key") {
		t.Errorf("no key anywhere: status %d, %q", status, stderr)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
