package main

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var notifyTestTime = time.Date(2026, 11, 26, 15, 30, 0, 0, time.UTC)

// received is one request a receiver got.
type received struct {
	path   string
	header http.Header
	body   string
}

// receiver is a local endpoint. answer, if set, writes the answer to its nth
// request (from 1); the request is recorded before the answer, so whatever a
// sender has sent is in got once the sender has its answer.
type receiver struct {
	srv *httptest.Server
	got chan received
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	r := &receiver{got: make(chan received, 1000)}
	var n atomic.Int64
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.got <- received{path: req.URL.Path, header: req.Header.Clone(), body: string(body)}
		if answer != nil {
			answer(int(n.Add(1)), w)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url(path string) string { return r.srv.URL + path }

// all returns what arrived so far.
func (r *receiver) all() []received {
	var all []received
	for {
		select {
		case req := <-r.got:
			all = append(all, req)
		default:
			return all
		}
	}
}

// byPath groups what arrived so far by path.
func (r *receiver) byPath() map[string][]received {
	m := map[string][]received{}
	for _, req := range r.all() {
		m[req.path] = append(m[req.path], req)
	}
	return m
}

// notifyFixture is a notifier whose waits return at once and are recorded.
type notifyFixture struct {
	n    *notifier
	m    *metrics
	logs *syncBuffer

	mu    sync.Mutex
	waits []time.Duration
}

func newNotifyFixture(t *testing.T, tune func(n *notifier)) *notifyFixture {
	t.Helper()
	f := &notifyFixture{m: newMetrics(nil), logs: &syncBuffer{}}
	n := newNotifier(newLogger(f.logs, false), f.m)
	n.host = "testhost"
	n.now = func() time.Time { return notifyTestTime }
	// Hours: a test that slept for real would never end.
	n.backoff = func(attempt int) time.Duration { return time.Duration(attempt) * time.Hour }
	n.wait = func(ctx context.Context, d time.Duration) error {
		f.mu.Lock()
		f.waits = append(f.waits, d)
		f.mu.Unlock()
		return ctx.Err()
	}
	n.timeout = time.Minute
	if tune != nil {
		tune(n)
	}
	f.n = n
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n.close(ctx)
	})
	return f
}

// configure gives the notifier these endpoints; one with a Service is that service's own.
func (f *notifyFixture) configure(endpoints ...NotifyEndpoint) {
	f.n.reload(notifyConfig(endpoints...))
}

func notifyConfig(endpoints ...NotifyEndpoint) *Config {
	cfg := &Config{}
	services := map[string]*Service{}
	for _, ep := range endpoints {
		if ep.Service == "" {
			cfg.Notify = append(cfg.Notify, &ep)
			continue
		}
		s, ok := services[ep.Service]
		if !ok {
			s = &Service{Name: ep.Service}
			services[ep.Service] = s
			cfg.Services = append(cfg.Services, s)
		}
		s.Notify = append(s.Notify, &ep)
	}
	return cfg
}

// flush sends everything queued and stops the notifier.
func (f *notifyFixture) flush() { f.n.close(context.Background()) }

func (f *notifyFixture) counted(endpoint, result string) uint64 {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return f.m.notifications[endpointKey{endpoint, result}]
}

func (f *notifyFixture) recordedWaits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.waits)
}

func (f *notifyFixture) sender(name string) *sender {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	return f.n.senders[name]
}

func failedEvent(commit string) event {
	return event{Kind: eventFailed, Service: "web", Commit: commit, Reason: "compose up: exit status 1"}
}

