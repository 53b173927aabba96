package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
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
}

// sshLimits keep one client, or many that never finish a handshake, from
// starving the others. serve reads them once; tests shorten them.
type sshLimits struct {
	// handshake is how long a client has from TCP connect to authenticated.
	handshake time.Duration
	// unauthenticated caps connections that have not finished the handshake.
	// At the cap, a new connection pushes out the oldest one that has not
	// sent a byte yet (or else the oldest): a flood of half-open connections
	// then only ever pushes out its own, and a real client gets through.
	unauthenticated int
	// authenticated caps authenticated connections; past it a new one is
	// closed right after its handshake. Only holders of a listed key get
	// that far, but one leaked CI key must not exhaust the daemon.
	authenticated int
	// sessions caps concurrent sessions (ops) per connection.
	sessions int
	// idle closes an authenticated connection that has had no session for this long.
	idle time.Duration
	// keepalive is the interval of keepalive requests while sessions run; a
	// client that misses three in a row is gone and its connection closed,
	// which ends its ops (a "logs -f" to a vanished laptop).
	keepalive time.Duration
}

var defaultSSHLimits = sshLimits{
	handshake:       10 * time.Second,
	unauthenticated: 64,
	authenticated:   512,
	sessions:        10, // OpenSSH's MaxSessions
	idle:            5 * time.Minute,
	keepalive:       30 * time.Second,
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
	return &sshServer{ctl: ctl, hostKey: hostKey, log: log, metrics: m, hostname: hostname, limits: defaultSSHLimits}
}

// config is the x/crypto/ssh server configuration: a key gets in only if
// some service lists it; which service it may drive is decided per op.
func (s *sshServer) config() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-pgod",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if !s.ctl.knownKey(key) {
				return nil, errors.New("key not listed by any service")
			}
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
	pending := &pendingConns{max: limits.unauthenticated, conns: map[*watchedConn]bool{}}
	authenticated := &atomic.Int64{}
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
			s.handleConn(ctx, c, cfg, limits, pending, authenticated)
		}()
	}
}

// handleConn runs one client connection: handshake under a deadline, then its sessions.
func (s *sshServer) handleConn(ctx context.Context, c net.Conn, cfg *ssh.ServerConfig, limits sshLimits, pending *pendingConns, authenticated *atomic.Int64) {
	wc := &watchedConn{Conn: c, start: time.Now()}
	pending.add(wc)
	if ctx.Err() != nil { // accepted as the server shut down
		pending.remove(wc)
		c.Close()
		return
	}
	_ = c.SetDeadline(wc.start.Add(limits.handshake))
	conn, chans, reqs, err := ssh.NewServerConn(wc, cfg)
	pending.remove(wc)
	if err != nil {
		c.Close()
		s.log.Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer authenticated.Add(-1)
	if authenticated.Add(1) > int64(limits.authenticated) {
		s.log.Warn("ssh: too many connections, closing one", "remote", c.RemoteAddr().String(),
			"key", conn.Permissions.Extensions[extFingerprint], "max", limits.authenticated)
		conn.Close()
		return
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// Global requests are port forwarding (tcpip-forward) and keepalives:
	// refuse them all, which answers keepalives just as well.
	go ssh.DiscardRequests(reqs)

	var sessions sync.WaitGroup
	active := &sessionCount{}
	active.idleSince(time.Now())
	go s.watchdog(ctx, conn, active, limits)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			// direct-tcpip, x11, auth-agent: no forwarding of any kind.
			_ = nc.Reject(ssh.Prohibited, "only session channels with exec requests are allowed")
			continue
		}
		if !active.acquire(limits.sessions) {
			_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d sessions per connection", limits.sessions))
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			defer active.release()
			s.handleSession(ctx, conn, nc)
		}()
	}
	cancel()
	sessions.Wait()
}

