package main

// Notifications tell people what needs them: a deploy that failed or was
// rolled back, a commit the policy rejected, a service that is unhealthy,
// frozen or recovered, a pgod that started with broken services. Events go
// to every [[notify]] endpoint of pgo.toml and to the service's own, as a
// Slack or Discord webhook message, an ntfy message, or a JSON document.
//
// Nothing here may slow a deploy: notify only queues. Each endpoint has a
// bounded queue, which drops its oldest event when full, and one goroutine
// that sends, retries with backoff and in the end gives up.
//
// An endpoint's URL is a secret: Slack, Discord and ntfy keep the token in
// it. Logs show scheme://host/… only, and metrics the endpoint's name.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// eventKind says what happened.
type eventKind string

const (
	eventFailed            eventKind = "failed"              // a deploy failed and nothing was rolled back
	eventRolledBack        eventKind = "rolled_back"         // a deploy failed and the last good commit runs again
	eventUnhealthy         eventKind = "unhealthy"           // containers that should run do not
	eventRejected          eventKind = "rejected"            // the policy refused a commit
	eventRecovered         eventKind = "recovered"           // the first deploy that worked after a failure or rejection
	eventFrozen            eventKind = "frozen"              // deploys of the service are held
	eventUnfrozen          eventKind = "unfrozen"            // deploys of the service go on again
	eventStartedWithErrors eventKind = "started_with_errors" // pgod started, but some services failed to prepare
)

// eventKinds are all kinds, in the order the documentation lists them.
var eventKinds = []eventKind{
	eventFailed, eventRolledBack, eventUnhealthy, eventRejected, eventRecovered,
	eventFrozen, eventUnfrozen, eventStartedWithErrors,
}

// eventKindNames are the kinds as pgo.toml's events lists spell them.
func eventKindNames() []string {
	names := make([]string, len(eventKinds))
	for i, k := range eventKinds {
		names[i] = string(k)
	}
	return names
}

// Formats of a notify endpoint.
const (
	notifySlack   = "slack"   // Slack incoming webhook: {"text": ...}
	notifyDiscord = "discord" // Discord webhook: {"content": ...}
	notifyNtfy    = "ntfy"    // ntfy topic URL: the text as the body; Title, Priority and Tags headers
	notifyJSON    = "json"    // pgo's own document, notifyDocument; signed when the endpoint has a secret
)

var notifyFormats = []string{notifySlack, notifyDiscord, notifyNtfy, notifyJSON}

// Notification results, as counted in pgo_notifications_total.
const (
	notifySent       = "sent"
	notifyFailed     = "failed"     // every attempt failed, or the endpoint refused it
	notifyDropped    = "dropped"    // the queue was full, or pgod stopped before it went out
	notifySuppressed = "suppressed" // the endpoint got the same event for the same commit already
)

var notifyResults = []string{notifySent, notifyFailed, notifyDropped, notifySuppressed}

// event is something that happened to a service, or to pgod itself.
type event struct {
	Kind    eventKind
	Service string    // "" for pgod itself: then only the [[notify]] endpoints get it
	Commit  string    // the commit concerned, or ""
	Reason  string    // what went wrong, redacted by the caller already
	Time    time.Time // zero means now
	Secrets []string  // the service's secrets, for a second redaction; never sent
}

// maxReason bounds the reason sent, in bytes: a Discord message holds 2000
// characters, and compose's last lines say what matters.
const maxReason = 1500

// notifier sends events to the configured endpoints. Use newNotifier, then
// reload with each config; notify never blocks.
type notifier struct {
	log     *slog.Logger
	metrics *metrics // nil counts nothing
	host    string   // this machine's name, in every message
	client  *http.Client

	// What follows is set by newNotifier; tests change it before the first reload.
	queueLen      int                                              // events an endpoint holds while it is slow or down
	attempts      int                                              // tries per event before giving up
	backoff       func(attempt int) time.Duration                  // wait after failed attempt n (1, 2, ...)
	wait          func(ctx context.Context, d time.Duration) error // sleeps d, or less when ctx ends
	maxRetryAfter time.Duration                                    // cap on an endpoint's Retry-After
	timeout       time.Duration                                    // per request
	repeatAfter   time.Duration                                    // an event repeated this long after is sent again
	logEvery      time.Duration                                    // at most one failure line per endpoint this often
	now           func() time.Time

	mu      sync.Mutex
	senders map[string]*sender // the current endpoints, by name
	secrets []string           // of every current endpoint: URLs and HMAC keys
	live    map[*sender]bool   // senders whose goroutine runs, current or retiring
	wg      sync.WaitGroup     // those goroutines
	closed  bool
}