func TestNotifyFormats(t *testing.T) {
	r := newReceiver(t, nil)
	f := newNotifyFixture(t, nil)
	const secret = "0123456789abcdef0123"
	f.configure(
		NotifyEndpoint{Name: "slack", URL: r.url("/slack"), Format: notifySlack},
		NotifyEndpoint{Name: "discord", URL: r.url("/discord"), Format: notifyDiscord},
		NotifyEndpoint{Name: "ntfy", URL: r.url("/ntfy"), Format: notifyNtfy},
		NotifyEndpoint{Name: "json", URL: r.url("/json"), Format: notifyJSON, Secret: secret},
		NotifyEndpoint{Name: "plain", URL: r.url("/plain"), Format: notifyJSON},
	)
	commit := "3f2a1c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b"
	f.n.notify(event{Kind: eventFailed, Service: "web", Commit: commit,
		Reason: "compose up: exit status 1 <!channel> @everyone", Time: notifyTestTime.Add(time.Minute)})
	f.flush()
	got := r.byPath()

	one := func(path string) received {
		t.Helper()
		if len(got[path]) != 1 {
			t.Fatalf("%s got %d requests, want 1", path, len(got[path]))
		}
		return got[path][0]
	}
	decode := func(req received) map[string]any {
		t.Helper()
		if ct := req.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q, want application/json", req.path, ct)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(req.body), &doc); err != nil {
			t.Fatalf("%s: %v in %s", req.path, err, req.body)
		}
		return doc
	}
	const title = "web on testhost: deploy of 3f2a1c9 failed"

	slack := decode(one("/slack"))
	if want := map[string]any{"text": title + ": compose up: exit status 1 &lt;!channel&gt; @everyone"}; !reflect.DeepEqual(slack, want) {
		t.Errorf("slack got %v, want %v", slack, want)
	}

	discord := decode(one("/discord"))
	if want := map[string]any{"content": title + ": compose up: exit status 1 <!channel> @everyone",
		"allowed_mentions": map[string]any{"parse": []any{}}}; !reflect.DeepEqual(discord, want) {
		t.Errorf("discord got %v, want %v", discord, want)
	}

	ntfy := one("/ntfy")
	for header, want := range map[string]string{
		"Content-Type": "text/plain; charset=utf-8", "Title": title, "Priority": "high", "Tags": "x,failed",
	} {
		if got := ntfy.header.Get(header); got != want {
			t.Errorf("ntfy %s: %q, want %q", header, got, want)
		}
	}
	if ntfy.body != "compose up: exit status 1 <!channel> @everyone" {
		t.Errorf("ntfy body %q, want the reason", ntfy.body)
	}

	signed := one("/json")
	doc := decode(signed)
	wantDoc := map[string]any{"event": "failed", "service": "web", "commit": commit,
		"reason": "compose up: exit status 1 <!channel> @everyone", "time": "2026-11-26T15:31:00Z", "host": "testhost"}
	if !reflect.DeepEqual(doc, wantDoc) {
		t.Errorf("json got %v, want %v", doc, wantDoc)
	}
	sig, ok := strings.CutPrefix(signed.header.Get("X-Pgo-Signature"), "sha256=")
	if !ok || !hmac.Equal([]byte(sig), []byte(signature(secret, []byte(signed.body)))) {
		t.Errorf("X-Pgo-Signature %q does not verify the body", signed.header.Get("X-Pgo-Signature"))
	}
	if signature("another secret, not this one", []byte(signed.body)) == sig {
		t.Error("the signature does not depend on the secret")
	}

	plain := one("/plain")
	if !reflect.DeepEqual(decode(plain), wantDoc) {
		t.Errorf("unsigned json got %s", plain.body)
	}
	if h := plain.header.Get("X-Pgo-Signature"); h != "" {
		t.Errorf("an endpoint without secret got X-Pgo-Signature %q", h)
	}
	for path, reqs := range got {
		if ua := reqs[0].header.Get("User-Agent"); ua != "pgo/"+version {
			t.Errorf("%s: User-Agent %q", path, ua)
		}
	}
	if n := f.counted("json", notifySent); n != 1 {
		t.Errorf("json sent counted %d, want 1", n)
	}
}

