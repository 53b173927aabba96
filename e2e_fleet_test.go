//go:build e2e

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EFleetConfigRepo runs two pgods, web1 and web2, from one config
// repository: each runs only the services whose hosts name it, a config
// commit reaches both, an invalid one changes nothing on either, and a pgod
// that starts while the repository is gone starts from its last good config.
func TestE2EFleetConfigRepo(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	a, b, c := uniqueName("fleeta"), uniqueName("fleetb"), uniqueName("fleetc")
	team := newKey(t, openTempDir(t), "team")
	ups := map[string]*upstream{}
	for _, name := range []string{a, b, c} {
		ups[name] = newUpstream(t)
		ups[name].commit(t, map[string]string{"compose.yaml": webCompose(name), "ssh/team.pub": readFile(t, team+".pub")})
	}
	svcA := serviceTOML(a, ups[a].bare, `hosts = [ "web1" ]`)
	svcB := serviceTOML(b, ups[b].bare, `hosts = [ "web2" ]`)
	svcC := serviceTOML(c, ups[c].bare, `hosts = [ "web2" ]`)

	configs := newUpstream(t)
	first := configs.commit(t, map[string]string{"pgo.toml": svcA + svcB})
	operator := newKey(t, openTempDir(t), "operator")
	operators := filepath.Join(openTempDir(t), "operators")
	os.Mkdir(operators, 0o755)
	if err := os.WriteFile(filepath.Join(operators, "oncall.pub"), []byte(readFile(t, operator+".pub")), 0o644); err != nil {
		t.Fatal(err)
	}
	flags := func(host string) []string {
		return []string{"--config-repo", configs.bare, "--config-interval", "1s", "--name", host, "--operators", operators}
	}
	// pgod is not to read -c when it follows a repository: the file names
	// every service for every host, so reading it would show below.
	everything := serviceTOML(a, ups[a].bare) + serviceTOML(b, ups[b].bare) + serviceTOML(c, ups[c].bare)
	web1 := startDaemon(t, everything, flags("web1")...)
	web2 := startDaemon(t, everything, flags("web2")...)

	pageIs(t, a, a, 90*time.Second)
	pageIs(t, b, b, 90*time.Second)
	web1.logShows(t, "starting as host web1", 10*time.Second)
	web1.logShows(t, "1 of the config's 2 services", time.Second)
	runsOnly(t, web1, []string{a}, []string{b, c})
	runsOnly(t, web2, []string{b}, []string{a, c})
	for _, d := range []*daemonProc{web1, web2} {
		configIs(t, d, first)
	}

	// A commit reaches both: web2 gains c, web1 runs the new commit too.
	second := configs.commit(t, map[string]string{"pgo.toml": svcA + svcB + svcC})
	pageIs(t, c, c, 90*time.Second)
	for _, d := range []*daemonProc{web1, web2} {
		configIs(t, d, second)
	}
	runsOnly(t, web1, []string{a}, []string{b, c})
	runsOnly(t, web2, []string{b, c}, []string{a})
	out, _, code := web1.ctl(t, team, a+"//status")
	if code != 0 || !strings.Contains(out, "config:") || !strings.Contains(out, second) {
		t.Errorf("status on web1: exit %d, want it to name config commit %s:\n%s", code, second, out)
	}

	// The fleet at once, by group: each host lists its own services and the
	// config commit it runs.
	client := openTempDir(t)
	clientConfig := filepath.Join(client, "pgoctl.toml")
	os.WriteFile(clientConfig, []byte(fmt.Sprintf("[[hosts]]\nname = \"web1\"\naddress = %q\n[[hosts]]\nname = \"web2\"\naddress = %q\n"+
		"[[groups]]\nname = \"fleet\"\nhosts = [ \"web1\", \"web2\" ]\n", web1.sshAddr, web2.sshAddr)), 0o600)
	out, errOut, code := fanOutCtl(t, operator, clientConfig, filepath.Join(client, "known_hosts"), "@fleet:*//status")
	if code != 0 {
		t.Fatalf("@fleet:*//status: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"web1: " + a + " ", "web2: " + b + " ", "web2: " + c + " ",
		"web1: config commit " + second, "web2: config commit " + second} {
		if !strings.Contains(out, want) {
			t.Errorf("@fleet:*//status lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"web1: " + b, "web1: " + c, "web2: " + a} {
		if strings.Contains(out, unwanted) {
			t.Errorf("@fleet:*//status shows %q, which that host does not run:\n%s", unwanted, out)
		}
	}

	// An invalid commit changes nothing on either host.
	valid := svcA + svcB + svcC
	invalid := configs.commit(t, map[string]string{"pgo.toml": valid + "hostz = 1\n"})
	bad := fmt.Sprintf(`pgo.toml@%s:%d: service %q: unknown key "hostz"`, short(invalid), strings.Count(valid, "\n")+1, c)
	for _, d := range []*daemonProc{web1, web2} {
		d.logShows(t, "config commit "+short(invalid)+" not applied, the running one stays", 30*time.Second)
		d.logShows(t, bad, time.Second)
		configIs(t, d, second)
		if m := metricsText(t, d); !strings.Contains(m, `pgo_config_reloads_total{result="error"} 1`) {
			t.Errorf("the refused commit is not counted:\n%s", grepLines(m, "pgo_config_reloads_total"))
		}
	}
	for _, name := range []string{a, b, c} {
		pageIs(t, name, name, 10*time.Second)
	}

	// The next good commit applies: b leaves the config, web2 brings it down.
	fourth := configs.commit(t, map[string]string{"pgo.toml": svcA + svcC})
	waitFor(t, b+"'s containers to go", 60*time.Second, func() bool { return len(projectContainers(t, b)) == 0 })
	for _, d := range []*daemonProc{web1, web2} {
		configIs(t, d, fourth)
	}
	pageIs(t, a, a, 10*time.Second)
	pageIs(t, c, c, 10*time.Second)

	// web1 restarts while the repository is gone: it runs the last good
	// config, says so, and applies the repository's commits once it is back.
	web1.stop(t)
	hidden := configs.bare + ".away"
	if err := os.Rename(configs.bare, hidden); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Rename(hidden, configs.bare) })
	web1.start(t, flags("web1")...)
	web1.logShows(t, "starting from the last good config, commit "+short(fourth), 30*time.Second)
	configIs(t, web1, fourth)
	pageIs(t, a, a, 30*time.Second)
	if err := os.Rename(hidden, configs.bare); err != nil {
		t.Fatal(err)
	}
	fifth := configs.commit(t, map[string]string{"pgo.toml": svcA + svcC + "\n# back\n"})
	configIs(t, web1, fifth)
}

// runsOnly checks that d has checkouts of the services in here and none of
// those in away.
func runsOnly(t *testing.T, d *daemonProc, here, away []string) {
	t.Helper()
	for _, name := range here {
		if _, err := os.Stat(filepath.Join(d.dir, name, ".git")); err != nil {
			t.Errorf("%s has no checkout of %s: %v", d.dir, name, err)
		}
	}
	for _, name := range away {
		if _, err := os.Stat(filepath.Join(d.dir, name)); err == nil {
			t.Errorf("%s has a checkout of %s, which its hosts list does not give it", d.dir, name)
		}
	}
}

// configIs waits until d's metrics say it runs config commit commit.
func configIs(t *testing.T, d *daemonProc, commit string) {
	t.Helper()
	want := fmt.Sprintf(`commit=%q} 1`, commit)
	waitFor(t, "pgod to run config commit "+short(commit), 30*time.Second, func() bool {
		// A pgod just started may log before its metrics listener is up.
		resp, err := http.Get("http://" + d.metric + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(grepLines(string(body), "pgo_config_info{"), want)
	})
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var kept []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

// TestE2EConfigRepoSigned: with --config-signers, a config commit applies
// only when a listed key signed it; an unsigned one is refused, named, and
// changes nothing.
func TestE2EConfigRepoSigned(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	a, b := uniqueName("signeda"), uniqueName("signedb")
	upA, upB := newUpstream(t), newUpstream(t)
	upA.commit(t, map[string]string{"compose.yaml": webCompose(a)})
	upB.commit(t, map[string]string{"compose.yaml": webCompose(b)})
	keys := openTempDir(t)
	ops := newKey(t, keys, "ops")
	signers := filepath.Join(keys, "config-signers")
	os.WriteFile(signers, []byte(readFile(t, ops+".pub")), 0o600)

	configs := newUpstream(t)
	commit := func(config string, signed bool) string {
		t.Helper()
		os.WriteFile(filepath.Join(configs.work, "pgo.toml"), []byte(config), 0o644)
		sh(t, configs.work, "git", "add", "-A")
		args := []string{"-c", "commit.gpgsign=false", "commit", "-q", "-m", "fleet"}
		if signed {
			args = []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + ops, "commit", "-q", "-S", "-m", "fleet"}
		}
		sh(t, configs.work, "git", args...)
		sh(t, configs.work, "git", "push", "-q", configs.bare, "HEAD:main")
		return sh(t, configs.work, "git", "rev-parse", "HEAD")
	}
	first := commit(serviceTOML(a, upA.bare), true)
	d := startDaemon(t, serviceTOML(a, upA.bare)+serviceTOML(b, upB.bare),
		"--config-repo", configs.bare, "--config-interval", "1s", "--config-signers", signers)
	pageIs(t, a, a, 90*time.Second)
	configIs(t, d, first)

	unsigned := commit(serviceTOML(a, upA.bare)+serviceTOML(b, upB.bare), false)
	d.logShows(t, "config commit "+short(unsigned)+" not applied, the running one stays: config commit "+short(unsigned)+
		" is not signed; --config-signers asks for signed config commits", 30*time.Second)
	configIs(t, d, first)
	if _, err := os.Stat(filepath.Join(d.dir, b)); err == nil {
		t.Errorf("the unsigned commit's service %s was cloned", b)
	}

	signed := commit(serviceTOML(a, upA.bare)+serviceTOML(b, upB.bare)+"# signed\n", true)
	configIs(t, d, signed)
	pageIs(t, b, b, 90*time.Second)
}
