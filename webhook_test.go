package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const hookSecret = "s3cret-webhook-value"

// hookFixture is a webhook server with two services: "web" (secret, branch
// main) and "nosecret" (no webhook_secret). It counts Trigger calls.
type hookFixture struct {
	srv      *httptest.Server
	triggers atomic.Int64
	results  chan string
	logs     lockedBuffer // what the handler logged
}

// lockedBuffer is a bytes.Buffer safe for the handler's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHookFixture(t *testing.T) *hookFixture {
	t.Helper()
	fx := &hookFixture{results: make(chan string, 1000)}
	h := webhookHandler(func(name string) (hookTarget, bool) {
		switch name {
		case "web":
			return hookTarget{Secret: hookSecret, Branch: "main", Trigger: func() { fx.triggers.Add(1) }}, true
		case "nosecret":
			return hookTarget{Branch: "main", Trigger: func() { fx.triggers.Add(1) }}, true
		}
		return hookTarget{}, false
	})
	h.count = func(service, result string) { fx.results <- service + "/" + result }
	h.log = slog.New(slog.NewTextHandler(&fx.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := http.NewServeMux()
	mux.Handle("/hook/", h)
	fx.srv = httptest.NewServer(mux)
	t.Cleanup(fx.srv.Close)
	return fx
}

func pushPayload(branch string) []byte {
	return []byte(`{"ref":"refs/heads/` + branch + `","before":"0000","after":"3f2a1c9","repository":{"name":"web"}}`)
}

// postGitHubHooks sends n push hooks signed as GitHub does, all at once, and
// fails the test unless every one is answered 202.
func postGitHubHooks(t *testing.T, client *http.Client, url, secret string, body []byte, n int) {
	t.Helper()
	sig := "sha256=" + hmacHex(secret, body)
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-Hub-Signature-256", sig)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusAccepted {
			t.Fatalf("a hook was answered %d, want 202", c)
		}
	}
}

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// provider signs a request as one forge does.
type provider struct {
	name string
	sign func(h http.Header, secret string, body []byte)
}

var providers = []provider{
	{"github", func(h http.Header, secret string, body []byte) {
		h.Set("X-GitHub-Event", "push")
		h.Set("X-Hub-Signature-256", "sha256="+hmacHex(secret, body))
	}},
	{"gitea", func(h http.Header, secret string, body []byte) {
		h.Set("X-Gitea-Event", "push")
		h.Set("X-Gitea-Signature", hmacHex(secret, body))
	}},
	{"forgejo", func(h http.Header, secret string, body []byte) {
		h.Set("X-Forgejo-Event", "push")
		h.Set("X-Forgejo-Signature", hmacHex(secret, body))
	}},
	{"gitlab", func(h http.Header, secret string, _ []byte) {
		h.Set("X-Gitlab-Event", "Push Hook")
		h.Set("X-Gitlab-Token", secret)
	}},
}

func (fx *hookFixture) post(t *testing.T, path string, body []byte, sign func(http.Header)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, fx.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sign != nil {
		sign(req.Header)
	}
	resp, err := fx.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebhookProviders(t *testing.T) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fx := newHookFixture(t)
			body := pushPayload("main")

			code, resp := fx.post(t, "/hook/web", body, func(h http.Header) { p.sign(h, hookSecret, body) })
			if code != http.StatusAccepted || fx.triggers.Load() != 1 {
				t.Fatalf("signed push to main: got %d %q and %d triggers, want 202 and 1 trigger", code, resp, fx.triggers.Load())
			}

			code, resp = fx.post(t, "/hook/web", body, nil)
			if code != http.StatusUnauthorized || resp != unauthorizedBody {
				t.Errorf("unsigned push: got %d %q, want 401 %q", code, resp, unauthorizedBody)
			}
			code, resp = fx.post(t, "/hook/web", body, func(h http.Header) { p.sign(h, "wrong-secret", body) })
			if code != http.StatusUnauthorized || resp != unauthorizedBody {
				t.Errorf("push signed with a wrong secret: got %d %q, want 401", code, resp)
			}
			// A signature over another body must not pass (GitLab's token has no body binding).
			if p.name != "gitlab" {
				code, _ = fx.post(t, "/hook/web", pushPayload("evil"), func(h http.Header) { p.sign(h, hookSecret, body) })
				if code != http.StatusUnauthorized {
					t.Errorf("signature of another body: got %d, want 401", code)
				}
			}
			if n := fx.triggers.Load(); n != 1 {
				t.Errorf("refused requests triggered deploys: %d triggers, want 1", n)
			}
		})
	}
}

