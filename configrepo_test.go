package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fleetConfig = `[[services]]
name = "shop"
user = "shop"
repository = "/srv/shop.git"
hosts = [ "web1", "web2.example.org" ]

[[services]]
name = "blog"
user = "blog"
repository = "/srv/blog.git"
hosts = [ "WEB3" ]

[[services]]
name = "metrics"
user = "metrics"
repository = "/srv/metrics.git"
`

// TestKeepHost: a service runs on the hosts its hosts list names, by
// whole name or first label and in any case, and one without the key runs
// everywhere; the others are kept aside, not dropped.
func TestKeepHost(t *testing.T) {
	for _, c := range []struct {
		host      string
		here      []string
		elsewhere []string
	}{
		{"web1", []string{"shop", "metrics"}, []string{"blog"}},
		{"web1.example.org", []string{"shop", "metrics"}, []string{"blog"}},
		{"web2.example.org", []string{"shop", "metrics"}, []string{"blog"}},
		{"web2", []string{"metrics"}, []string{"shop", "blog"}}, // hosts names web2.example.org only
		{"web3.lan", []string{"blog", "metrics"}, []string{"shop"}},
		{"db1", []string{"metrics"}, []string{"shop", "blog"}},
	} {
		cfg, err := parseConfig("pgo.toml", []byte(fleetConfig))
		if err != nil {
			t.Fatal(err)
		}
		cfg.keepHost(c.host)
		if got := serviceNames(cfg.Services); !equalStrings(got, c.here) {
			t.Errorf("host %s runs %v, want %v", c.host, got, c.here)
		}
		if got := serviceNames(cfg.Elsewhere); !equalStrings(got, c.elsewhere) {
			t.Errorf("host %s keeps aside %v, want %v", c.host, got, c.elsewhere)
		}
	}
}

func serviceNames(ss []*Service) []string {
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
	}
	return names
}

