package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func testStatuses() []serviceStatus {
	return []serviceStatus{
		{Name: "web", Branch: "main", Deployed: "3f2a1c9", LastSync: time.Unix(1764160000, 500e6),
			DeployedAt: time.Unix(1764150000, 0), LastResult: resultOK, Running: 2, Desired: 3},
		{Name: "api", Branch: `we"ird\branch` + "\n", LastResult: resultRejected, Upstream: "9d0e", Rejected: "9d0e",
			Rejection: []string{"privileged is not allowed", "pid: host is not allowed"}, Stopped: true},
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the text format 0.0.4", ct)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exercisedMetrics() *metrics {
	m := newMetrics(testStatuses)
	m.command("web", "compose up", nil)
	m.command("web", "compose up", errors.New("exit status 1"))
	m.command("web", "compose pull --quiet", nil)
	m.command("web", "docker login", nil)
	m.command("api", "git", nil)
	m.deploy("web", resultOK)
	m.deploy("web", resultRolledBack)
	m.deploy("api", resultRejected)
	m.deploy("api", resultRejected)
	m.sshSession("web", "ok")
	m.sshSession("web", "ok")
	m.sshSession("", "unauthorized")
	m.webhook("web", hookTriggered)
	m.webhook("", hookUnauthorized)
	m.notificationEndpoints([]string{"ops", "web-notify-1"})
	m.notification("ops", notifySent)
	m.notification("ops", notifySent)
	m.notification("ops", notifyDropped)
	return m
}

func TestMetricsSamples(t *testing.T) {
	out := scrape(t, exercisedMetrics())
	want := []string{
		`pgo_build_info{version="` + version + `"} 1`,
		`pgo_command_count{service="web",cmd="compose",subcmd="up"} 2`,
		`pgo_command_count{service="web",cmd="compose",subcmd="pull"} 1`,
		`pgo_command_count{service="web",cmd="docker",subcmd="login"} 1`,
		`pgo_command_count{service="api",cmd="git",subcmd=""} 1`,
		`pgo_command_error_count{service="web",cmd="compose",subcmd="up"} 1`,
		`pgo_service_info{service="web",branch="main",commit="3f2a1c9"} 1`,
		`pgo_service_info{service="api",branch="we\"ird\\branch\n",commit=""} 1`,
		`pgo_service_last_sync_timestamp_seconds{service="web"} 1764160000.5`,
		`pgo_service_stopped{service="api"} 1`,
		`pgo_service_stopped{service="web"} 0`,
		`pgo_deploys_total{service="web",result="ok"} 1`,
		`pgo_deploys_total{service="web",result="rolled_back"} 1`,
		`pgo_deploys_total{service="web",result="failed"} 0`,
		`pgo_deploys_total{service="api",result="rejected"} 2`,
		`pgo_deploys_total{service="api",result="ok"} 0`,
		`pgo_policy_rejections_total{service="api"} 2`,
		`pgo_policy_rejections_total{service="web"} 0`,
		`pgo_policy_violations{service="api"} 2`,
		`pgo_policy_violations{service="web"} 0`,
		`pgo_containers_running{service="web"} 2`,
		`pgo_containers_desired{service="web"} 3`,
		`pgo_ssh_sessions_total{service="web",result="ok"} 2`,
		`pgo_ssh_sessions_total{service="",result="unauthorized"} 1`,
		`pgo_webhooks_total{service="web",result="triggered"} 1`,
		`pgo_notifications_total{endpoint="ops",result="sent"} 2`,
		`pgo_notifications_total{endpoint="ops",result="dropped"} 1`,
		`pgo_notifications_total{endpoint="ops",result="failed"} 0`,
		`pgo_notifications_total{endpoint="web-notify-1",result="suppressed"} 0`,
		`# TYPE pgo_notifications_total counter`,
		`# TYPE pgo_command_count untyped`,
		`# TYPE pgo_deploys_total counter`,
		`# TYPE pgo_containers_running gauge`,
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		lines[l] = true
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("missing line %s", w)
		}
	}
	// The last successful deploy is the time status shows the commit running since.
	if !lines[`pgo_service_last_deploy_timestamp_seconds{service="web"} 1764150000`] {
		t.Errorf("last deploy timestamp for web is not the one status shows:\n%s", out)
	}
	if strings.Contains(out, `pgo_service_last_deploy_timestamp_seconds{service="api"}`) {
		t.Error("api never deployed, yet has a last deploy timestamp")
	}
	if strings.Contains(out, "--quiet") {
		t.Error("command arguments leaked into labels")
	}
}