func TestWebhookOtherBranchIgnored(t *testing.T) {
	fx := newHookFixture(t)
	for _, p := range providers {
		for _, body := range [][]byte{pushPayload("feature"), []byte(`{"ref":"refs/tags/main"}`), []byte(`{"zen":"ping"}`)} {
			code, resp := fx.post(t, "/hook/web", body, func(h http.Header) { p.sign(h, hookSecret, body) })
			if code != http.StatusAccepted || !strings.HasPrefix(resp, "ignored") {
				t.Errorf("%s %s: got %d %q, want 202 ignored", p.name, body, code, resp)
			}
		}
	}
	if n := fx.triggers.Load(); n != 0 {
		t.Errorf("pushes elsewhere triggered %d deploys, want 0", n)
	}
}

func TestWebhookGitHubFormEncoded(t *testing.T) {
	fx := newHookFixture(t)
	body := []byte("payload=" + url.QueryEscape(string(pushPayload("main"))))
	req, _ := http.NewRequest(http.MethodPost, fx.srv.URL+"/hook/web", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hmacHex(hookSecret, body))
	resp, err := fx.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || fx.triggers.Load() != 1 {
		t.Errorf("form-encoded GitHub push: got %d and %d triggers, want 202 and 1", resp.StatusCode, fx.triggers.Load())
	}
}

func TestWebhookBadPayload(t *testing.T) {
	fx := newHookFixture(t)
	body := []byte(`{"ref": `)
	code, _ := fx.post(t, "/hook/web", body, func(h http.Header) { providers[0].sign(h, hookSecret, body) })
	if code != http.StatusBadRequest || fx.triggers.Load() != 0 {
		t.Errorf("signed garbage: got %d and %d triggers, want 400 and none", code, fx.triggers.Load())
	}
}

// A caller without the secret must not tell an unknown service, a service
// without a secret and a bad signature apart: same status, headers that
// matter, and body.
func TestWebhookUnknownIndistinguishable(t *testing.T) {
	fx := newHookFixture(t)
	body := pushPayload("main")
	type answer struct {
		code int
		body string
	}
	var answers []answer
	for _, path := range []string{"/hook/web", "/hook/nosuch", "/hook/nosecret", "/hook/", "/hook/web/extra"} {
		for _, p := range providers {
			code, resp := fx.post(t, path, body, func(h http.Header) { p.sign(h, "guess", body) })
			answers = append(answers, answer{code, resp})
		}
		code, resp := fx.post(t, path, body, nil)
		answers = append(answers, answer{code, resp})
	}
	// No secret configured must not mean "the empty secret".
	for _, p := range providers {
		code, resp := fx.post(t, "/hook/nosecret", body, func(h http.Header) { p.sign(h, "", body) })
		answers = append(answers, answer{code, resp})
	}
	for i, a := range answers {
		if a != answers[0] || a.code != http.StatusUnauthorized {
			t.Errorf("answer %d = %+v, want every answer %+v (401)", i, a, answers[0])
		}
	}
	if n := fx.triggers.Load(); n != 0 {
		t.Errorf("%d triggers, want 0", n)
	}
}

func TestWebhookSecretNeverShown(t *testing.T) {
	fx := newHookFixture(t)
	for _, p := range providers {
		for _, body := range [][]byte{pushPayload("main"), pushPayload("other"), []byte("{")} {
			_, resp := fx.post(t, "/hook/web", body, func(h http.Header) { p.sign(h, hookSecret, body) })
			if strings.Contains(resp, hookSecret) {
				t.Errorf("response %q shows the secret", resp)
			}
			fx.post(t, "/hook/web", body, func(h http.Header) { p.sign(h, hookSecret+"x", body) })
		}
	}
	if logs := fx.logs.String(); strings.Contains(logs, hookSecret) || logs == "" {
		t.Errorf("logs hold the secret (or nothing was logged):\n%s", logs)
	}
}

