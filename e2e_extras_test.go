//go:build e2e

package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EWebhookBurst pushes a commit and fires 50 signed GitHub hooks at
// once: the service deploys once, long before the (hour-long) poll.
func TestE2EWebhookBurst(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("hook")
	up := newUpstream(t)
	up.commit(t, map[string]string{"compose.yaml": webCompose("before")})
	secret := "hook-secret-for-tests"
	d := startDaemon(t, serviceTOML(name, up.bare, `webhook_secret = "`+secret+`"`), "-t", "1h")
	pageIs(t, name, "before", 60*time.Second)

	next := up.commit(t, map[string]string{"compose.yaml": webCompose("after")})
	pushed := time.Now()
	body := `{"ref":"refs/heads/main","after":"` + next + `"}`
	postGitHubHooks(t, http.DefaultClient, "http://"+d.hooks+"/hook/"+name, secret, []byte(body), 50)
	pageIs(t, name, "after", 60*time.Second)
	t.Logf("push to serving the new page via webhook: %s", time.Since(pushed).Round(time.Millisecond))
	d.logShows(t, "deployed "+short(next), 10*time.Second)
	if n := strings.Count(d.logs(), "deployed "+short(next)); n != 1 {
		t.Fatalf("50 hooks gave %d deploys, want 1", n)
	}
	if strings.Contains(d.logs(), secret) {
		t.Fatal("the webhook secret appeared in the log")
	}

	// A wrong signature is refused like an unknown service.
	req, _ := http.NewRequest("POST", "http://"+d.hooks+"/hook/"+name, strings.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", "sha256=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad signature answered %d, want 401", resp.StatusCode)
	}
}

// TestE2ECaddySnippet gives one service an import and two services URLs: the
// snippet routes each URL to its container, real Caddy accepts it, and the
// reload command runs in the owner's container.
func TestE2ECaddySnippet(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	proxy, app := uniqueName("proxy"), uniqueName("app")
	upP, upA := newUpstream(t), newUpstream(t)
	upP.commit(t, map[string]string{"compose.yaml": webCompose("proxy")})
	upA.commit(t, map[string]string{"compose.yaml": webCompose("app")})
	cfg := serviceTOML(proxy, upP.bare,
		`import = "Caddyfile-import"`,
		`reload = "localhost:`+proxy+`//exec web touch /srv/reloaded"`,
		`urls = { "proxy.example.org" = "web:8080" }`) +
		serviceTOML(app, upA.bare, `urls = { "app.example.org" = "web:8080" }`)
	d := startDaemon(t, cfg)
	pageIs(t, proxy, "proxy", 60*time.Second)
	snippet := filepath.Join(d.dir, proxy, "Caddyfile-import")
	waitFor(t, "the snippet", 30*time.Second, func() bool {
		data, _ := os.ReadFile(snippet)
		return strings.Contains(string(data), app+"-web-1:8080") && strings.Contains(string(data), proxy+"-web-1:8080")
	})
	if out, err := exec.Command("caddy", "adapt", "--config", snippet, "--adapter", "caddyfile").CombinedOutput(); err != nil {
		t.Fatalf("caddy adapt refused the snippet: %v\n%s", err, out)
	}
	waitFor(t, "the reload command to run", 30*time.Second, func() bool {
		return exec.Command("docker", "exec", proxy+"-web-1", "test", "-e", "/srv/reloaded").Run() == nil
	})
}