// watchdog closes an authenticated connection that stays without a session
// for limits.idle, and one whose client stops answering keepalives.
func (s *sshServer) watchdog(ctx context.Context, conn *ssh.ServerConn, active *sessionCount, limits sshLimits) {
	tick := time.NewTicker(min(limits.keepalive, limits.idle))
	defer tick.Stop()
	var outstanding atomic.Bool
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if n, since := active.state(); n == 0 && now.Sub(since) >= limits.idle {
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

// sessionCount counts a connection's running sessions and remembers since when it has none.
type sessionCount struct {
	mu    sync.Mutex
	n     int
	since time.Time
}

func (c *sessionCount) acquire(max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= max {
		return false
	}
	c.n++
	return true
}

func (c *sessionCount) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n--
	if c.n == 0 {
		c.since = time.Now()
	}
}

func (c *sessionCount) idleSince(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.since = t
}

func (c *sessionCount) state() (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.since
}

// watchedConn notes whether the client has sent anything yet.
type watchedConn struct {
	net.Conn
	start time.Time
	heard atomic.Bool
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.heard.Load() {
		c.heard.Store(true)
	}
	return n, err
}

// pendingConns are the connections still in their handshake.
type pendingConns struct {
	mu    sync.Mutex
	max   int
	conns map[*watchedConn]bool
}

// add admits c, closing another pending connection if the cap is reached:
// the oldest that has sent nothing, else the oldest.
func (p *pendingConns) add(c *watchedConn) {
	p.mu.Lock()
	var victim *watchedConn
	if len(p.conns) >= p.max {
		var oldestSilent, oldest *watchedConn
		for pc := range p.conns {
			if oldest == nil || pc.start.Before(oldest.start) {
				oldest = pc
			}
			if !pc.heard.Load() && (oldestSilent == nil || pc.start.Before(oldestSilent.start)) {
				oldestSilent = pc
			}
		}
		victim = oldestSilent
		if victim == nil {
			victim = oldest
		}
		delete(p.conns, victim)
	}
	p.conns[c] = true
	p.mu.Unlock()
	if victim != nil {
		victim.Close() // its handshake fails and its goroutine ends
	}
}

func (p *pendingConns) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *pendingConns) remove(c *watchedConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
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

// createHostKey writes a new ed25519 key in OpenSSH format, atomically, and returns it.
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
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".hostkey-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
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
func (s *sshServer) handleSession(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel) {
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
				go func() { done <- s.runSession(ctx, conn, ch, cmd.Command, p, winch) }()
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
	req, svc, err := s.authorize(conn, command)
	if err == nil {
		err = s.runOp(ctx, req, svc, ch, pty, winch)
	}
	status, result := exitOf(err)
	var re *requestError
	var es exitStatus
	switch {
	case err == nil, errors.As(err, &es):
		// The op has said what it had to say.
	case errors.As(err, &re):
		fmt.Fprintln(ch.Stderr(), re.Error())
	case ctx.Err() == nil: // else the client is gone and hears nothing
		fmt.Fprintf(ch.Stderr(), "Error: %v\n", err)
	}
	// Only a service that exists is named in metrics and logs, so a client
	// cannot mint label values or fill the log with names of its choosing.
	name := ""
	if svc != nil || (req.service != "" && s.ctl.lookup(req.service) != nil) {
		name = req.service
	}
	s.log.Info("ssh op", "service", name, "key", fingerprint, "remote", conn.RemoteAddr().String(),
		"op", req.op, "status", status, "duration", time.Since(start).Round(time.Millisecond))
	if s.metrics != nil {
		s.metrics.sshSession(name, result)
	}
	return status
}

// authorize parses command and checks that the connection's key may drive
// its service. A service that does not exist and one that does not list the
// key get the same answer, so a key learns nothing of other services.
func (s *sshServer) authorize(conn *ssh.ServerConn, command string) (opRequest, serviceControl, error) {
	req, err := parseCommand(command)
	if err != nil {
		return req, nil, err
	}
	key, err := ssh.ParsePublicKey([]byte(conn.Permissions.Extensions[extKey]))
	if err != nil {
		return req, nil, unauthorized("no usable key")
	}
	svc := s.ctl.lookup(req.service)
	if svc == nil || !svc.authorized(key) {
		return req, nil, unauthorized("key %s is not allowed for service %q", ssh.FingerprintSHA256(key), req.service)
	}
	return req, svc, nil
}

// runOp checks the op's arguments and runs it, inside svc.serialize when it changes the service.
func (s *sshServer) runOp(ctx context.Context, req opRequest, svc serviceControl, ch ssh.Channel, pty *ptyRequest, winch <-chan winSize) error {
	spec := ops[req.op]
	args, err := spec.args.parse(req.op, req.args, req.op == "exec")
	if err != nil {
		return err
	}
	o := &opRun{name: req.service, svc: svc, args: args, stdin: ch, stdout: ch, stderr: ch.Stderr(),
		pty: pty, winch: winch, hostname: s.hostname}
	if !spec.mutating {
		return spec.run(ctx, o)
	}
	return svc.serialize(ctx, func() error { return spec.run(ctx, o) })
}

// exitOf turns an op's outcome into its exit status and its metrics result.
func exitOf(err error) (int, string) {
	var re *requestError
	var es exitStatus
	switch {
	case err == nil:
		return 0, "ok"
	case errors.As(err, &re):
		return re.status(), re.result()
	case errors.As(err, &es):
		return int(es), "error"
	}
	return exitFailure, "error"
}