func TestWebhookOversize(t *testing.T) {
	fx := newHookFixture(t)
	big := append(pushPayload("main"), bytes.Repeat([]byte(" "), maxHookBody)...)
	code, _ := fx.post(t, "/hook/web", big, func(h http.Header) { providers[0].sign(h, hookSecret, big) })
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over 1 MiB: got %d, want 413", code)
	}
	// Without a Content-Length (chunked), the limit holds as well.
	req, _ := http.NewRequest(http.MethodPost, fx.srv.URL+"/hook/web", io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1
	providers[0].sign(req.Header, hookSecret, big)
	resp, err := fx.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over 1 MiB: got %d, want 413", resp.StatusCode)
	}
	// Exactly 1 MiB is fine.
	exact := append(pushPayload("main"), bytes.Repeat([]byte(" "), maxHookBody-len(pushPayload("main")))...)
	code, _ = fx.post(t, "/hook/web", exact, func(h http.Header) { providers[0].sign(h, hookSecret, exact) })
	if code != http.StatusAccepted {
		t.Errorf("body of exactly 1 MiB: got %d, want 202", code)
	}
	if n := fx.triggers.Load(); n != 1 {
		t.Errorf("%d triggers, want 1", n)
	}
}

func TestWebhookMethod(t *testing.T) {
	fx := newHookFixture(t)
	resp, err := fx.srv.Client().Get(fx.srv.URL + "/hook/web")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: got %d Allow %q, want 405 Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// 50 concurrent valid hooks each call Trigger once, all answered while
// nothing consumes the triggers; the daemon's trigger then holds one
// pending deploy for the whole burst.
func TestWebhookBurstCoalesces(t *testing.T) {
	tr := newTrigger()
	var calls atomic.Int64
	h := webhookHandler(func(name string) (hookTarget, bool) {
		return hookTarget{Secret: hookSecret, Branch: "main", Trigger: func() { calls.Add(1); tr.fire() }}, name == "web"
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	postGitHubHooks(t, srv.Client(), srv.URL+"/hook/web", hookSecret, pushPayload("main"), 50)
	if n := calls.Load(); n != 50 {
		t.Errorf("Trigger called %d times, want 50", n)
	}
	select {
	case <-tr.C():
	default:
		t.Fatal("no deploy pending after the burst")
	}
	select {
	case <-tr.C():
		t.Fatal("a second deploy pending after one burst; want them coalesced into one")
	default:
	}
}

func TestTriggerFireNeverBlocks(t *testing.T) {
	tr := newTrigger()
	done := make(chan struct{})
	go func() {
		for range 1000 {
			tr.fire()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("fire blocked with nobody receiving")
	}
	<-tr.C()
	tr.fire() // after the pending one was taken, a new fire is pending again
	select {
	case <-tr.C():
	default:
		t.Fatal("fire after a receive left nothing pending")
	}
}

func TestVerifyHookHeaderPrecedence(t *testing.T) {
	body := pushPayload("main")
	h := http.Header{}
	// A valid GitLab token does not rescue a wrong GitHub signature sent alongside.
	h.Set("X-Hub-Signature-256", "sha256="+hmacHex("wrong", body))
	h.Set("X-Gitlab-Token", hookSecret)
	if verifyHook(h, body, []byte(hookSecret)) {
		t.Error("a bad X-Hub-Signature-256 passed because another header was right")
	}
	h = http.Header{}
	h.Set("X-Hub-Signature-256", hmacHex(hookSecret, body)) // no "sha256=" prefix
	if verifyHook(h, body, []byte(hookSecret)) {
		t.Error("X-Hub-Signature-256 without the sha256= prefix passed")
	}
}

func FuzzWebhookPayload(f *testing.F) {
	f.Add("application/json", []byte(`{"ref":"refs/heads/main"}`))
	f.Add("application/x-www-form-urlencoded", []byte("payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D"))
	f.Add("application/json", []byte(`{"ref":1}`))
	f.Add("", []byte(`{"zen":"ping"}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		ref, err := hookRef(contentType, body)
		if err != nil && ref != "" {
			t.Errorf("error %v with ref %q", err, ref)
		}
		// Only what the payload says: a ref without "refs/heads/main" in the body never matches main.
		if ref == "refs/heads/main" && !bytes.Contains(body, []byte("main")) && !bytes.Contains(body, []byte(`\u`)) && !bytes.Contains(body, []byte("%")) {
			t.Errorf("ref %q from a body that does not name it: %q", ref, body)
		}
	})
}
