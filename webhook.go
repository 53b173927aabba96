package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// hookTarget is what a webhook needs of a service.
type hookTarget struct {
	Secret  string
	Branch  string
	Trigger func() // asks for a fetch and deploy soon; never blocks
}

// maxHookBody is the largest webhook body accepted. Push payloads of large
// pushes run to a few hundred KiB; anything bigger is not a push we need.
const maxHookBody = 1 << 20

// Webhook results, as counted in pgo_webhooks_total.
const (
	hookTriggered    = "triggered"    // a push to the tracked branch: fetch and deploy now
	hookIgnored      = "ignored"      // authenticated, but not a push to the tracked branch
	hookUnauthorized = "unauthorized" // unknown service, no secret, or a bad signature
	hookBadRequest   = "bad_request"  // authenticated, but the payload does not parse
	hookTooLarge     = "too_large"
)

// unauthorizedBody is the one answer for every request that does not prove
// it knows the service's secret, so nobody learns which services exist.
const unauthorizedBody = "unauthorized\n"

// webhook serves POST /hook/NAME; see webhookHandler.
type webhook struct {
	lookup func(name string) (hookTarget, bool)
	// count, if set, is called once per request with the service (""
	// unless the request was authenticated) and one of the hook* results;
	// the daemon sets it to its metrics' webhook method.
	count func(service, result string)
	// log gets one line per request; the daemon sets its own logger.
	log *slog.Logger
	// decoy is the secret an unknown service is checked against, so that an
	// unknown name costs the same work as a known one with a wrong
	// signature. It is random and never sent, so it cannot match.
	decoy []byte
}

// webhookHandler serves POST /hook/NAME (mount it at "/hook/"); lookup
// returns false for an unknown service. It answers at once: 202 for an
// authenticated push (tracked branch or not), 401 for anything that does not
// prove knowledge of the service's webhook_secret, 413 for a body over 1 MiB,
// 405 for other methods.
func webhookHandler(lookup func(name string) (hookTarget, bool)) *webhook {
	decoy := make([]byte, 32)
	rand.Read(decoy) // never fails (crypto/rand, Go 1.24+)
	return &webhook{lookup: lookup, decoy: decoy, log: slog.New(slog.DiscardHandler)}
}

func (h *webhook) record(service, result string) {
	if h.count != nil {
		h.count(service, result)
	}
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := readHookBody(r)
	if errors.Is(err, errTooLarge) {
		h.record("", hookTooLarge)
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		http.Error(w, "reading the request body failed", http.StatusBadRequest)
		return
	}
	name, _ := strings.CutPrefix(r.URL.Path, "/hook/")
	target, known := h.lookup(name)
	authorized := known && target.Secret != ""
	secret := h.decoy
	if authorized {
		secret = []byte(target.Secret)
	}
	// verifyHook runs first and always, whatever the lookup said.
	if !verifyHook(r.Header, body, secret) || !authorized {
		// Logs may say why; the answer may not. slog quotes the name.
		h.log.Warn("webhook refused", "service", logName(name), "known", known, "remote", r.RemoteAddr)
		h.record("", hookUnauthorized)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, unauthorizedBody)
		return
	}
	ref, err := hookRef(r.Header.Get("Content-Type"), body)
	if err != nil {
		h.log.Warn("webhook payload does not parse", "service", name, "err", err)
		h.record(name, hookBadRequest)
		http.Error(w, "payload does not parse: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ref != "refs/heads/"+target.Branch {
		h.log.Info("webhook ignored: not a push to the tracked branch", "service", name, "ref", ref, "branch", target.Branch)
		h.record(name, hookIgnored)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "ignored: not a push to "+target.Branch+"\n")
		return
	}
	h.log.Info("webhook: fetch and deploy", "service", name, "ref", ref)
	target.Trigger()
	h.record(name, hookTriggered)
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "accepted\n")
}

// logName bounds a name a caller chose before it goes into a log line.
func logName(name string) string {
	const max = 64
	if len(name) > max {
		return name[:max] + "..."
	}
	return name
}

var errTooLarge = errors.New("webhook body over 1 MiB")

// readHookBody reads at most maxHookBody+1 bytes, so a larger body is
// detected without reading it all.
func readHookBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxHookBody {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHookBody+1))
	if len(body) > maxHookBody {
		return nil, errTooLarge
	}
	return body, err
}

// verifyHook checks the request's proof of the secret, in constant time,
// using the first of the providers' headers present:
//   - GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
//     (Gitea and Forgejo send it too);
//   - Gitea, Forgejo: X-Gitea-Signature, X-Forgejo-Signature: <hex HMAC-SHA256 of the body>;
//   - GitLab: X-Gitlab-Token: the secret itself.
func verifyHook(h http.Header, body, secret []byte) bool {
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		return ok && hmacEqual(hexSig, body, secret)
	}
	for _, name := range []string{"X-Gitea-Signature", "X-Forgejo-Signature"} {
		if sig := h.Get(name); sig != "" {
			return hmacEqual(sig, body, secret)
		}
	}
	if token := h.Get("X-Gitlab-Token"); token != "" {
		// Compare digests, not the strings: ConstantTimeCompare returns
		// early on a length mismatch, which would leak the secret's length.
		a, b := sha256.Sum256([]byte(token)), sha256.Sum256(secret)
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1
	}
	return false
}

// hmacEqual reports whether hexSig is the hex HMAC-SHA256 of body under secret.
func hmacEqual(hexSig string, body, secret []byte) bool {
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// hookRef returns the pushed ref ("refs/heads/main") of a push payload, or
// "" for an event without one (GitHub's ping). GitHub may send the JSON
// form-encoded in a "payload" field; GitLab, Gitea and Forgejo send JSON.
func hookRef(contentType string, body []byte) (string, error) {
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return "", err
		}
		body = []byte(form.Get("payload"))
	}
	var push struct {
		Ref string `json:"ref"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		return "", err
	}
	return push.Ref, nil
}

// trigger coalesces requests for a deploy: any number of fire calls while
// one is pending leave exactly one signal on C. The daemon's service loop
// selects on C next to its poll timer; a webhook calls fire.
type trigger struct {
	c chan struct{}

	mu  sync.Mutex
	why string // what asked for the pending sync, for its history
}

func newTrigger() *trigger { return &trigger{c: make(chan struct{}, 1)} }

// fire asks for a deploy on behalf of a webhook; it never blocks.
func (t *trigger) fire() { t.fireFor("webhook") }

// fireFor asks for a deploy, naming what asked; it never blocks.
func (t *trigger) fireFor(why string) {
	t.mu.Lock()
	t.why = why
	t.mu.Unlock()
	select {
	case t.c <- struct{}{}:
	default: // one is pending already; it will see this push too
	}
}

// cause is what asked last for the sync the trigger delivered.
func (t *trigger) cause() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.why
}

// C delivers one value per burst of fires.
func (t *trigger) C() <-chan struct{} { return t.c }