func TestNotifyTexts(t *testing.T) {
	r := newReceiver(t, nil)
	f := newNotifyFixture(t, nil)
	f.configure(NotifyEndpoint{Name: "ntfy", URL: r.url("/ntfy"), Format: notifyNtfy})
	events := []event{
		{Kind: eventRolledBack, Service: "web", Commit: "aaaaaaaaaa"},
		{Kind: eventUnhealthy, Service: "web", Reason: "1 of 3 containers run"},
		{Kind: eventRejected, Service: "web", Commit: "bbbbbbbbbb", Reason: "privileged is not allowed"},
		{Kind: eventRecovered, Service: "web", Commit: "cccccccccc"},
		{Kind: eventFrozen, Service: "web"},
		{Kind: eventUnfrozen, Service: "web"},
		{Kind: eventStartedWithErrors, Reason: `service "api": user api does not exist`},
	}
	for _, e := range events {
		f.n.notify(e)
	}
	f.flush()
	want := []string{
		"web on testhost: deploy of aaaaaaa failed; the last good commit runs again|high|rewind,rolled_back|web on testhost: deploy of aaaaaaa failed; the last good commit runs again",
		"web on testhost: unhealthy|high|warning,unhealthy|1 of 3 containers run",
		"web on testhost: bbbbbbb was rejected by the policy|default|no_entry,rejected|privileged is not allowed",
		"web on testhost: recovered: ccccccc is deployed|default|white_check_mark,recovered|web on testhost: recovered: ccccccc is deployed",
		"web on testhost: frozen: nothing is deployed until it is unfrozen|default|snowflake,frozen|web on testhost: frozen: nothing is deployed until it is unfrozen",
		"web on testhost: unfrozen: deploys go on|default|arrow_forward,unfrozen|web on testhost: unfrozen: deploys go on",
		`pgod on testhost: started, but some services failed to prepare|high|warning,started_with_errors|service "api": user api does not exist`,
	}
	var got []string
	for _, req := range r.all() {
		got = append(got, strings.Join([]string{req.header.Get("Title"), req.header.Get("Priority"), req.header.Get("Tags"), req.body}, "|"))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNotifyRetriesServerErrors(t *testing.T) {
	r := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	f := newNotifyFixture(t, nil)
	f.configure(NotifyEndpoint{Name: "ops", URL: r.url("/hook"), Format: notifyJSON})
	f.n.notify(failedEvent("c1"))
	f.flush()
	got := r.all()
	if len(got) != 3 || got[0].body != got[2].body {
		t.Fatalf("got %d requests, want 3 of the same event: %v", len(got), got)
	}
	if waits, want := f.recordedWaits(), []time.Duration{time.Hour, 2 * time.Hour}; !reflect.DeepEqual(waits, want) {
		t.Errorf("waited %v, want the backoff %v", waits, want)
	}
	if sent, failed := f.counted("ops", notifySent), f.counted("ops", notifyFailed); sent != 1 || failed != 0 {
		t.Errorf("counted %d sent, %d failed; want 1, 0", sent, failed)
	}
	if logs := f.logs.String(); logs != "" {
		t.Errorf("a delivery that worked in the end was logged: %s", logs)
	}
}

// TestNotifyGivesUp: after attempts tries an event counts as failed; the log
// says so once per logEvery, without the URL's token, and says when the
// endpoint works again.
func TestNotifyGivesUp(t *testing.T) {
	r := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 6 {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	f := newNotifyFixture(t, func(n *notifier) { n.attempts = 3 })
	const token = "T0KEN-in-the-path-0123456789"
	f.configure(NotifyEndpoint{Name: "ops", URL: r.url("/services/" + token), Format: notifySlack})
	for _, commit := range []string{"c1", "c2", "c3"} {
		f.n.notify(failedEvent(commit))
	}
	f.flush()
	if got := len(r.all()); got != 7 {
		t.Errorf("got %d requests, want 3+3 failing and 1 that worked", got)
	}
	if failed, sent := f.counted("ops", notifyFailed), f.counted("ops", notifySent); failed != 2 || sent != 1 {
		t.Errorf("counted %d failed, %d sent; want 2, 1", failed, sent)
	}
	logs := f.logs.String()
	want := []string{
		"WARN notify ops (" + r.srv.URL + "/…): cannot deliver: answered 502 Bad Gateway",
		"INFO notify ops (" + r.srv.URL + "/…): delivers again (1 more notifications failed before)",
	}
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != len(want) {
		t.Fatalf("log:\n%s\nwant %d lines", logs, len(want))
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("log line %q, want it to end in %q", lines[i], w)
		}
	}
	if strings.Contains(logs, token) || strings.Contains(logs, "/services") {
		t.Errorf("log shows the URL's path: %s", logs)
	}
}

func TestNotifyRetryAfter(t *testing.T) {
	r := newReceiver(t, func(n int, w http.ResponseWriter) {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.Header().Set("Retry-After", "100000")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			w.Header().Set("Retry-After", notifyTestTime.Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		case 4:
			w.WriteHeader(http.StatusTooManyRequests) // no Retry-After: the usual backoff
		}
	})
	f := newNotifyFixture(t, func(n *notifier) { n.maxRetryAfter = 2 * time.Minute })
	f.configure(NotifyEndpoint{Name: "ops", URL: r.url("/hook"), Format: notifyDiscord})
	f.n.notify(failedEvent("c1"))
	f.flush()
	if waits, want := f.recordedWaits(), []time.Duration{7 * time.Second, 2 * time.Minute, 90 * time.Second, 4 * time.Hour}; !reflect.DeepEqual(waits, want) {
		t.Errorf("waited %v, want %v", waits, want)
	}
	if got := len(r.all()); got != 5 {
		t.Errorf("got %d requests, want 5", got)
	}
	if sent := f.counted("ops", notifySent); sent != 1 {
		t.Errorf("counted %d sent, want 1", sent)
	}
}

// TestNotifyFinalAnswers: a 4xx other than 408 and 429, and a redirect, are
// not retried, and a redirect is not followed.
func TestNotifyFinalAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		log    string
	}{
		{"not found", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) }, "answered 404 Not Found"},
		{"redirect", func(w http.ResponseWriter) {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(http.StatusFound)
		}, "answered 302 Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t, func(_ int, w http.ResponseWriter) { tc.answer(w) })
			f := newNotifyFixture(t, nil)
			f.configure(NotifyEndpoint{Name: "ops", URL: r.url("/hook"), Format: notifyJSON})
			f.n.notify(failedEvent("c1"))
			f.flush()
			if got := r.all(); len(got) != 1 || got[0].path != "/hook" {
				t.Errorf("got %v, want one request to /hook", got)
			}
			if failed := f.counted("ops", notifyFailed); failed != 1 {
				t.Errorf("counted %d failed, want 1", failed)
			}
			if waits := f.recordedWaits(); len(waits) != 0 {
				t.Errorf("waited %v before retrying a final answer", waits)
			}
			if logs := f.logs.String(); !strings.Contains(logs, tc.log) {
				t.Errorf("log %q does not say %q", logs, tc.log)
			}
		})
	}
}