// newNotifier returns a notifier with no endpoints yet; reload gives it the config's.
func newNotifier(log *slog.Logger, m *metrics) *notifier {
	host, _ := os.Hostname()
	return &notifier{
		log:     log,
		metrics: m,
		host:    host,
		client: &http.Client{
			// An endpoint that redirects is misconfigured; following it
			// would turn the POST into a GET, or carry the signature elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		queueLen:      64,
		attempts:      5,
		backoff:       func(attempt int) time.Duration { return min(time.Second<<(attempt-1), time.Minute) },
		wait:          sleepContext,
		maxRetryAfter: 5 * time.Minute,
		timeout:       10 * time.Second,
		repeatAfter:   24 * time.Hour,
		logEvery:      10 * time.Minute,
		now:           time.Now,
		senders:       map[string]*sender{},
		live:          map[*sender]bool{},
	}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reload makes the endpoints those of cfg. An endpoint whose table did not
// change keeps its queue and what it sent; a removed or changed one sends
// what it holds, for at most one request timeout, and stops.
func (n *notifier) reload(cfg *Config) {
	want := map[string]*NotifyEndpoint{}
	for _, ep := range cfg.Notify {
		want[ep.Name] = ep
	}
	for _, s := range cfg.Services {
		for _, ep := range s.Notify {
			want[ep.Name] = ep
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	for name, s := range n.senders {
		if ep, ok := want[name]; ok && sameEndpoint(*ep, s.ep) {
			continue
		}
		delete(n.senders, name)
		close(s.drain)
		time.AfterFunc(n.timeout, s.abort)
	}
	n.secrets = nil
	for _, name := range sortedKeys(want) {
		s, ok := n.senders[name]
		if !ok {
			s = n.start(*want[name])
			n.senders[name] = s
		}
		n.secrets = append(n.secrets, s.secrets...)
	}
	if n.metrics != nil {
		n.metrics.notificationEndpoints(sortedKeys(want))
	}
}

// sameEndpoint: everything but the line it was written at.
func sameEndpoint(a, b NotifyEndpoint) bool {
	return a.Name == b.Name && a.URL == b.URL && a.Format == b.Format && a.Secret == b.Secret &&
		a.Service == b.Service && slices.Equal(a.Events, b.Events)
}

// notify queues e for every endpoint that takes it, and returns at once.
func (n *notifier) notify(e event) {
	if e.Time.IsZero() {
		e.Time = n.now()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	// Redact before truncating: a secret cut in two is no longer found.
	secrets := append(slices.Clone(e.Secrets), n.secrets...)
	e.Reason = truncate(redact(e.Reason, secrets), maxReason)
	e.Commit = redact(e.Commit, secrets)
	e.Secrets = nil
	for _, s := range n.senders {
		if s.ep.Service == "" || s.ep.Service == e.Service {
			s.enqueue(e)
		}
	}
}

// close stops the senders. They send what they hold until ctx ends; what is
// left then is dropped. Later calls of notify do nothing.
func (n *notifier) close(ctx context.Context) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, s := range n.senders {
		close(s.drain)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		n.mu.Lock()
		for s := range n.live {
			s.abort()
		}
		n.mu.Unlock()
		<-done
	}
}

func (n *notifier) count(endpoint, result string, times int) {
	if n.metrics != nil {
		for range times {
			n.metrics.notification(endpoint, result)
		}
	}
}

// start runs the sender of ep; n.mu is held.
func (n *notifier) start(ep NotifyEndpoint) *sender {
	ctx, abort := context.WithCancel(context.Background())
	s := &sender{
		n:       n,
		ep:      ep,
		shown:   shownURL(ep.URL),
		secrets: endpointSecrets(ep),
		ctx:     ctx,
		abort:   abort,
		wake:    make(chan struct{}, 1),
		drain:   make(chan struct{}),
		last:    map[string]lastEvent{},
	}
	if len(ep.Events) > 0 {
		s.kinds = map[eventKind]bool{}
		for _, k := range ep.Events {
			s.kinds[eventKind(k)] = true
		}
	}
	n.live[s] = true
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer abort()
		s.run()
		n.mu.Lock()
		delete(n.live, s)
		n.mu.Unlock()
	}()
	return s
}

// sender delivers the events of one endpoint, one at a time, in order.
type sender struct {
	n       *notifier
	ep      NotifyEndpoint
	shown   string             // the URL as logs show it: scheme://host/…
	secrets []string           // the URL, its parts and the HMAC key, for redact
	kinds   map[eventKind]bool // the kinds it takes; nil takes all

	ctx   context.Context    // ends a request or a wait in progress when aborted
	abort context.CancelFunc // drops what is left
	wake  chan struct{}      // holds one token while the queue may have events
	drain chan struct{}      // closed: send what is queued, then stop

	mu    sync.Mutex
	queue []event
	last  map[string]lastEvent // by service: the last event seen, to suppress repeats

	// Only the sender's goroutine uses these.
	unreported int       // failures not logged yet
	lastLog    time.Time // of the last failure logged
	failing    bool      // a failure was logged and nothing was sent since
}

// lastEvent is what an endpoint last saw of a service.
type lastEvent struct {
	kind   eventKind
	commit string
	at     time.Time
}

// enqueue queues e, unless it repeats the last event of its service within
// repeatAfter. Every event, sent or filtered out, counts as the last, so
// failed, recovered, failed again notifies twice on a failed-only endpoint.
func (s *sender) enqueue(e event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, seen := s.last[e.Service]
	repeat := seen && prev.kind == e.Kind && prev.commit == e.Commit && e.Time.Sub(prev.at) < s.n.repeatAfter
	if !repeat {
		s.last[e.Service] = lastEvent{kind: e.Kind, commit: e.Commit, at: e.Time}
	}
	switch {
	case s.kinds != nil && !s.kinds[e.Kind]:
		return
	case repeat:
		s.n.count(s.ep.Name, notifySuppressed, 1)
		return
	}
	if len(s.queue) >= s.n.queueLen {
		s.queue[0] = event{}
		s.queue = s.queue[1:]
		s.n.count(s.ep.Name, notifyDropped, 1)
	}
	s.queue = append(s.queue, e)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// queued is the number of events waiting.
func (s *sender) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

func (s *sender) run() {
	for {
		e, ok := s.next()
		if !ok {
			return
		}
		s.deliver(e)
	}
}

// next waits for the next event; false when the sender is to stop.
func (s *sender) next() (event, bool) {
	draining := false
	for {
		s.mu.Lock()
		if s.ctx.Err() == nil && len(s.queue) > 0 {
			e := s.queue[0]
			s.queue[0] = event{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return e, true
		}
		// Once drain is closed nothing is queued any more, so an empty
		// queue seen after that stays empty.
		if s.ctx.Err() != nil || draining {
			left := len(s.queue)
			s.queue = nil
			s.mu.Unlock()
			s.n.count(s.ep.Name, notifyDropped, left)
			return event{}, false
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ctx.Done():
		case <-s.drain:
			draining = true
		}
	}
}

// deliver sends e, retrying what may work later: a connection that failed,
// a timeout, 408, 429 and 5xx. Other answers are final.
func (s *sender) deliver(e event) {
	req, err := s.request(e)
	if err != nil {
		s.n.count(s.ep.Name, notifyFailed, 1)
		s.failed(err)
		return
	}
	for attempt := 1; ; attempt++ {
		var retryIn time.Duration
		retryIn, err = s.post(req)
		if err == nil {
			s.n.count(s.ep.Name, notifySent, 1)
			s.sent()
			return
		}
		if retryIn < 0 || attempt >= s.n.attempts || s.ctx.Err() != nil {
			break
		}
		if retryIn == 0 {
			retryIn = s.n.backoff(attempt)
		}
		if s.n.wait(s.ctx, retryIn) != nil {
			break
		}
	}
	if s.ctx.Err() != nil {
		s.n.count(s.ep.Name, notifyDropped, 1)
		return
	}
	s.n.count(s.ep.Name, notifyFailed, 1)
	s.failed(err)
}

// outgoing is a request built once and posted on every attempt.
type outgoing struct {
	body   []byte
	header http.Header
}

// post makes one attempt. retryIn is what the endpoint asked to wait
// (Retry-After), 0 to back off as usual, or negative when retrying cannot help.
func (s *sender) post(out outgoing) (retryIn time.Duration, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ep.URL, bytes.NewReader(out.body))
	if err != nil {
		return -1, errors.New("cannot make a request of the url") // err would quote it
	}
	req.Header = out.header.Clone()
	resp, err := s.n.client.Do(req)
	if err != nil {
		var uerr *url.Error // quotes the URL: keep only what it wraps
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer within %s", s.n.timeout)
		}
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be used again
	code := resp.StatusCode
	err = fmt.Errorf("answered %d %s", code, http.StatusText(code)) // not resp.Status: the endpoint chose its words
	switch {
	case code >= 200 && code < 300:
		return 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return s.retryAfter(resp.Header.Get("Retry-After")), err
	case code == http.StatusRequestTimeout || code >= 500:
		return 0, err
	}
	return -1, err
}

// retryAfter reads a Retry-After of seconds or an HTTP date, capped at
// maxRetryAfter; 0 when there is none.
func (s *sender) retryAfter(h string) time.Duration {
	var d time.Duration
	if secs, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(s.n.now())
	}
	return max(0, min(d, s.n.maxRetryAfter))
}

// failed logs a delivery that gave up, at most once per logEvery.
func (s *sender) failed(err error) {
	s.unreported++
	now := s.n.now()
	if !s.lastLog.IsZero() && now.Sub(s.lastLog) < s.n.logEvery {
		return
	}
	msg := fmt.Sprintf("notify %s (%s): cannot deliver: %s", s.ep.Name, s.shown, redact(err.Error(), s.secrets))
	if s.unreported > 1 {
		msg += fmt.Sprintf(" (%d notifications failed since the last report)", s.unreported)
	}
	s.n.log.Warn(msg)
	s.unreported, s.lastLog, s.failing = 0, now, true
}

// sent says, once, that an endpoint whose failure was logged delivers again.
func (s *sender) sent() {
	if !s.failing {
		return
	}
	msg := fmt.Sprintf("notify %s (%s): delivers again", s.ep.Name, s.shown)
	if s.unreported > 0 {
		msg += fmt.Sprintf(" (%d more notifications failed before)", s.unreported)
	}
	s.n.log.Info(msg)
	s.unreported, s.failing = 0, false
}

// request builds what the endpoint's format posts for e.
func (s *sender) request(e event) (outgoing, error) {
	header := http.Header{"User-Agent": {"pgo/" + version}}
	text := s.n.text(e)
	var doc any
	switch s.ep.Format {
	case notifySlack:
		doc = map[string]string{"text": slackEscaper.Replace(text)}
	case notifyDiscord:
		// No mentions: a reason is partly the team's text, and must not
		// be able to ping @everyone.
		doc = map[string]any{"content": text, "allowed_mentions": map[string][]string{"parse": {}}}
	case notifyNtfy:
		header.Set("Content-Type", "text/plain; charset=utf-8")
		header.Set("Title", headerSafe(s.n.title(e)))
		header.Set("Priority", ntfyPriority(e.Kind))
		header.Set("Tags", ntfyTag(e.Kind)+","+string(e.Kind))
		body := e.Reason
		if body == "" {
			body = s.n.title(e)
		}
		return outgoing{body: []byte(body), header: header}, nil
	case notifyJSON:
		doc = notifyDocument{Event: e.Kind, Service: e.Service, Commit: e.Commit, Reason: e.Reason,
			Time: e.Time.UTC().Format(time.RFC3339), Host: s.n.host}
	default:
		return outgoing{}, fmt.Errorf("format %q is not supported", s.ep.Format)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return outgoing{}, err
	}
	header.Set("Content-Type", "application/json")
	if s.ep.Secret != "" {
		header.Set("X-Pgo-Signature", "sha256="+signature(s.ep.Secret, body))
	}
	return outgoing{body: body, header: header}, nil
}

// notifyDocument is what a json endpoint receives. Its fields are a stable
// interface: add to them, never rename or remove one.
type notifyDocument struct {
	Event   eventKind `json:"event"`
	Service string    `json:"service"` // "" for pgod itself
	Commit  string    `json:"commit"`  // full hash, or ""
	Reason  string    `json:"reason"`
	Time    string    `json:"time"` // RFC 3339, UTC
	Host    string    `json:"host"`
}

// signature is the hex HMAC-SHA256 of body under secret, as X-Pgo-Signature carries it after "sha256=".
func signature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// title is the event in one line: "web on host1: deploy of 3f2a1c9 failed".
func (n *notifier) title(e event) string {
	who := e.Service
	if who == "" {
		who = "pgod"
	}
	if n.host != "" {
		who += " on " + n.host
	}
	return who + ": " + summary(e)
}

// text is the title and, when there is one, the reason.
func (n *notifier) text(e event) string {
	if e.Reason == "" {
		return n.title(e)
	}
	return n.title(e) + ": " + e.Reason
}

func summary(e event) string {
	deploy := "deploy"
	if e.Commit != "" {
		deploy += " of " + short(e.Commit)
	}
	commit := "the commit"
	if e.Commit != "" {
		commit = short(e.Commit)
	}
	switch e.Kind {
	case eventFailed:
		return deploy + " failed"
	case eventRolledBack:
		return deploy + " failed; the last good commit runs again"
	case eventUnhealthy:
		return "unhealthy"
	case eventRejected:
		return commit + " was rejected by the policy"
	case eventRecovered:
		return "recovered: " + commit + " is deployed"
	case eventFrozen:
		return "frozen: nothing is deployed until it is unfrozen"
	case eventUnfrozen:
		return "unfrozen: deploys go on"
	case eventStartedWithErrors:
		return "started, but some services failed to prepare"
	}
	return string(e.Kind)
}

func ntfyPriority(k eventKind) string {
	switch k {
	case eventFailed, eventRolledBack, eventUnhealthy, eventStartedWithErrors:
		return "high"
	}
	return "default"
}

// ntfyTag is the emoji ntfy shows for the kind.
func ntfyTag(k eventKind) string {
	switch k {
	case eventFailed:
		return "x"
	case eventRolledBack:
		return "rewind"
	case eventUnhealthy, eventStartedWithErrors:
		return "warning"
	case eventRejected:
		return "no_entry"
	case eventRecovered:
		return "white_check_mark"
	case eventFrozen:
		return "snowflake"
	}
	return "arrow_forward"
}

// slackEscaper escapes what Slack's text reads as markup, so a reason
// cannot write <!channel> and ping everyone.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// headerSafe replaces what may not stand in a header value, or would be
// mangled there, by "?".
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// truncate cuts s to at most max bytes, at a character boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = " […]"
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// shownURL is a URL as logs may show it: scheme://host/… . The rest may be
// the endpoint's token.
func shownURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "url hidden"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// endpointSecrets are the parts of an endpoint that must never be sent or
// logged: the URL and its credentials, the HMAC key, and the path, query,
// path segments and query values long enough to be tokens.
func endpointSecrets(ep NotifyEndpoint) []string {
	secrets := append([]string{ep.URL, ep.Secret}, urlSecrets(ep.URL)...)
	u, err := url.Parse(ep.URL)
	if err != nil {
		return secrets
	}
	parts := append([]string{u.EscapedPath(), u.Path, u.RawQuery}, strings.Split(u.Path, "/")...)
	for _, values := range u.Query() {
		parts = append(parts, values...)
	}
	// Shorter parts are words ("/services", "/api"); hiding those would
	// garble messages, and the whole URL is hidden anyway.
	const minToken = 16
	for _, p := range parts {
		if len(p) >= minToken {
			secrets = append(secrets, p)
		}
	}
	return secrets
}
