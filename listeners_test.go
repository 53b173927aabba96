package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPListenersSplit: /metrics and /healthz are served only where
// --metrics points, /hook/ only where --webhooks does; one address serves all.
func TestHTTPListenersSplit(t *testing.T) {
	var logs bytes.Buffer
	d := &Daemon{flags: &daemonFlags{metricsAddr: "127.0.0.1:0", webhooksAddr: "127.0.0.1:0"}, log: newLogger(&logs, false), health: newHealth()}
	d.metrics = newMetrics(d.statuses)
	status := func(h http.Handler, method, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader("{}")))
		return rec.Code
	}
	metricsOnly, hooksOnly, both := d.httpHandler(true, false), d.httpHandler(false, true), d.httpHandler(true, true)
	for _, c := range []struct {
		name         string
		h            http.Handler
		method, path string
		want         int
	}{
		{"metrics on metrics", metricsOnly, "GET", "/metrics", 200},
		{"healthz on metrics", metricsOnly, "GET", "/healthz", 200},
		{"hook on metrics", metricsOnly, "POST", "/hook/web", 404},
		{"metrics on webhooks", hooksOnly, "GET", "/metrics", 404},
		{"healthz on webhooks", hooksOnly, "GET", "/healthz", 404},
		{"hook on webhooks", hooksOnly, "POST", "/hook/web", 401}, // the webhook handler's own answer
		{"metrics on both", both, "GET", "/metrics", 200},
		{"hook on both", both, "POST", "/hook/web", 401},
	} {
		if got := status(c.h, c.method, c.path); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}

	// "127.0.0.1:0" twice is one address: one listener serves everything.
	ls, err := d.listenHTTP()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		l.ln.Close()
	}
	if len(ls) != 1 || ls[0].serves != "metrics, health and webhooks" {
		t.Errorf("same address: %d listeners (%v)", len(ls), describeListeners(ls))
	}
	d.flags.webhooksAddr = "localhost:0"
	if ls, err = d.listenHTTP(); err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		l.ln.Close()
	}
	if len(ls) != 2 || ls[1].serves != "webhooks" {
		t.Errorf("two addresses: %v", describeListeners(ls))
	}

	d.flags.webhooksAddr = ""
	d.warnWebhooksOff(&Config{Services: []*Service{{Name: "web", WebhookSecret: "s"}, {Name: "db"}}})
	if !strings.Contains(logs.String(), "webhooks are off but web set webhook_secret; start pgod with --webhooks ADDR") {
		t.Errorf("no warning for a webhook secret without --webhooks:\n%s", logs.String())
	}
}