// TestNotifyIdleSender: a sender that emptied its queue waits for more, and
// close sends what came just before it. Several rounds, since the event and
// the close reach an idle sender at nearly the same moment.
func TestNotifyIdleSender(t *testing.T) {
	for round := range 20 {
		r := newReceiver(t, nil)
		f := newNotifyFixture(t, nil)
		f.configure(NotifyEndpoint{Name: "ops", URL: r.url("/hook"), Format: notifyJSON})
		f.n.notify(failedEvent("c1"))
		<-r.got // delivered: the queue is empty again
		f.n.notify(failedEvent("c2"))
		f.flush()
		got := r.all()
		if len(got) != 1 || !strings.Contains(got[0].body, `"commit":"c2"`) {
			t.Fatalf("round %d: after close got %v, want the second event", round, got)
		}
	}
}

// TestNotifyDoesNotBlock: while an endpoint hangs, notify still returns: the
// queue keeps the newest events and counts the oldest it drops.
func TestNotifyDoesNotBlock(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	r := newReceiver(t, func(n int, _ http.ResponseWriter) {
		if n == 1 {
			arrived <- struct{}{}
			<-release
		}
	})
	const queueLen, flood = 8, 10000
	f := newNotifyFixture(t, func(n *notifier) { n.queueLen = queueLen })
	f.configure(NotifyEndpoint{Name: "ops", URL: r.url("/hook"), Format: notifyJSON})
	f.n.notify(failedEvent("first"))
	<-arrived // the sender is stuck in its first request
	for i := range flood {
		f.n.notify(failedEvent(fmt.Sprint("c", i)))
	}
	if dropped := f.counted("ops", notifyDropped); dropped != flood-queueLen {
		t.Errorf("counted %d dropped, want %d", dropped, flood-queueLen)
	}
	if queued := f.sender("ops").queued(); queued != queueLen {
		t.Errorf("%d events queued, want the bound %d", queued, queueLen)
	}
	close(release)
	f.flush()
	f.n.notify(failedEvent("after close")) // does nothing, and does not panic
	got := r.all()
	if len(got) != 1+queueLen {
		t.Fatalf("got %d requests, want the first and the %d queued", len(got), queueLen)
	}
	var last struct{ Commit string }
	json.Unmarshal([]byte(got[len(got)-1].body), &last)
	if last.Commit != fmt.Sprint("c", flood-1) {
		t.Errorf("last delivered %q, want the newest event", last.Commit)
	}
	if sent := f.counted("ops", notifySent); sent != 1+queueLen {
		t.Errorf("counted %d sent, want %d", sent, 1+queueLen)
	}
}

