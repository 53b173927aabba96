package main

import (
	"strings"
	"testing"
	"time"
)

func TestJudgeHealth(t *testing.T) {
	one := map[string]projectService{"app": {Restart: "unless-stopped"}, "init": {Restart: "no"}}
	c := func(name, service, state, health string, restarts, code int) containerHealth {
		return containerHealth{psEntry: psEntry{Name: name, Service: service, State: state, Health: health}, Restarts: restarts, ExitCode: code}
	}
	for _, tc := range []struct {
		name    string
		looks   [][]containerHealth // successive looks; the verdict of the last counts
		ready   bool
		failed  string
		waiting string
		unwell  bool
	}{
		{"all ready", [][]containerHealth{{c("w-app-1", "app", "running", "", 0, 0), c("w-init-1", "init", "exited", "", 0, 0)}}, true, "", "", false},
		{"healthy", [][]containerHealth{{c("w-app-1", "app", "running", "healthy", 0, 0), c("w-init-1", "init", "exited", "", 0, 0)}}, true, "", "", false},
		{"starting", [][]containerHealth{{c("w-app-1", "app", "running", "starting", 0, 0), c("w-init-1", "init", "exited", "", 0, 0)}}, false, "", "health starting", false},
		{"unhealthy waits for the deadline", [][]containerHealth{{c("w-app-1", "app", "running", "unhealthy", 0, 0), c("w-init-1", "init", "exited", "", 0, 0)}}, false, "", "unhealthy", true},
		{"one-shot failed", [][]containerHealth{{c("w-app-1", "app", "running", "", 0, 0), c("w-init-1", "init", "exited", "", 0, 3)}}, false, "exited with status 3", "", false},
		{"missing container", [][]containerHealth{{c("w-app-1", "app", "running", "", 0, 0)}}, false, "", "init: 0 of 1", false},
		{"crash loop", [][]containerHealth{
			{c("w-app-1", "app", "restarting", "", 5, 1), c("w-init-1", "init", "exited", "", 0, 0)},
			{c("w-app-1", "app", "running", "", 7, 1), c("w-init-1", "init", "exited", "", 0, 0)},
		}, false, "restarts repeatedly", "", false},
		{"old restarts do not count", [][]containerHealth{
			{c("w-app-1", "app", "running", "", 5, 0), c("w-init-1", "init", "exited", "", 0, 0)},
			{c("w-app-1", "app", "running", "", 5, 0), c("w-init-1", "init", "exited", "", 0, 0)},
		}, true, "", "", false},
	} {
		baseline := map[string]int{}
		var v healthVerdict
		for _, look := range tc.looks {
			v = judgeHealth(one, look, baseline, time.Now())
		}
		if v.ready() != tc.ready || v.settled() != tc.ready || !strings.Contains(v.failed, tc.failed) || (tc.failed == "") != (v.failed == "") ||
			!strings.Contains(strings.Join(v.waiting, ", "), tc.waiting) || (v.unhealthy != "") != tc.unwell {
			t.Errorf("%s: verdict %+v", tc.name, v)
		}
	}
}

// TestJudgeHealthSettles: a container that started a moment ago is ready
// but not settled, as a crash-looping one looks between two restarts.
func TestJudgeHealthSettles(t *testing.T) {
	services := map[string]projectService{"app": {Restart: "always"}}
	now := time.Now()
	look := func(started time.Time, health string) healthVerdict {
		c := containerHealth{psEntry: psEntry{Name: "w-app-1", Service: "app", State: "running", Health: health}, StartedAt: started}
		return judgeHealth(services, []containerHealth{c}, map[string]int{}, now)
	}
	if v := look(now.Add(-time.Second), ""); !v.ready() || v.settled() {
		t.Errorf("started 1s ago: ready %v, settled %v; want ready, not settled", v.ready(), v.settled())
	}
	if v := look(now.Add(-readySettle), ""); !v.settled() {
		t.Errorf("started %s ago: not settled", readySettle)
	}
	if v := look(now.Add(-time.Second), "healthy"); !v.settled() {
		t.Error("a healthy container that started 1s ago: not settled; its healthcheck says it is ready")
	}
}

func TestParseInspect(t *testing.T) {
	cs, err := parseInspect("/w-app-1\tapp\tbusybox\trunning\t\t2\t0\t2026-12-02T10:00:00.123456789Z\n" +
		"/w-init-1\tinit\tbusybox\tcreated\t\t0\t0\t0001-01-01T00:00:00Z\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Name != "w-app-1" || cs[0].Restarts != 2 || cs[0].StartedAt.Nanosecond() != 123456789 || !cs[1].StartedAt.IsZero() {
		t.Errorf("parsed %+v", cs)
	}
}

func TestXPgoHealthTimeout(t *testing.T) {
	w := &worker{svc: &Service{Name: "web"}}
	if got := w.healthTimeout([]byte(`{"services":{}}`)); got != defaultHealthTimeout {
		t.Errorf("default health timeout %s", got)
	}
	if got := w.healthTimeout([]byte(`{"x-pgo":{"health_timeout":"30s"}}`)); got.String() != "30s" {
		t.Errorf("x-pgo health_timeout 30s gave %s", got)
	}
	w.svc.HealthTimeout = defaultHealthTimeout / 8
	if got := w.healthTimeout([]byte(`{"x-pgo":{"health_timeout":"1h"}}`)); got != defaultHealthTimeout/8 {
		t.Errorf("x-pgo raised the deadline to %s", got)
	}
}
