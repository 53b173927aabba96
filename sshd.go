package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshServer is pgod's own SSH server: public keys only, exec requests only.
type sshServer struct {
	ctl      controller
	hostKey  ssh.Signer
	log      *slog.Logger
	metrics  *metrics
	hostname string // for ping
	limits   sshLimits
	audit    *auditTrail
}

// sshLimits keep one client, or many that never finish a handshake, from
// starving the others. serve reads them once; tests shorten them.
//
// A source is a client's IPv4 address, or its IPv6 /64 (what one host
// usually holds). Only the handshake is open to anyone, so its limits are
// the ones a flood meets; the limits after it bound what one key, or one
// address, can take from the holders of the others.
type sshLimits struct {
	// handshake is how long a client has from TCP connect to authenticated.
	handshake time.Duration
	// unauthenticated caps connections in their handshake, and
	// unauthenticatedPerSource those of one source once half the overall cap
	// is taken: a CI fleet behind one address may open many at once while
	// the server is quiet. Past the per-source cap a new connection is
	// closed at once. At the overall cap it pushes out
	// the handshake stalled longest, one whose client has sent nothing for
	// grace (and has nothing waiting unread); when none has, it is closed,
	// unless it is the only one of its source, which gets in up to twice the
	// cap: connections from a few addresses, fresh or stalled, then never
	// keep a client at another address from its handshake.
	unauthenticated          int
	unauthenticatedPerSource int
	// authenticated caps authenticated connections overall, and
	// authenticatedPerSource and authenticatedPerKey those of one source
	// and of one key. Past the per-source or per-key cap a new connection is
	// closed right after its handshake; at the overall cap it pushes out the
	// connection idle longest, if idle for grace, or else is closed.
	authenticated          int
	authenticatedPerSource int
	authenticatedPerKey    int
	// grace is how long a connection is safe from being pushed out: a
	// handshake must have stalled this long, an authenticated connection
	// been idle this long. A session that has not started an op counts as
	// activity only for grace after it opened, so sessions without an exec
	// do not keep a connection from being idle.
	grace time.Duration
	// sessions caps the open sessions of one connection.
	sessions int
	// idle closes an authenticated connection that has run no op for this long.
	idle time.Duration
	// keepalive is the interval of keepalive requests while sessions run; a
	// client that misses three in a row is gone and its connection closed,
	// which ends its ops (a "logs -f" to a vanished laptop).
	keepalive time.Duration
}

var defaultSSHLimits = sshLimits{
	handshake:                10 * time.Second,
	unauthenticated:          64,
	unauthenticatedPerSource: 10,
	authenticated:            512,
	authenticatedPerSource:   64,
	authenticatedPerKey:      32,
	grace:                    2 * time.Second,
	sessions:                 10, // OpenSSH's MaxSessions
	idle:                     5 * time.Minute,
	keepalive:                30 * time.Second,
}

// Extension keys under which authentication passes the client's key to the sessions.
const (
	extKey         = "pgo-key"         // the marshalled public key
	extFingerprint = "pgo-fingerprint" // its SHA256 fingerprint
)

func newSSHServer(ctl controller, hostKey ssh.Signer, log *slog.Logger, m *metrics) *sshServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	return &sshServer{ctl: ctl, hostKey: hostKey, log: log, metrics: m, hostname: hostname, limits: defaultSSHLimits,
		audit: newAuditTrail(log, m)}
}

// config is the x/crypto/ssh server configuration: a key gets in only if
// some service lets it in from the client's address; which service it may
// drive is decided per op.
func (s *sshServer) config() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-pgod",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			where, ok := s.ctl.knownKey(key, meta.RemoteAddr())
			if !ok {
				s.audit.refused(ssh.FingerprintSHA256(key), "", "", refusedUnknownKey, meta.RemoteAddr().String(), sourceOf(meta.RemoteAddr()))
				return nil, errors.New(refusedUnknownKey)
			}
			s.log.Debug("ssh key accepted", "remote", meta.RemoteAddr().String(), "key", ssh.FingerprintSHA256(key), "listed_in", where)
			return &ssh.Permissions{Extensions: map[string]string{
				extKey:         string(key.Marshal()),
				extFingerprint: ssh.FingerprintSHA256(key),
			}}, nil
		},
		AuthLogCallback: func(meta ssh.ConnMetadata, method string, err error) {
			if err != nil && method != "none" {
				s.log.Debug("ssh authentication failed", "remote", meta.RemoteAddr().String(), "method", method, "err", err)
			}
		},
	}
	cfg.AddHostKey(s.hostKey)
	return cfg
}