// TestNotifyEndpointDown: an endpoint that refuses connections does not hold
// notify up either, and close with an ended context drops what is left.
func TestNotifyEndpointDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()

	waiting := make(chan struct{}, 1)
	const queueLen, flood = 8, 10000
	f := newNotifyFixture(t, func(n *notifier) {
		n.queueLen = queueLen
		n.wait = func(ctx context.Context, d time.Duration) error { // backs off until close gives up
			waiting <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
	})
	f.configure(NotifyEndpoint{Name: "ops", URL: down + "/hook/T0KEN-0123456789abcdef", Format: notifyNtfy})
	f.n.notify(failedEvent("first"))
	<-waiting // the first attempt failed; the sender backs off
	for i := range flood {
		f.n.notify(failedEvent(fmt.Sprint("c", i)))
	}
	if dropped := f.counted("ops", notifyDropped); dropped != flood-queueLen {
		t.Errorf("counted %d dropped, want %d", dropped, flood-queueLen)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.n.close(ctx)
	if dropped := f.counted("ops", notifyDropped); dropped != flood+1 {
		t.Errorf("after close counted %d dropped, want every event, %d", dropped, flood+1)
	}
	if sent, failed := f.counted("ops", notifySent), f.counted("ops", notifyFailed); sent != 0 || failed != 0 {
		t.Errorf("counted %d sent, %d failed; want 0, 0", sent, failed)
	}
}

func TestNotifyEndpointDownLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	f := newNotifyFixture(t, func(n *notifier) { n.attempts = 2 })
	const token = "T0KEN-0123456789abcdef"
	f.configure(NotifyEndpoint{Name: "ops", URL: down + "/hook/" + token, Format: notifyJSON})
	f.n.notify(failedEvent("c1"))
	f.flush()
	if failed := f.counted("ops", notifyFailed); failed != 1 {
		t.Errorf("counted %d failed, want 1", failed)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "notify ops ("+down+"/…): cannot deliver: ") || !strings.Contains(logs, "connection refused") {
		t.Errorf("log does not say the endpoint is down: %s", logs)
	}
	if strings.Contains(logs, token) || strings.Contains(logs, "/hook") {
		t.Errorf("log shows the URL's path: %s", logs)
	}
	if strings.Contains(logs, "Post ") || strings.Contains(logs, redacted) {
		t.Errorf("log quotes the request, if redacted: %s", logs)
	}
}

