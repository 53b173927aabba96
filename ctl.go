package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

const ctlUsage = `Usage: pgoctl [-i KEYFILE] [-p PORT] [--known-hosts FILE] [--config FILE]
              [--parallel N] [--connect-timeout D] HOSTS:NAME//OP [ARGS...]

Runs OP on the pgo service NAME through pgod's SSH server on each of HOSTS:
one host, or a comma-separated list of hosts and @groups, e.g.
    pgoctl -i ~/.ssh/id_web prod1:web//logs -f --tail 20 app
    pgoctl prod1:web//exec -it app sh
    pgoctl prod1:'*//status'        every service, with an operator key
    pgoctl web1,web2:web//status    several hosts at once
    pgoctl @prod:web//git pull      the hosts of group prod
With several hosts (a list or a group) each output line starts with its
host's name ("web1: "), up to N hosts run at once, exec -i/-t is refused,
and a host that cannot be reached is reported without holding up the rest.

Flags:
    -i KEYFILE          private key file (default: $PGOCTL_ID, else the first of
                        ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa)
    -p PORT             pgod's SSH port (default 2222)
    --known-hosts FILE  OpenSSH known_hosts file with pgod host keys
                        (default ~/.config/pgo/known_hosts); a host not in it
                        is trusted on first use and added, a changed key refused
    --config FILE       client config with hosts and groups (default
                        $PGOCTL_CONFIG, else ~/.config/pgo/pgoctl.toml, which
                        may be missing)
    --parallel N        hosts at once (default 8; 1 goes host by host, in order)
    --connect-timeout D connecting and the SSH handshake, per host, and how long
                        a keepalive may go unanswered later (default 10s)
    -h, --help          print this text

Client config (TOML):
    [[hosts]]
    name = "web1"
    address = "10.0.0.11"    # host or host:port; default: the name, port -p
    [[groups]]
    name = "prod"
    hosts = ["web1", "web2", "@staging"]   # host names and other @groups
A host named on the command line that has a [[hosts]] entry is reached at
its address.

Environment:
    PGOCTL_ID       the private key itself (its PEM text, not a file name), for CI
    PGOCTL_HOSTKEY  pin pgod's host key instead of using known_hosts: an
                    authorized_keys line ("ssh-ed25519 AAAA...") or a fingerprint
                    ("SHA256:..."), several on separate lines during a key change;
                    one host only (several hosts: their keys in --known-hosts)
    PGOCTL_CONFIG   the client config, when --config is not given

Ops: up, down, stop, start, restart, ps, pull, logs, exec, check (alias load),
git pull, git hash, status, history [N], diff, freeze [REASON], unfreeze,
rollback COMMIT, recipient (the host key line secrets.env.age is encrypted
to), ping. A key under ssh/ro/ may run only ping, recipient, ps, logs,
status, history, diff, check and git hash.

Exit status: the op's own; for ops that deploy (git pull, up, restart,
rollback) 0 only when what runs is healthy, 65 rejected by the policy (or
not signed as signed_commits asks), 70 failed, 71 unhealthy (rolled back),
124 timeout, 78 frozen (git pull judged the head, deployed nothing); 64 bad
request, 69 not found, 75 busy (try again), 77 unauthorized (sent by pgod);
2 usage error; 255 connection, host key or authentication failure. With
several hosts: the highest of the hosts' statuses, so 0 only when all gave
0, and a last line on stderr names the hosts that failed.
`

// ctlClient is one pgoctl run; its fields are the outside world, so tests can supply their own.
type ctlClient struct {
	stdin          *os.File
	stdout, stderr io.Writer
	getenv         func(string) string
	home           string

	fanned bool // one host's client in a fan-out: its output is prefixed by the host's name
}

// runCtl is pgoctl: it runs one op on a service over SSH and returns its exit status.
func runCtl(args []string, stdout, stderr io.Writer) int {
	home, _ := os.UserHomeDir()
	c := &ctlClient{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, home: home}
	return c.run(args)
}

// Exit statuses of pgoctl's own failures.
const (
	exitUsage = 2
	exitSSH   = 255 // as ssh(1)
)

// ctlOptions are pgoctl's flags and arguments.
type ctlOptions struct {
	keyFile, port, knownHosts, config string
	parallel                          int
	connectTimeout                    time.Duration
	target                            string
	args                              []string
}