// serve accepts connections on ln until ctx is done, then closes every
// connection, which cancels their ops, and returns when they have ended.
func (s *sshServer) serve(ctx context.Context, ln net.Listener) error {
	cfg := s.config()
	limits := s.limits
	pending := newHandshakes(limits)
	clients := newClients(limits)
	var wg sync.WaitGroup
	defer wg.Wait()

	// On shutdown, stop accepting and end the handshakes in flight now
	// rather than at their deadline; authenticated connections close
	// themselves (handleConn).
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		pending.closeAll()
	})
	defer stop()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or similar: wait, do not spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("ssh accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("ssh: accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleConn(ctx, c, cfg, limits, pending, clients)
		}()
	}
}

// handleConn runs one client connection: handshake under a deadline, then its sessions.
func (s *sshServer) handleConn(ctx context.Context, c net.Conn, cfg *ssh.ServerConfig, limits sshLimits, pending *handshakes, clients *clients) {
	hc := newHandshakeConn(c, time.Now())
	ok, pushed := pending.admit(hc, time.Now())
	if pushed != nil {
		pushed.Close() // its handshake fails and its goroutine ends
		s.log.Debug("ssh handshake stalled, closed to make room", "remote", pushed.RemoteAddr().String())
	}
	if !ok {
		c.Close()
		s.log.Debug("ssh: too many handshakes, connection closed", "remote", c.RemoteAddr().String())
		return
	}
	if ctx.Err() != nil { // accepted as the server shut down, after closeAll
		pending.remove(hc)
		c.Close()
		return
	}
	_ = c.SetDeadline(hc.start.Add(limits.handshake))
	conn, chans, reqs, err := ssh.NewServerConn(hc, cfg)
	pending.remove(hc)
	if err != nil {
		c.Close()
		s.log.Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	fingerprint := conn.Permissions.Extensions[extFingerprint]
	cl := &client{source: hc.source, key: fingerprint, conn: conn, activity: newActivity(time.Now())}
	idle, err := clients.admit(cl, time.Now())
	if err != nil {
		s.log.Warn("ssh: connection closed after login, "+err.Error(), "remote", c.RemoteAddr().String(), "key", fingerprint)
		conn.Close()
		return
	}
	defer clients.remove(cl)
	if idle != nil {
		idle.conn.Close()
		s.log.Info("ssh: idle connection closed to make room", "remote", idle.conn.RemoteAddr().String(), "key", idle.key)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// Global requests are port forwarding (tcpip-forward) and keepalives:
	// refuse them all, which answers keepalives just as well.
	go ssh.DiscardRequests(reqs)

	var sessions sync.WaitGroup
	go s.watchdog(ctx, conn, cl.activity, limits)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			// direct-tcpip, x11, auth-agent: no forwarding of any kind.
			_ = nc.Reject(ssh.Prohibited, "only session channels with exec requests are allowed")
			continue
		}
		if !cl.activity.openSession(limits.sessions, time.Now()) {
			_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d sessions per connection", limits.sessions))
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			defer cl.activity.closeSession()
			s.handleSession(ctx, conn, nc, cl.activity)
		}()
	}
	cancel()
	sessions.Wait()
}

// watchdog closes an authenticated connection that stays idle for
// limits.idle, and one whose client stops answering keepalives.
func (s *sshServer) watchdog(ctx context.Context, conn *ssh.ServerConn, act *activity, limits sshLimits) {
	tick := time.NewTicker(min(limits.keepalive, limits.idle))
	defer tick.Stop()
	var outstanding atomic.Bool
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if act.idle(now, limits.grace) >= limits.idle {
				s.log.Debug("ssh connection idle, closing", "remote", conn.RemoteAddr().String())
				conn.Close()
				return
			}
			if outstanding.Load() {
				misses++
				if misses >= 3 {
					s.log.Info("ssh client stopped answering, closing", "remote", conn.RemoteAddr().String())
					conn.Close()
					return
				}
				continue
			}
			misses = 0
			outstanding.Store(true)
			go func() {
				// Any answer will do: the client is alive.
				_, _, _ = conn.SendRequest("keepalive@openssh.com", true, nil)
				outstanding.Store(false)
			}()
		}
	}
}