func TestNotifySuppressesRepeats(t *testing.T) {
	r := newReceiver(t, nil)
	f := newNotifyFixture(t, nil)
	f.configure(
		NotifyEndpoint{Name: "all", URL: r.url("/all"), Format: notifyJSON},
		NotifyEndpoint{Name: "failures", URL: r.url("/failures"), Format: notifyJSON, Events: []string{"failed"}},
	)
	at := func(kind eventKind, commit string, after time.Duration) event {
		return event{Kind: kind, Service: "web", Commit: commit, Time: notifyTestTime.Add(after)}
	}
	for _, e := range []event{
		at(eventFailed, "c1", 0),
		at(eventFailed, "c1", time.Minute),                  // a repeat
		{Kind: eventFailed, Service: "api", Commit: "c1"},   // another service
		at(eventRecovered, "c2", 2*time.Minute),             // something else happened
		at(eventFailed, "c1", 3*time.Minute),                // so this is news
		at(eventFailed, "c1", 4*time.Minute),                // a repeat
		at(eventFailed, "c1", 3*time.Minute+24*time.Hour),   // a day on: a reminder
		at(eventFailed, "c3", 3*time.Minute+24*time.Hour+1), // another commit
	} {
		f.n.notify(e)
	}
	f.flush()
	got := map[string][]string{}
	for path, reqs := range r.byPath() {
		for _, req := range reqs {
			var doc notifyDocument
			json.Unmarshal([]byte(req.body), &doc)
			got[path] = append(got[path], doc.Service+" "+string(doc.Event)+" "+doc.Commit)
		}
	}
	want := map[string][]string{
		"/all":      {"web failed c1", "api failed c1", "web recovered c2", "web failed c1", "web failed c1", "web failed c3"},
		"/failures": {"web failed c1", "api failed c1", "web failed c1", "web failed c1", "web failed c3"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if n := f.counted("all", notifySuppressed); n != 2 {
		t.Errorf("counted %d suppressed, want 2", n)
	}
}

// TestNotifyRedacts puts secrets into a reason: the service's, an
// endpoint's URL and token, an HMAC key, a URL's password. None reaches any
// receiver, in any format.
func TestNotifyRedacts(t *testing.T) {
	r := newReceiver(t, nil)
	f := newNotifyFixture(t, nil)
	const (
		slackToken = "XoXoXoXoXoXoXoXoXoXoXoXo"
		hmacKey    = "hmac-key-0123456789abcdef"
		envSecret  = "s3cr3t-db-password"
	)
	slackURL := r.url("/services/T0/B0/" + slackToken)
	ntfyURL := r.url("/pgo-alerts-7Hq2x")
	f.configure(
		NotifyEndpoint{Name: "slack", URL: slackURL, Format: notifySlack},
		NotifyEndpoint{Name: "discord", URL: r.url("/discord"), Format: notifyDiscord},
		NotifyEndpoint{Name: "ntfy", URL: ntfyURL, Format: notifyNtfy, Service: "web"},
		NotifyEndpoint{Name: "json", URL: r.url("/json"), Format: notifyJSON, Secret: hmacKey},
	)
	// A commit is a hash; should a caller ever pass something else, it is redacted too.
	f.n.notify(event{Kind: eventFailed, Service: "web", Commit: envSecret, Secrets: []string{envSecret},
		Reason: "DATABASE_URL=postgres://web:" + envSecret + "@db/web; hooks " + slackURL + " " + ntfyURL +
			" token " + slackToken + " key " + hmacKey + " git https://oauth2:glpat-Nobody1Knows@gitlab.example.org/x"})
	f.flush()
	got := r.all()
	if len(got) != 4 {
		t.Fatalf("got %d requests, want 4", len(got))
	}
	for _, req := range got {
		all := req.body + fmt.Sprint(req.header)
		for _, secret := range []string{envSecret, slackToken, "pgo-alerts-7Hq2x", hmacKey, "glpat-Nobody1Knows", "/services/T0"} {
			if strings.Contains(all, secret) {
				t.Errorf("%s got %q: %s", req.path, secret, all)
			}
		}
		if !strings.Contains(req.body, redacted) {
			t.Errorf("%s: nothing redacted in %s", req.path, req.body)
		}
	}
}

func TestNotifyTruncatesAfterRedacting(t *testing.T) {
	r := newReceiver(t, nil)
	f := newNotifyFixture(t, nil)
	f.configure(NotifyEndpoint{Name: "ntfy", URL: r.url("/t"), Format: notifyNtfy})
	const secret = "a-secret-that-straddles-the-cut"
	reason := strings.Repeat("é", (maxReason-10)/2) + secret + strings.Repeat("x", 100)
	f.n.notify(event{Kind: eventFailed, Service: "web", Reason: reason, Secrets: []string{secret}})
	f.flush()
	got := r.all()
	if len(got) != 1 {
		t.Fatalf("got %d requests", len(got))
	}
	body := got[0].body
	if len(body) > maxReason || !strings.HasSuffix(body, " […]") || !strings.Contains(body, redacted) {
		t.Errorf("body of %d bytes, want at most %d, redacted, marked as cut: %q", len(body), maxReason, body)
	}
	if strings.Contains(body, secret[:10]) {
		t.Errorf("part of the secret was sent: %q", body)
	}
}

// TestNotifyRouting: [[notify]] endpoints get every service's events and
// pgod's; a service's own endpoints get its events only.
func TestNotifyRouting(t *testing.T) {
	r := newReceiver(t, nil)
	f := newNotifyFixture(t, nil)
	f.configure(
		NotifyEndpoint{Name: "ops", URL: r.url("/ops"), Format: notifyJSON},
		NotifyEndpoint{Name: "web-team", URL: r.url("/web"), Format: notifyJSON, Service: "web"},
		NotifyEndpoint{Name: "api-team", URL: r.url("/api"), Format: notifyJSON, Service: "api"},
	)
	f.n.notify(event{Kind: eventFailed, Service: "web", Commit: "c1"})
	f.n.notify(event{Kind: eventRejected, Service: "api", Commit: "c2"})
	f.n.notify(event{Kind: eventStartedWithErrors, Reason: `service "db" failed to prepare`})
	f.flush()
	got := map[string]int{}
	for path, reqs := range r.byPath() {
		got[path] = len(reqs)
	}
	if want := map[string]int{"/ops": 3, "/web": 1, "/api": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("requests by endpoint %v, want %v", got, want)
	}
}

// TestNotifyReload: an unchanged endpoint keeps what it sent, a new one
// starts, a removed one sends what it holds and gets nothing more.
func TestNotifyReload(t *testing.T) {
	r := newReceiver(t, nil)
	f := newNotifyFixture(t, nil)
	a := NotifyEndpoint{Name: "a", URL: r.url("/a"), Format: notifyJSON}
	b := NotifyEndpoint{Name: "b", URL: r.url("/b"), Format: notifyJSON}
	c := NotifyEndpoint{Name: "c", URL: r.url("/c"), Format: notifyJSON}
	f.configure(a, b)
	f.n.notify(failedEvent("c1"))
	a.Line = 42 // moved in the file: the same endpoint
	f.configure(a, c)
	f.n.notify(failedEvent("c1"))
	f.n.notify(event{Kind: eventRejected, Service: "web", Commit: "c2"})
	f.flush()
	got := map[string]int{}
	for path, reqs := range r.byPath() {
		got[path] = len(reqs)
	}
	if want := map[string]int{"/a": 2, "/b": 1, "/c": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("requests by endpoint %v, want %v", got, want)
	}
	if n := f.counted("a", notifySuppressed); n != 1 {
		t.Errorf("a counted %d suppressed, want 1: the reload forgot what it sent", n)
	}
	out := scrape(t, f.m)
	for _, line := range []string{
		`pgo_notifications_total{endpoint="a",result="sent"} 2`,
		`pgo_notifications_total{endpoint="c",result="failed"} 0`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}
	if strings.Contains(out, r.srv.URL) {
		t.Error("metrics show an endpoint's URL")
	}
}

func TestShownURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XXXX":     "https://hooks.slack.com/…",
		"https://user:pw123456@ntfy.example.org:8443/top": "https://ntfy.example.org:8443/…",
		"http://127.0.0.1:8080/?auth=abcdef":              "http://127.0.0.1:8080/…",
		"https://x.org:bad/a":                             "url hidden",
	} {
		if got := shownURL(in); got != want {
			t.Errorf("shownURL(%q) = %q, want %q", in, got, want)
		}
	}
}