func TestMetricsLastDeployFromStatus(t *testing.T) {
	// After a restart pgo has counted nothing; the status still knows.
	out := scrape(t, newMetrics(testStatuses))
	if !strings.Contains(out, "pgo_service_last_deploy_timestamp_seconds{service=\"web\"} 1764150000\n") {
		t.Errorf("last deploy timestamp not taken from status:\n%s", out)
	}
}

func TestMetricsDeterministic(t *testing.T) {
	m := exercisedMetrics()
	first := scrape(t, m)
	for range 20 {
		if again := scrape(t, m); again != first {
			t.Fatalf("two scrapes differ:\n%s\n---\n%s", first, again)
		}
	}
}

func TestMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus); skipped")
	}
	for name, m := range map[string]*metrics{
		"exercised": exercisedMetrics(),
		"empty":     newMetrics(func() []serviceStatus { return nil }),
	} {
		out := scrape(t, m)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(out)
		var report bytes.Buffer
		cmd.Stdout, cmd.Stderr = &report, &report
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: promtool check metrics: %v\n%s\nexposition:\n%s", name, err, report.String(), out)
		}
	}
}

func TestMetricsConcurrent(t *testing.T) {
	m := newMetrics(testStatuses)
	srv := httptest.NewServer(m)
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				m.command("web", "compose up", nil)
				m.deploy("web", resultOK)
				m.sshSession("web", "ok")
			}
		})
		if i%2 == 0 {
			wg.Go(func() {
				resp, err := srv.Client().Get(srv.URL)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
	}
	wg.Wait()
	out := scrape(t, m)
	for _, w := range []string{
		`pgo_command_count{service="web",cmd="compose",subcmd="up"} 1600`,
		`pgo_deploys_total{service="web",result="ok"} 1600`,
		`pgo_ssh_sessions_total{service="web",result="ok"} 1600`,
	} {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("missing %s", w)
		}
	}
}

func TestMetricsMethod(t *testing.T) {
	rec := httptest.NewRecorder()
	newMetrics(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", rec.Code)
	}
}

func TestEscapeLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:       `plain`,
		`a"b`:         `a\"b`,
		`a\b`:         `a\\b`,
		"a\nb":        `a\nb`,
		`\"` + "\n":   `\\\"\n`,
		"tab\tstays":  "tab\tstays",
		"ünïcødé ok":  "ünïcødé ok",
		`trailing \`:  `trailing \\`,
		`"quoted"`:    `\"quoted\"`,
		"\\n literal": `\\n literal`,
	} {
		if got := escapeLabelValue(in); got != want {
			t.Errorf("escapeLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHealth(t *testing.T) {
	now := time.Unix(1764160000, 0)
	h := newHealth()
	h.now = func() time.Time { return now }

	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	h.beat("poll web", time.Minute)
	h.beat("sshd", 10*time.Second)
	if code, body := get(); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("fresh loops: %d %q, want 200 ok", code, body)
	}
	now = now.Add(30 * time.Second)
	code, body := get()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "sshd: no heartbeat for 30s") || strings.Contains(body, "poll web") {
		t.Fatalf("sshd silent for 30s: %d %q, want 503 naming only sshd", code, body)
	}
	h.beat("sshd", 10*time.Second)
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("after sshd beat again: %d, want 200", code)
	}
	now = now.Add(2 * time.Minute)
	h.beat("sshd", 10*time.Second)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "poll web") {
		t.Fatalf("poll web silent: %d %q, want 503", code, body)
	}
	h.forget("poll web")
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("after forgetting the removed service's loop: %d, want 200", code)
	}
}

// TestMetricsNotificationEndpoints: an endpoint removed from the config stops
// exporting zeros, and keeps what it counted.
func TestMetricsNotificationEndpoints(t *testing.T) {
	m := newMetrics(nil)
	m.notificationEndpoints([]string{"a", "b"})
	m.notification("a", notifyFailed)
	m.notificationEndpoints([]string{"a"})
	out := scrape(t, m)
	if !strings.Contains(out, `pgo_notifications_total{endpoint="a",result="failed"} 1`+"\n") ||
		!strings.Contains(out, `pgo_notifications_total{endpoint="a",result="sent"} 0`+"\n") {
		t.Errorf("endpoint a not exported:\n%s", out)
	}
	if strings.Contains(out, `endpoint="b"`) {
		t.Errorf("removed endpoint b still exported:\n%s", out)
	}
}