// activity is what one authenticated connection is doing: its open
// sessions, how many of them run an op, and since when none has.
type activity struct {
	mu          sync.Mutex
	sessions    int
	ops         int
	since       time.Time // the connection's start or the end of its last op
	lastSession time.Time // when a session last opened
}

func newActivity(now time.Time) *activity { return &activity{since: now} }

func (a *activity) openSession(max int, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sessions >= max {
		return false
	}
	a.sessions++
	a.lastSession = now
	return true
}

func (a *activity) closeSession() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions--
}

func (a *activity) startOp() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ops++
}

func (a *activity) endOp(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ops--
	if a.ops == 0 {
		a.since = now
	}
}

// idle is how long the connection has run no op. A session opened less
// than grace ago counts as busy (its exec is on its way); one older that
// has started nothing does not.
func (a *activity) idle(now time.Time, grace time.Duration) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ops > 0 || now.Sub(a.lastSession) < grace {
		return 0
	}
	return now.Sub(a.since)
}

// sourceOf is the source a connection counts against: its IPv4 address,
// or its IPv6 /64.
func sourceOf(a net.Addr) string {
	ip, ok := remoteIP(a)
	if !ok {
		return a.String()
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// handshakeConn is a connection in its handshake; it notes when its
// client last sent something.
type handshakeConn struct {
	net.Conn
	source string
	start  time.Time
	heard  atomic.Int64 // UnixNano of the last read that returned bytes; 0 before the first
}

func newHandshakeConn(c net.Conn, now time.Time) *handshakeConn {
	return &handshakeConn{Conn: c, source: sourceOf(c.RemoteAddr()), start: now}
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.heard.Store(time.Now().UnixNano())
	}
	return n, err
}

// lastHeard is when the client last sent bytes the handshake read, or the
// connection's start.
func (c *handshakeConn) lastHeard() time.Time {
	if n := c.heard.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return c.start
}

// unread reports whether the client has sent bytes the handshake has not
// read yet: a server behind on its reads must not take a client for stalled.
func (c *handshakeConn) unread() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var waiting bool
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting = err == nil && n > 0
	})
	return waiting
}

// handshakes are the connections still in their handshake.
type handshakes struct {
	mu        sync.Mutex
	max       int
	perSource int
	grace     time.Duration
	conns     map[*handshakeConn]bool
	bySource  map[string]int
}

func newHandshakes(l sshLimits) *handshakes {
	return &handshakes{max: l.unauthenticated, perSource: l.unauthenticatedPerSource, grace: l.grace,
		conns: map[*handshakeConn]bool{}, bySource: map[string]int{}}
}

// admit decides whether c may start its handshake (see sshLimits), and
// which pending handshake, if any, it pushes out; the caller closes that.
func (p *handshakes) admit(c *handshakeConn, now time.Time) (ok bool, pushed *handshakeConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bySource[c.source] >= p.perSource && 2*len(p.conns) >= p.max {
		return false, nil
	}
	if len(p.conns) >= p.max {
		pushed = p.stalledLongest(now)
		if pushed == nil && (p.bySource[c.source] > 0 || len(p.conns) >= 2*p.max) {
			return false, nil
		}
		if pushed != nil {
			p.drop(pushed)
		}
	}
	p.conns[c] = true
	p.bySource[c.source]++
	return true, pushed
}

// stalledLongest is the handshake whose client has sent nothing for the
// longest, at least grace, or nil.
func (p *handshakes) stalledLongest(now time.Time) *handshakeConn {
	for {
		var stalled *handshakeConn
		var since time.Time
		for c := range p.conns {
			if h := c.lastHeard(); now.Sub(h) >= p.grace && (stalled == nil || h.Before(since)) {
				stalled, since = c, h
			}
		}
		if stalled == nil || !stalled.unread() {
			return stalled
		}
		// Its client did send: it is the server that is behind.
		stalled.heard.Store(now.UnixNano())
	}
}

func (p *handshakes) drop(c *handshakeConn) {
	if !p.conns[c] {
		return
	}
	delete(p.conns, c)
	if p.bySource[c.source]--; p.bySource[c.source] == 0 {
		delete(p.bySource, c.source)
	}
}