func equalStrings(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestHostsKeyErrors(t *testing.T) {
	base := "[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\n"
	for _, c := range []struct{ line, want string }{
		{`hosts = []`, `pgo.toml:5: service "a": hosts is empty, so no host would run the service`},
		{`hosts = [ "web 1" ]`, `pgo.toml:5: service "a": hosts[0]: "web 1" is not a host name`},
		{`hosts = [ "*.example.org" ]`, `hosts[0]: "*.example.org" is not a host name`},
		{`hosts = "web1"`, `hosts must be an array of strings, not a string`},
		{`host = [ "web1" ]`, `unknown key "host" at line 5; did you mean "hosts"?`},
	} {
		_, err := parseConfig("pgo.toml", []byte(base+c.line+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.line, err, c.want)
		}
	}
}

func TestConfigRepoFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	f, code := parseDaemonFlags([]string{"--config-repo", "https://git.example.org/ops/fleet.git", "--name", "web1"}, &stdout, &stderr)
	if code >= 0 || f.configRepo == "" || f.configBranch != "main" || f.configFile != "pgo.toml" || f.configInterval.Seconds() != 60 || f.name != "web1" {
		t.Fatalf("flags %+v, code %d", f, code)
	}
	if f, _ := parseDaemonFlags(nil, &stdout, &stderr); f == nil || f.name == "" {
		t.Errorf("--name has no default: %+v", f)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--config-repo", "https://oauth2:glpat-S3cretT0kenValue@git.example.org/ops/fleet.git"}, "--config-repo holds credentials, and every local user can read pgod's command line"},
		{[]string{"--config-repo", "gopher://example.org/x"}, "--config-repo "},
		{[]string{"--config-repo", "/srv/fleet.git", "--config-branch", "a..b"}, `--config-branch "a..b" is not a valid git branch name`},
		{[]string{"--config-repo", "/srv/fleet.git", "--config-file", "../pgo.toml"}, `--config-file "../pgo.toml"`},
		{[]string{"--config-repo", "/srv/fleet.git", "--config-interval", "10ms"}, "--config-interval 10ms is too short"},
		{[]string{"--config-signers", "/etc/pgo/config-signers"}, "--config-signers is for --config-repo"},
		{[]string{"--config-repo", "/srv/fleet.git", "--config-signers", "signers"}, `--config-signers "signers": give an absolute path`},
	} {
		stderr.Reset()
		if _, code := parseDaemonFlags(c.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
	t.Setenv(configRepoEnv, "https://oauth2:glpat-S3cretT0kenValue@git.example.org/ops/fleet.git")
	if f, _ := parseDaemonFlags(nil, &stdout, &stderr); f == nil || f.configRepo != os.Getenv(configRepoEnv) {
		t.Errorf("$%s is not the config repository: %+v", configRepoEnv, f)
	}
}

// TestConfigRepo follows a config repository through its life: nothing kept
// at first, a commit read from git's objects (not a work tree), kept with
// its id, a later commit fetched, and a commit without the file named.
func TestConfigRepo(t *testing.T) {
	g := newGitRepo(t)
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(g.work, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		gitT(t, g.work, "add", "-A")
		gitT(t, g.work, "commit", "-q", "-m", "config")
		gitT(t, g.work, "push", "-q", g.bare, "HEAD:main")
		return gitT(t, g.work, "rev-parse", "HEAD")
	}
	first := write("fleet/pgo.toml", fleetConfig)
	dir := t.TempDir()
	c, err := newConfigRepo(g.bare, "main", "fleet/pgo.toml", "", dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.saved(); !errors.Is(err, errNoSavedConfig) {
		t.Fatalf("saved before any commit: %v", err)
	}
	ctx := context.Background()
	head, err := c.head(ctx)
	if err != nil || head != first {
		t.Fatalf("head = %s, %v; want %s", head, err, first)
	}
	data, err := c.read(ctx, head)
	if err != nil || string(data) != fleetConfig {
		t.Fatalf("read: %q, %v", data, err)
	}
	if err := c.keep(head, data); err != nil {
		t.Fatal(err)
	}
	kept, commit, err := c.saved()
	if err != nil || commit != first || string(kept) != fleetConfig {
		t.Fatalf("saved = %q, %s, %v", kept, commit, err)
	}
	if label := c.label(first); label != "fleet/pgo.toml@"+short(first) {
		t.Errorf("label = %q", label)
	}

	second := write("fleet/pgo.toml", strings.Replace(fleetConfig, "WEB3", "web4", 1))
	if head, err = c.head(ctx); err != nil || head != second {
		t.Fatalf("head after a push = %s, %v; want %s", head, err, second)
	}
	if data, err = c.read(ctx, head); err != nil || !strings.Contains(string(data), "web4") {
		t.Fatalf("read after a fetch: %q, %v", data, err)
	}

	gitT(t, g.work, "rm", "-q", "fleet/pgo.toml")
	third := write("README", "moved\n")
	_, err = c.read(ctx, third)
	if err == nil || !strings.Contains(err.Error(), "has no file fleet/pgo.toml (set --config-file") {
		t.Errorf("read of a commit without the file: %v", err)
	}
}

// TestConfigRepoHidesCredentials: a URL's password is in no error.
func TestConfigRepoHidesCredentials(t *testing.T) {
	const secret = "glpat-S3cretT0kenValue"
	c, err := newConfigRepo("https://oauth2:"+secret+"@127.0.0.1:1/ops/fleet.git", "main", "pgo.toml", "", t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.head(context.Background())
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("head of an unreachable repository: %v", err)
	}
	if strings.Contains(c.describe(), secret) {
		t.Errorf("describe shows the password: %s", c.describe())
	}
}

func TestConfigInfoMetric(t *testing.T) {
	m := newMetrics(nil)
	if strings.Contains(metricsOf(m), "pgo_config_info{") {
		t.Error("pgo_config_info has a sample before pgod started")
	}
	m.runsConfig("web1", "0123456789abcdef0123456789abcdef01234567")
	want := `pgo_config_info{host="web1",commit="0123456789abcdef0123456789abcdef01234567"} 1`
	if got := metricsOf(m); !strings.Contains(got, want) {
		t.Errorf("metrics lack %s:\n%s", want, got)
	}
}

func metricsOf(m *metrics) string {
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestConfigRepoSigned: with --config-signers, a config commit verifies
// only when a key of that file signed it; an unsigned one and one signed by
// another key are refused, and a key added to the file counts at once.
func TestConfigRepoSigned(t *testing.T) {
	ops, other := newSigningKey(t, "ops"), newSigningKey(t, "intruder")
	g := newGitRepo(t)
	commit := func(key signingKey) string {
		t.Helper()
		os.WriteFile(filepath.Join(g.work, "pgo.toml"), []byte(fleetConfig+"# "+key.line+"\n"), 0o644)
		gitT(t, g.work, "add", "-A")
		args := []string{"-c", "commit.gpgsign=false", "commit", "-q", "-m", "config"}
		if key.file != "" {
			args = []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key.file, "commit", "-q", "-S", "-m", "config"}
		}
		gitT(t, g.work, args...)
		gitT(t, g.work, "push", "-q", g.bare, "HEAD:main")
		return gitT(t, g.work, "rev-parse", "HEAD")
	}
	signers := filepath.Join(t.TempDir(), "config-signers")
	os.WriteFile(signers, []byte("# who may change the fleet\n"+ops.line+"\n"), 0o600)
	c, err := newConfigRepo(g.bare, "main", "pgo.toml", signers, t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	judge := func(head string) error {
		t.Helper()
		if _, err := c.read(ctx, head); err != nil {
			t.Fatal(err)
		}
		return c.verify(ctx, head)
	}
	if err := judge(commit(ops)); err != nil {
		t.Errorf("a commit signed by a listed key: %v", err)
	}
	unsigned := commit(signingKey{})
	if err := judge(unsigned); err == nil || !strings.Contains(err.Error(), "config commit "+short(unsigned)+" is not signed; --config-signers asks for signed config commits: sign it with an SSH key listed in "+signers) {
		t.Errorf("an unsigned commit: %v", err)
	}
	foreign := commit(other)
	if err := judge(foreign); err == nil || !strings.Contains(err.Error(), other.fingerprint()+", which is not a key in "+signers+": sign it with one that is, or add the key to "+signers) {
		t.Errorf("a commit signed by a key not listed: %v", err)
	}
	os.WriteFile(signers, []byte(ops.line+"\n"+other.line+"\n"), 0o600)
	if err := c.verify(ctx, foreign); err != nil {
		t.Errorf("the same commit once its key is listed: %v", err)
	}
	os.WriteFile(signers, []byte("# nobody\n"), 0o600)
	if err := c.verify(ctx, foreign); err == nil || !strings.Contains(err.Error(), "lists no key that may sign") {
		t.Errorf("with no key listed: %v", err)
	}
}