func (c *ctlClient) run(args []string) int {
	opts, status, ok := c.parseFlags(args)
	if !ok {
		return status
	}
	words, command, err := parseTarget(opts.target, opts.args)
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	cfg, err := c.loadConfig(opts.config)
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	targets, err := cfg.resolve(words, opts.port)
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	pinned := strings.TrimSpace(c.getenv("PGOCTL_HOSTKEY"))
	fanOut := len(words) > 1 || strings.HasPrefix(words[0], "@")
	if fanOut {
		if err := fanOutProblem(command, pinned, len(targets)); err != nil {
			fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
			return exitUsage
		}
	}
	signer, err := c.signer(opts.keyFile)
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	hk := &hostKeys{file: opts.knownHosts, pinned: pinned, notice: c.stderr, fileLock: &sync.Mutex{}}
	dial := ctlDial{signer: signer, hostKeys: hk, timeout: opts.connectTimeout}
	if !fanOut {
		return c.session(dial, targets[0].addr, command)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	return c.fanOut(targets, opts.parallel, sigs, func(hc *ctlClient, t ctlTarget) int {
		hostKeys := *hk // the same file and lock, the notices prefixed
		hostKeys.notice = hc.stderr
		own := dial
		own.hostKeys = &hostKeys
		return hc.session(own, t.addr, command)
	})
}

// parseFlags parses the command line; when it is not ok, pgoctl exits with status.
func (c *ctlClient) parseFlags(args []string) (opts *ctlOptions, status int, ok bool) {
	opts = &ctlOptions{}
	fs := flag.NewFlagSet("pgoctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&opts.keyFile, "i", "", "")
	fs.StringVar(&opts.port, "p", "2222", "")
	fs.StringVar(&opts.knownHosts, "known-hosts", "", "")
	fs.StringVar(&opts.config, "config", "", "")
	fs.IntVar(&opts.parallel, "parallel", 8, "")
	fs.DurationVar(&opts.connectTimeout, "connect-timeout", 10*time.Second, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, ctlUsage)
			return nil, 0, false
		}
		fmt.Fprintf(c.stderr, "pgoctl: %v\n%s", err, ctlUsage)
		return nil, exitUsage, false
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(c.stderr, "pgoctl: missing HOSTS:NAME//OP\n%s", ctlUsage)
		return nil, exitUsage, false
	}
	if n, err := strconv.Atoi(opts.port); err != nil || n < 1 || n > 65535 {
		fmt.Fprintf(c.stderr, "pgoctl: -p %q is not a port number\n", opts.port)
		return nil, exitUsage, false
	}
	if opts.parallel < 1 {
		fmt.Fprintf(c.stderr, "pgoctl: --parallel %d: give at least 1 (hosts run at once)\n", opts.parallel)
		return nil, exitUsage, false
	}
	if opts.connectTimeout <= 0 {
		fmt.Fprintf(c.stderr, "pgoctl: --connect-timeout %s: give a positive duration, as in 10s\n", opts.connectTimeout)
		return nil, exitUsage, false
	}
	if opts.knownHosts == "" {
		opts.knownHosts = defaultKnownHosts(c.home)
	}
	opts.target, opts.args = fs.Arg(0), fs.Args()[1:]
	return opts, 0, true
}

// loadConfig reads the client config: --config, else $PGOCTL_CONFIG, else
// ~/.config/pgo/pgoctl.toml, which alone may be missing.
func (c *ctlClient) loadConfig(flagValue string) (*ctlConfig, error) {
	path, required := flagValue, true
	if path == "" {
		path = c.getenv("PGOCTL_CONFIG")
	}
	if path == "" {
		path, required = defaultCtlConfig(c.home), false
	}
	return loadCtlConfig(path, required)
}

// parseTarget splits "HOSTS:NAME//OP words", HOSTS being a comma-separated
// list of host names and @groups, and appends the remaining arguments,
// quoted, so that the server splits them back as they were.
func parseTarget(target string, args []string) (hosts []string, command string, err error) {
	left, op, ok := strings.Cut(target, "//")
	if !ok {
		return nil, "", fmt.Errorf("%q is not HOSTS:NAME//OP", target)
	}
	i := strings.LastIndex(left, ":")
	if i <= 0 || i == len(left)-1 {
		return nil, "", fmt.Errorf("%q is not HOSTS:NAME//OP", target)
	}
	for _, host := range strings.Split(left[:i], ",") {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]") // [::1]
		if host == "" || host == "@" {
			return nil, "", fmt.Errorf("%q: an empty host name in %q (write hosts as web1,web2 or @group)", target, left[:i])
		}
		hosts = append(hosts, host)
	}
	if strings.TrimSpace(op) == "" {
		return nil, "", fmt.Errorf("%q names no op", target)
	}
	command = left[i+1:] + "//" + op
	for _, a := range args {
		command += " " + shellQuote(a)
	}
	return hosts, command, nil
}