func (p *handshakes) remove(c *handshakeConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop(c)
}

func (p *handshakes) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// client is one authenticated connection.
type client struct {
	source   string
	key      string // the key's fingerprint
	conn     *ssh.ServerConn
	activity *activity
}

// clients are the authenticated connections.
type clients struct {
	mu       sync.Mutex
	limits   sshLimits
	all      map[*client]bool
	bySource map[string]int
	byKey    map[string]int
}

func newClients(l sshLimits) *clients {
	return &clients{limits: l, all: map[*client]bool{}, bySource: map[string]int{}, byKey: map[string]int{}}
}

// admit adds c (see sshLimits), returning the idle connection it pushes
// out, if any, for the caller to close, or why c may not stay.
func (t *clients) admit(c *client, now time.Time) (pushed *client, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.limits
	switch {
	case t.bySource[c.source] >= l.authenticatedPerSource:
		return nil, fmt.Errorf("%d connections from %s already", l.authenticatedPerSource, c.source)
	case t.byKey[c.key] >= l.authenticatedPerKey:
		return nil, fmt.Errorf("%d connections with this key already", l.authenticatedPerKey)
	case len(t.all) >= l.authenticated:
		pushed = t.idlest(now)
		if pushed == nil {
			return nil, fmt.Errorf("%d connections already, none idle", l.authenticated)
		}
		t.drop(pushed)
	}
	t.all[c] = true
	t.bySource[c.source]++
	t.byKey[c.key]++
	return pushed, nil
}

// idlest is the connection idle longest, at least grace, or nil.
func (t *clients) idlest(now time.Time) *client {
	var idlest *client
	var longest time.Duration
	for c := range t.all {
		if d := c.activity.idle(now, t.limits.grace); d >= t.limits.grace && d > longest {
			idlest, longest = c, d
		}
	}
	return idlest
}

func (t *clients) drop(c *client) {
	if !t.all[c] {
		return
	}
	delete(t.all, c)
	if t.bySource[c.source]--; t.bySource[c.source] == 0 {
		delete(t.bySource, c.source)
	}
	if t.byKey[c.key]--; t.byKey[c.key] == 0 {
		delete(t.byKey, c.key)
	}
}

func (t *clients) remove(c *client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drop(c)
}

// loadOrCreateHostKey reads the ed25519 host key at path, creating it (0600) on first use.
func loadOrCreateHostKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = createHostKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ssh host key %s: mode %04o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("ssh host key %s: %w", path, err)
	}
	return signer, nil
}

// createHostKey writes a new ed25519 key in OpenSSH format, atomically and
// never readable by others, and returns it.
func createHostKey(path string) ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "pgod host key")
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(block)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return nil, err
	}
	return data, nil
}

// ptyRequest is a client's pty-req: its terminal type and size.
type ptyRequest struct {
	term string
	size winSize
}

// termRE is what a TERM value may look like; it goes into the container's environment.
var termRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

func parsePtyRequest(payload []byte) (*ptyRequest, error) {
	var req struct {
		Term          string
		Cols, Rows    uint32
		Width, Height uint32
		Modes         string
	}
	if err := ssh.Unmarshal(payload, &req); err != nil {
		return nil, err
	}
	if !termRE.MatchString(req.Term) {
		req.Term = "xterm"
	}
	return &ptyRequest{term: req.Term, size: clampSize(req.Cols, req.Rows)}, nil
}

func parseWindowChange(payload []byte) (winSize, error) {
	var req struct {
		Cols, Rows    uint32
		Width, Height uint32
	}
	if err := ssh.Unmarshal(payload, &req); err != nil {
		return winSize{}, err
	}
	return clampSize(req.Cols, req.Rows), nil
}

func clampSize(cols, rows uint32) winSize {
	return winSize{cols: uint16(min(cols, 0xffff)), rows: uint16(min(rows, 0xffff))}
}

