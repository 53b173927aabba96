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
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

const ctlUsage = `Usage: pgoctl [-i KEYFILE] [-p PORT] [--known-hosts FILE] HOST:NAME//OP [ARGS...]

Runs OP on the pgo service NAME through pgod's SSH server on HOST, e.g.
    pgoctl -i ~/.ssh/id_web prod1:web//logs -f --tail 20 app
    pgoctl prod1:web//exec -it app sh
    pgoctl prod1:'*//status'        every service, with an operator key

Flags:
    -i KEYFILE          private key file (default: $PGOCTL_ID, else the first of
                        ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa)
    -p PORT             pgod's SSH port (default 2222)
    --known-hosts FILE  OpenSSH known_hosts file with pgod host keys
                        (default ~/.config/pgo/known_hosts); a host not in it
                        is trusted on first use and added, a changed key refused
    -h, --help          print this text

Environment:
    PGOCTL_ID       the private key itself (its PEM text, not a file name), for CI
    PGOCTL_HOSTKEY  pin pgod's host key instead of using known_hosts: an
                    authorized_keys line ("ssh-ed25519 AAAA...") or a fingerprint
                    ("SHA256:..."), several on separate lines during a key change

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
2 usage error; 255 connection, host key or authentication failure.
`

// ctlClient is one pgoctl run; its fields are the outside world, so tests can supply their own.
type ctlClient struct {
	stdin          *os.File
	stdout, stderr io.Writer
	getenv         func(string) string
	home           string
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

func (c *ctlClient) run(args []string) int {
	fs := flag.NewFlagSet("pgoctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("i", "", "")
	port := fs.String("p", "2222", "")
	knownHosts := fs.String("known-hosts", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, ctlUsage)
			return 0
		}
		fmt.Fprintf(c.stderr, "pgoctl: %v\n%s", err, ctlUsage)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(c.stderr, "pgoctl: missing HOST:NAME//OP\n%s", ctlUsage)
		return exitUsage
	}
	if n, err := strconv.Atoi(*port); err != nil || n < 1 || n > 65535 {
		fmt.Fprintf(c.stderr, "pgoctl: -p %q is not a port number\n", *port)
		return exitUsage
	}
	host, command, err := parseTarget(fs.Arg(0), fs.Args()[1:])
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	signer, err := c.signer(*keyFile)
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	if *knownHosts == "" {
		*knownHosts = defaultKnownHosts(c.home)
	}
	hk := &hostKeys{file: *knownHosts, pinned: strings.TrimSpace(c.getenv("PGOCTL_HOSTKEY")), notice: c.stderr}
	return c.session(net.JoinHostPort(host, *port), signer, hk, command)
}

// parseTarget splits "HOST:NAME//OP words" and appends the remaining
// arguments, quoted, so that the server splits them back as they were.
func parseTarget(target string, args []string) (host, command string, err error) {
	left, op, ok := strings.Cut(target, "//")
	if !ok {
		return "", "", fmt.Errorf("%q is not HOST:NAME//OP", target)
	}
	i := strings.LastIndex(left, ":")
	if i <= 0 || i == len(left)-1 {
		return "", "", fmt.Errorf("%q is not HOST:NAME//OP", target)
	}
	host, name := left[:i], left[i+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]") // [::1]
	if strings.TrimSpace(op) == "" {
		return "", "", fmt.Errorf("%q names no op", target)
	}
	command = name + "//" + op
	for _, a := range args {
		command += " " + shellQuote(a)
	}
	return host, command, nil
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

// session connects, runs command and returns the remote exit status.
func (c *ctlClient) session(addr string, signer ssh.Signer, hk *hostKeys, command string) int {
	callback, err := hk.callback()
	if err != nil {
		fmt.Fprintf(c.stderr, "pgoctl: %v\n", err)
		return exitUsage
	}
	cfg := &ssh.ClientConfig{
		User:            "pgo", // pgod ignores it; only the key counts
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: callback,
		Timeout:         10 * time.Second,
	}
	client, err := ssh.Dial("tcp", addr, cfg)
	switch {
	case errors.Is(err, errHostKey):
		return exitSSH // already explained
	case err != nil && strings.Contains(err.Error(), "unable to authenticate"):
		fmt.Fprintf(c.stderr, "pgoctl: %s refused key %s: no service there lists it in its ssh/ directory "+
			"for this address and time (or that commit is not deployed yet; pgod logs the lines it skipped)\n",
			addr, ssh.FingerprintSHA256(signer.PublicKey()))
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
	return c.exitStatus(sess.Wait())
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
