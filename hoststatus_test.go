package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fields is a table's lines, each with its blanks squeezed to one space.
func fields(table string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(table), "\n") {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return out
}

func TestFormatHostStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	sts := []serviceStatus{
		{Name: "web", Deployed: "0123456789", DeployedAt: now.Add(-26 * time.Hour), LastResult: resultOK, Running: 2, Desired: 2},
		{Name: "api", Deployed: "aaaaaaaaaa", DeployedAt: now.Add(-90 * time.Minute), Upstream: "bbbbbbbbbb",
			Rejected: "bbbbbbbbbb", LastResult: resultRejected, Running: 1, Desired: 1},
		{Name: "cache", Deployed: "cccccccccc", DeployedAt: now.Add(-5 * time.Minute), LastResult: resultOK, Stopped: true, Desired: 1},
		{Name: "db", Deployed: "dddddddddd", DeployedAt: now.Add(-40 * time.Second), LastResult: "unhealthy", Running: 0, Desired: 1},
		{Name: "new"},
		{Name: "first", Rejected: "eeeeeeeeee", Upstream: "eeeeeeeeee", LastResult: resultRejected},
		{Name: "moved", Rejected: "eeeeeeeeee", Upstream: "9999999999", LastResult: resultFailed}, // a later commit failed
		{Name: "shrunk", Deployed: "ffffffffff", DeployedAt: now.Add(-time.Minute), LastResult: resultOK, Running: 1, Desired: 3},
	}
	want := []string{
		"SERVICE STATE COMMIT AGE LAST RESULT CONTAINERS",
		"api rejected aaaaaaa 1h30m rejected 1/1",
		"cache stopped ccccccc 5m ok 0/1",
		"db failing ddddddd 40s unhealthy 0/1",
		"first rejected - - rejected 0/0",
		"moved failing - - failed 0/0",
		"new not deployed yet - - - 0/0",
		"shrunk failing fffffff 1m ok 1/3",
		"web deployed 0123456 1d2h ok 2/2",
	}
	if got := fields(formatHostStatus(sts, now)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("host status:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPgoStatusFromSavedState(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(t.TempDir(), "pgo.toml")
	var toml string
	for _, name := range []string{"web", "api", "cache", "new"} {
		toml += "[[services]]\nname = \"" + name + "\"\nuser = \"root\"\nrepository = \"/srv/" + name + ".git\"\n"
	}
	os.WriteFile(config, []byte(toml), 0o600)
	now := time.Now()
	save := func(name string, s savedState) {
		p := statePaths{filepath.Join(dir, ".pgo", name)}
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := saveState(p, s); err != nil {
			t.Fatal(err)
		}
	}
	save("web", savedState{Deployed: "0123456789", DeployedAt: now.Add(-3 * time.Hour), LastResult: resultOK})
	save("api", savedState{Deployed: "aaaaaaaaaa", DeployedAt: now.Add(-3 * time.Hour), Upstream: "bbbbbbbbbb",
		Rejected: "bbbbbbbbbb", LastResult: resultRejected})
	save("cache", savedState{Deployed: "cccccccccc", DeployedAt: now.Add(-3 * time.Hour), LastResult: resultOK})
	os.WriteFile(filepath.Join(dir, "cache.stop"), []byte("set by pgoctl down\n"), 0o644)
	save("gone", savedState{Deployed: "9999999999"}) // removed from the config: not listed

	var stdout, stderr bytes.Buffer
	if code := run([]string{"pgo", "status", "-c", config, "-d", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("pgo status: exit %d, %s", code, stderr.String())
	}
	want := []string{
		"SERVICE STATE COMMIT AGE LAST RESULT CONTAINERS",
		"api rejected aaaaaaa 3h0m rejected -",
		"cache stopped ccccccc 3h0m ok -",
		"new not deployed yet - - - -",
		"web deployed 0123456 3h0m ok -",
	}
	if got := fields(stdout.String()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("pgo status:\n%s\nwant:\n%s", stdout.String(), strings.Join(want, "\n"))
	}

	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"pgo", "status", "-c", filepath.Join(dir, "nosuch.toml"), "-d", dir}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "give the config pgod runs with: -c FILE") {
		t.Errorf("missing config: exit %d, %q", code, stderr.String())
	}
}

// TestSavedHostStatusKeepsHost: pgo status lists only what this host runs,
// and reads the config pgod last applied from its repository by default.
func TestSavedHostStatusKeepsHost(t *testing.T) {
	dir := t.TempDir()
	kept := filepath.Join(dir, ".pgo", ".config", "pgo.toml")
	if got := defaultStatusConfig(dir); got != "/etc/pgo.toml" {
		t.Errorf("default config without a repository: %s", got)
	}
	os.MkdirAll(filepath.Dir(kept), 0o700)
	if err := os.WriteFile(kept, []byte(fleetConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := defaultStatusConfig(dir); got != kept {
		t.Errorf("default config with a repository: %s, want %s", got, kept)
	}
	out, err := savedHostStatus(kept, dir, "web3", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "blog") || !strings.Contains(out, "metrics") || strings.Contains(out, "shop") {
		t.Errorf("status of web3:\n%s", out)
	}
}