// signals a client may send, by their SSH names (RFC 4254 6.9).
var signalNumbers = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// handleSession serves one session channel: at most one exec, with an
// optional pty-req before it and window-change and signal requests during.
// A signal, or the client closing the channel or the connection, cancels
// the op, which kills its process group.
func (s *sshServer) handleSession(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel, act *activity) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		pty     *ptyRequest
		winch   = make(chan winSize, 1)
		done    chan int // the op's exit status, once it started
		signal  atomic.Int32
		running bool
	)
	for {
		select {
		case status := <-done:
			if sig := signal.Load(); sig != 0 {
				status = 128 + int(sig)
			}
			_ = ch.CloseWrite()
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
			return
		case req, ok := <-reqs:
			if !ok {
				// The client closed the channel or went away: end the op.
				cancel()
				if running {
					<-done
				}
				return
			}
			switch req.Type {
			case "pty-req":
				p, err := parsePtyRequest(req.Payload)
				ok := err == nil && !running
				if ok {
					pty = p
				}
				_ = req.Reply(ok, nil)
			case "window-change":
				ws, err := parseWindowChange(req.Payload)
				if err == nil && pty != nil {
					pty.size = ws
					select { // keep only the newest size
					case <-winch:
					default:
					}
					winch <- ws
				}
				_ = req.Reply(err == nil, nil)
			case "exec":
				var cmd struct{ Command string }
				if running || ssh.Unmarshal(req.Payload, &cmd) != nil {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				running = true
				done = make(chan int, 1)
				var p *ptyRequest
				if pty != nil {
					cp := *pty
					p = &cp
				}
				act.startOp()
				go func() {
					defer act.endOp(time.Now())
					done <- s.runSession(ctx, conn, ch, cmd.Command, p, winch)
				}()
			case "signal":
				var sig struct{ Name string }
				if err := ssh.Unmarshal(req.Payload, &sig); err == nil && running {
					if n, ok := signalNumbers[sig.Name]; ok {
						signal.CompareAndSwap(0, int32(n))
						cancel()
					}
				}
				_ = req.Reply(false, nil)
			case "shell":
				// Accepted only to say why not: a refused shell request
				// leaves OpenSSH's user with a bare "shell request failed".
				if running {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				running = true
				done = make(chan int, 1)
				fmt.Fprintf(ch.Stderr(), "Bad Request: pgod runs ops, not a shell; try: ssh ... NAME//ping\r\n")
				done <- exitBadRequest
			default:
				// env, x11-req, auth-agent-req@openssh.com, ...: refused.
				_ = req.Reply(false, nil)
			}
		}
	}
}

// runSession authorizes and runs one op and returns its exit status.
func (s *sshServer) runSession(ctx context.Context, conn *ssh.ServerConn, ch ssh.Channel, command string, pty *ptyRequest, winch <-chan winSize) int {
	start := time.Now()
	fingerprint := conn.Permissions.Extensions[extFingerprint]
	req, svc, listed, err := s.authorize(conn, command)
	if err == nil {
		if pty != nil && listed.noPTY {
			// As sshd refuses the pty-req of such a key; the service,
			// and so the key's line, is known only now.
			fmt.Fprintf(ch.Stderr(), "pgod: %s forbids a terminal (no-pty or restrict), running without one\r\n", listed.source)
			pty = nil
		}
		if req.service == hostTarget {
			_, err = io.WriteString(ch, formatHostStatus(s.ctl.statuses(), time.Now()))
		} else {
			ctx := withCaller(ctx, caller{Fingerprint: fingerprint, KeyFile: listed.source})
			err = s.runOp(ctx, req, svc, ch, pty, winch)
		}
	}
	status, result := exitOf(err)
	var re *requestError
	var es exitStatus
	var outcome *deployError
	switch {
	case err == nil, errors.As(err, &es):
		// The op has said what it had to say.
	case errors.As(err, &re):
		fmt.Fprintln(ch.Stderr(), re.Error())
	case errors.As(err, &outcome):
		// One line a CI log shows next to the exit status: what did not deploy, and why.
		fmt.Fprintf(ch.Stderr(), "pgod: %s\n", outcome.msg)
	case ctx.Err() == nil: // else the client is gone and hears nothing
		fmt.Fprintf(ch.Stderr(), "Error: %v\n", err)
	}
	// Only a service that exists, or the host-wide "*", is named in metrics
	// and logs, so a client cannot mint label values or fill the log with
	// names of its choosing.
	name := ""
	if svc != nil || req.service == hostTarget || (req.service != "" && s.ctl.lookup(req.service) != nil) {
		name = req.service
	}
	if result == "unauthorized" {
		why := refusedForService
		if listed != nil {
			why = refusedReadOnly // the key is listed, but read-only
		}
		s.audit.refused(fingerprint, name, req.op, why, conn.RemoteAddr().String(), sourceOf(conn.RemoteAddr()))
	} else {
		keyFile := ""
		if listed != nil {
			keyFile = listed.source
		}
		s.audit.op(sshOp{key: fingerprint, keyFile: keyFile, service: name, op: req.op, args: req.args,
			exit: status, result: result, duration: time.Since(start), from: conn.RemoteAddr().String()})
	}
	if s.metrics != nil {
		s.metrics.sshSession(name, result)
	}
	return status
}

// authorize parses command and checks that the connection's key may drive
// its service from the client's address, returning the key's line: in the
// operator keys, which drive every service and alone may run the host-wide
// op, else in the service's ssh/. A service that does not exist and one
// that does not let the key in get the same answer, so a key learns nothing
// of other services.
func (s *sshServer) authorize(conn *ssh.ServerConn, command string) (opRequest, serviceControl, *authorizedKey, error) {
	req, err := parseCommand(command)
	if err != nil {
		return req, nil, nil, err
	}
	key, err := ssh.ParsePublicKey([]byte(conn.Permissions.Extensions[extKey]))
	if err != nil {
		return req, nil, nil, unauthorized("no usable key")
	}
	operator := s.ctl.operator(key, conn.RemoteAddr())
	if req.service == hostTarget {
		if operator == nil {
			return req, nil, nil, unauthorized("key %s is not an operator key; %s is for the host's operators", ssh.FingerprintSHA256(key), hostTarget+"//status")
		}
		return req, nil, operator, nil
	}
	svc := s.ctl.lookup(req.service)
	if svc == nil {
		return req, nil, nil, unauthorized("key %s is not allowed for service %q", ssh.FingerprintSHA256(key), req.service)
	}
	listed := operator
	if listed == nil {
		listed = svc.authorized(key, conn.RemoteAddr())
	}
	if listed == nil {
		return req, nil, nil, unauthorized("key %s is not allowed for service %q", ssh.FingerprintSHA256(key), req.service)
	}
	if listed.readOnly && !ops[req.op].readOnly {
		return req, nil, listed, unauthorized("key %s (%s) is read-only: it may run %s, not %q, which changes the service",
			ssh.FingerprintSHA256(key), listed.source, strings.Join(readOnlyOps(), ", "), req.op)
	}
	return req, svc, listed, nil
}

// readOnlyOps lists the ops a read-only key may run, sorted.
func readOnlyOps() []string {
	var names []string
	for _, name := range opNames() {
		if ops[name].readOnly {
			names = append(names, name)
		}
	}
	return names
}

// runOp checks the op's arguments and runs it, inside svc.serialize when it changes the service.
func (s *sshServer) runOp(ctx context.Context, req opRequest, svc serviceControl, ch ssh.Channel, pty *ptyRequest, winch <-chan winSize) error {
	spec := ops[req.op]
	args, err := spec.args.parse(req.op, req.args, req.op == "exec")
	if err != nil {
		return err
	}
	o := &opRun{name: req.service, svc: svc, args: args, stdin: ch, stdout: ch, stderr: ch.Stderr(),
		pty: pty, winch: winch, hostname: s.hostname, recipient: recipientLine(s.hostKey.PublicKey(), s.hostname)}
	if !spec.mutating {
		return spec.run(ctx, o)
	}
	return svc.serialize(ctx, func(ctx context.Context) error { return spec.run(ctx, o) })
}

// exitOf turns an op's outcome into its exit status and its metrics result.
func exitOf(err error) (int, string) {
	var re *requestError
	var es exitStatus
	var busy *busyError
	var outcome *deployError
	switch {
	case err == nil:
		return 0, "ok"
	case errors.As(err, &re):
		return re.status(), re.result()
	case errors.As(err, &busy):
		return exitBusy, "busy"
	case errors.As(err, &outcome):
		return outcome.status(), outcome.result
	case errors.Is(err, context.DeadlineExceeded):
		return exitTimeout, resultTimeout
	case errors.As(err, &es):
		return int(es), "error"
	}
	return exitFailure, "error"
}