// signer loads the private key: -i, else PGOCTL_ID, else the usual files in ~/.ssh.
func (c *ctlClient) signer(keyFile string) (ssh.Signer, error) {
	if keyFile != "" {
		data, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		return parseClientKey(data, keyFile)
	}
	if id := c.getenv("PGOCTL_ID"); id != "" {
		return parseClientKey([]byte(id), "PGOCTL_ID")
	}
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		path := filepath.Join(c.home, ".ssh", name)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		return parseClientKey(data, path)
	}
	return nil, errors.New("no key: give -i KEYFILE or set PGOCTL_ID, or create ~/.ssh/id_ed25519")
}

// parseClientKey parses a private key, saying where it came from and never what it holds.
func parseClientKey(data []byte, source string) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, fmt.Errorf("key %s is encrypted with a passphrase; pgoctl needs a key without one "+
			"(make one for pgo with: ssh-keygen -t ed25519 -N '' -f ~/.ssh/id_pgo)", source)
	case err != nil && isPublicKey(data):
		private := strings.TrimSuffix(source, ".pub")
		if private == source {
			private = "the file without .pub"
		}
		return nil, fmt.Errorf("key %s is a public key; give the private one (%s) to -i", source, private)
	case err != nil:
		return nil, fmt.Errorf("key %s: %v", source, err)
	}
	return signer, nil
}

// isPublicKey reports whether data is an OpenSSH public key line, which
// people give to -i because ssh-keygen printed its name last.
func isPublicKey(data []byte) bool {
	_, _, _, _, err := ssh.ParseAuthorizedKey(data)
	return err == nil
}

// ctlDial is how pgoctl reaches a host: the key it logs in with, how the
// host's key is checked and how long connecting may take.
type ctlDial struct {
	signer   ssh.Signer
	hostKeys *hostKeys
	timeout  time.Duration // for the TCP connection and the SSH handshake together
}

// connect dials addr and completes the SSH handshake within d.timeout: a
// host that accepts the connection and then says nothing must not hang pgoctl.
func (d ctlDial) connect(addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	deadline := time.Now().Add(d.timeout)
	conn, err := net.DialTimeout("tcp", addr, d.timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(deadline)
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("no SSH handshake within %s (is pgod listening there?)", d.timeout)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// session connects to addr, runs command and returns the remote exit status.
func (c *ctlClient) session(d ctlDial, addr, command string) int {
	callback, err := d.hostKeys.callback()
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	cfg := &ssh.ClientConfig{
		User:            "pgo", // pgod ignores it; only the key counts
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(d.signer)},
		HostKeyCallback: callback,
	}
	client, err := d.connect(addr, cfg)
	switch {
	case errors.Is(err, errHostKey):
		return exitSSH // already explained
	case err != nil && strings.Contains(err.Error(), "unable to authenticate"):
		fmt.Fprintf(c.stderr, "pgoctl: %s refused key %s: no service there lists it in its ssh/ directory "+
			"for this address and time (or that commit is not deployed yet; pgod logs the lines it skipped)\n",
			addr, ssh.FingerprintSHA256(d.signer.PublicKey()))
		return exitSSH
	case err != nil && c.fanned:
		fmt.Fprintf(c.stderr, "cannot connect: %s: %v\n", addr, err)
		return exitSSH
	case err != nil:
		fmt.Fprintf(c.stderr, "pgoctl: %s: %v\n", addr, err)
		return exitSSH
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %s: %v\n", addr, err)
		return exitSSH
	}
	defer sess.Close()
	sess.Stdout, sess.Stderr = c.stdout, c.stderr

	stdin, tty := wantsStdin(command)
	if tty && c.stdin != nil && isTerminal(c.stdin) {
		restore, err := c.startPTY(sess)
		if err != nil {
			fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
			return exitSSH
		}
		defer restore()
	}
	if stdin && c.stdin != nil {
		in, err := sess.StdinPipe()
		if err != nil {
			fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
			return exitSSH
		}
		go func() {
			_, _ = io.Copy(in, c.stdin)
			in.Close()
		}()
	}
	if err := sess.Start(command); err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %s: %v\n", addr, err)
		return exitSSH
	}
	stop := c.forwardSignals(sess, client)
	defer stop()
	lost, stopKeepAlive := keepAlive(client, d.timeout)
	err = sess.Wait()
	stopKeepAlive()
	if lost() {
		fmt.Fprintf(c.stderr, "pgoctl: %s: no answer to a keepalive within %s; gave the connection up (host or network down?)\n", addr, d.timeout)
		return exitSSH
	}
	return c.exitStatus(err)
}

// keepAlive asks the host for an answer every interval, and closes client
// when one does not come within the next interval: a host that goes away
// in the middle of an op (logs -f) ends pgoctl, instead of holding it, and
// a fan-out's other hosts with it, until TCP gives up. lost reports whether
// it did.
func keepAlive(client *ssh.Client, interval time.Duration) (lost func() bool, stop func()) {
	var gone atomic.Bool
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			answered := make(chan error, 1)
			go func() {
				// pgod refuses requests it does not know; a refusal is an answer.
				_, _, err := client.SendRequest("keepalive@openssh.com", true, nil)
				answered <- err
			}()
			select {
			case <-done:
				return
			case err := <-answered:
				if err != nil {
					return // the connection is closed already
				}
			case <-time.After(interval):
				gone.Store(true)
				client.Close()
				return
			}
		}
	}()
	var once sync.Once
	return gone.Load, func() { once.Do(func() { close(done) }) }
}

// wantsStdin tells whether the command is an exec -i (which gets our stdin)
// and whether it also asks for a terminal (exec -it).
func wantsStdin(command string) (stdin, tty bool) {
	req, err := parseCommand(command)
	if err != nil || req.op != "exec" {
		return false, false
	}
	args, err := ops["exec"].args.parse("exec", req.args, true)
	if err != nil {
		return false, false
	}
	return args.has("-i"), args.has("-i") && args.has("-t")
}

// startPTY asks for a pty the size of our terminal, puts the terminal in raw
// mode and passes on its size changes. It returns the function that undoes it.
func (c *ctlClient) startPTY(sess *ssh.Session) (func(), error) {
	ws, err := getWinSize(c.stdin)
	if err != nil || ws.cols == 0 {
		ws = winSize{cols: 80, rows: 24}
	}
	term := c.getenv("TERM")
	if term == "" {
		term = "xterm"
	}
	if err := sess.RequestPty(term, int(ws.rows), int(ws.cols), ssh.TerminalModes{}); err != nil {
		return nil, fmt.Errorf("pty request: %w", err)
	}
	restore, err := makeRaw(c.stdin)
	if err != nil {
		return nil, fmt.Errorf("raw mode: %w", err)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				if ws, err := getWinSize(c.stdin); err == nil {
					_ = sess.WindowChange(int(ws.rows), int(ws.cols))
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		restore()
	}, nil
}

// forwardSignals passes ^C, SIGTERM and SIGHUP to the op, which pgod then
// ends; a second one closes the connection, which ends it as well.
func (c *ctlClient) forwardSignals(sess *ssh.Session, client *ssh.Client) (stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		names := map[os.Signal]ssh.Signal{syscall.SIGINT: ssh.SIGINT, syscall.SIGTERM: ssh.SIGTERM, syscall.SIGHUP: ssh.SIGHUP}
		sent := false
		for {
			select {
			case sig := <-sigs:
				if sent {
					client.Close()
					return
				}
				sent = true
				_ = sess.Signal(names[sig])
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// exitStatus turns the end of a session into pgoctl's exit status.
func (c *ctlClient) exitStatus(err error) int {
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Signal() != "":
		fmt.Fprintf(c.stderr, "pgoctl: remote op killed by signal %s\n", ee.Signal())
		if n, ok := signalNumbers[ee.Signal()]; ok {
			return 128 + int(n)
		}
		return exitSSH
	case errors.As(err, &ee):
		return ee.ExitStatus()
	case errors.As(err, &missing):
		fmt.Fprintln(c.stderr, "pgoctl: the connection ended without an exit status")
		return exitSSH
	}
	fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
	return exitSSH
}
