package main

import (
	"bytes"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// target is one way of doing an authenticated no-op over SSH.
type target struct {
	name   string
	argv   []string // a client process per call
	expect string   // in stdout of a good run
	// Or, without a process: the Go SSH client in the driver, which
	// separates the protocol and server cost from the client's start-up.
	inProcess *goClient
}

// goClient is golang.org/x/crypto/ssh dialling addr and running command.
type goClient struct {
	addr, command string
	config        *ssh.ClientConfig
}

// latencies of one target, in milliseconds.
type latencies struct {
	sequential, concurrent []float64
	failures               int
	seqFailed, concFailed  int // failures of sequential and of concurrent calls
	firstFailure           string
}

// controlPlane times pgoctl's ping against pgod and, as the reference point,
// OpenSSH's client against Debian's sshd running a forced "true", same key
// type (ed25519) for user and host keys. Each call spawns its client, so both
// sides pay for a process start. With d nil only the reference is measured.
func (b *bench) controlPlane(d *daemon) {
	sshdAddr, stop, err := b.startSSHD()
	if err != nil {
		b.fail("OpenSSH reference", err)
	}
	if stop != nil {
		defer stop()
	}
	var targets []target
	if d != nil {
		_, port, _ := net.SplitHostPort(d.sshAddr)
		svc := b.names[0] + "//ping"
		targets = append(targets,
			target{name: "pgoctl -> pgod ping", argv: []string{b.pgoctl, "-p", port, "--known-hosts", filepath.Join(b.o.work, "known_hosts.pgoctl"), "-i", b.key, "127.0.0.1:" + svc}, expect: "pong"},
			target{name: "ssh -> pgod ping", argv: b.sshArgv(d.sshAddr, "known_hosts.pgod", svc), expect: "pong"},
		)
	}
	if err == nil {
		targets = append(targets, target{name: "ssh -> sshd forced true", argv: b.sshArgv(sshdAddr, "known_hosts.sshd", "true")})
	}
	// The in-process clients read the host keys the ssh warm-ups record, so
	// those run first.
	for _, t := range targets {
		callOnce(t)
	}
	if d != nil {
		if g, err := b.goTarget("Go client in-process -> pgod ping", d.sshAddr, "known_hosts.pgod", b.names[0]+"//ping", "pong"); err == nil {
			targets = append(targets, g)
		} else {
			b.fail("Go client -> pgod", err)
		}
	}
	if sshdAddr != "" {
		if g, err := b.goTarget("Go client in-process -> sshd true", sshdAddr, "known_hosts.sshd", "true", ""); err == nil {
			targets = append(targets, g)
		} else {
			b.fail("Go client -> sshd", err)
		}
	}
	results := b.timeTargets(targets)
	for _, t := range targets {
		if l, ok := results[t.name]; ok {
			b.latencyRows(t.name, l)
		}
	}
	b.ratioRows(results)
}

// sshKex is pinned for the OpenSSH client: Debian's default,
// sntrup761x25519, is a post-quantum exchange golang.org/x/crypto/ssh does not
// offer, which would make the reference slower for a reason that is not the
// server's. curve25519-sha256 is what ssh and pgod agree on anyway.
const sshKex = "curve25519-sha256"

func (b *bench) sshArgv(addr, knownHosts, command string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"ssh", "-F", "/dev/null", "-p", port, "-i", b.key,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
		"-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "KexAlgorithms=" + sshKex,
		"-o", "StrictHostKeyChecking=accept-new",
		"-o", "UserKnownHostsFile=" + filepath.Join(b.o.work, knownHosts),
		"root@" + host, command}
}

// timeTargets warms each target up (the first call also records the host
// key), then times -pings calls one after another and -per-client rounds of
// -clients calls at once. The targets take turns call by call and round by
// round, so that a change in the machine's load hits them alike.
func (b *bench) timeTargets(targets []target) map[string]latencies {
	var live []target
	for _, t := range targets {
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			_, err = callOnce(t)
		}
		if err != nil {
			b.fail(t.name, fmt.Errorf("warm-up: %w", err))
			continue
		}
		live = append(live, t)
	}
	results := map[string]*latencies{}
	for _, t := range live {
		results[t.name] = &latencies{}
	}
	for i := 0; i < b.o.pings; i++ {
		for _, t := range live {
			ms, err := callOnce(t)
			results[t.name].add(&results[t.name].sequential, ms, err)
		}
	}
	for r := 0; r < b.o.perClient; r++ {
		for _, t := range live {
			l := results[t.name]
			var mu sync.Mutex
			var wg sync.WaitGroup
			for c := 0; c < b.o.clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ms, err := callOnce(t)
					mu.Lock()
					l.add(&l.concurrent, ms, err)
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
	}
	out := map[string]latencies{}
	for _, t := range live {
		l := results[t.name]
		if l.failures > 0 {
			b.note("%s: %d of %d calls failed, first: %s", t.name, l.failures, b.o.pings+b.o.clients*b.o.perClient, l.firstFailure)
		}
		if len(l.sequential) == 0 || len(l.concurrent) == 0 {
			b.fail(t.name, fmt.Errorf("every call failed: %s", l.firstFailure))
			continue
		}
		out[t.name] = *l
	}
	return out
}

func (l *latencies) add(to *[]float64, ms float64, err error) {
	if err != nil {
		l.failures++
		if to == &l.sequential {
			l.seqFailed++
		} else {
			l.concFailed++
		}
		if l.firstFailure == "" {
			l.firstFailure = err.Error()
		}
		return
	}
	*to = append(*to, ms)
}

// callOnce runs the client once and returns its wall time in milliseconds.
func callOnce(t target) (float64, error) {
	if t.inProcess != nil {
		return t.inProcess.call(t.expect)
	}
	cmd := exec.Command(t.argv[0], t.argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	ms := time.Since(start).Seconds() * 1000
	if err != nil {
		return 0, fmt.Errorf("%v after %.0f ms: %q", err, ms, strings.TrimSpace(stderr.String()))
	}
	if !strings.Contains(stdout.String(), t.expect) {
		return 0, fmt.Errorf("got %q, want %q", stdout.String(), t.expect)
	}
	return ms, nil
}

func (g *goClient) call(expect string) (float64, error) {
	start := time.Now()
	client, err := ssh.Dial("tcp", g.addr, g.config)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return 0, err
	}
	out, err := session.Output(g.command)
	ms := time.Since(start).Seconds() * 1000
	if err != nil {
		return 0, fmt.Errorf("%s: %w", g.command, err)
	}
	if !strings.Contains(string(out), expect) {
		return 0, fmt.Errorf("got %q, want %q", out, expect)
	}
	return ms, nil
}

// goTarget is the in-process client for a server whose host key the
// OpenSSH client's warm-up wrote to knownHostsFile.
func (b *bench) goTarget(name, addr, knownHostsFile, command, expect string) (target, error) {
	key, err := os.ReadFile(b.key)
	if err != nil {
		return target{}, err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return target{}, err
	}
	hostKeys, err := knownhosts.New(filepath.Join(b.o.work, knownHostsFile))
	if err != nil {
		return target{}, err
	}
	config := &ssh.ClientConfig{
		User:              "root",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           30 * time.Second,
	}
	return target{name: name, expect: expect, inProcess: &goClient{addr: addr, command: command, config: config}}, nil
}

// latencyRows adds a target's percentiles; pgoctl's medians must stay at or
// below today's (quotedPingSeq, quotedPingConc).
func (b *bench) latencyRows(name string, l latencies) {
	seq, conc := fmt.Sprintf("n=%d", len(l.sequential)), fmt.Sprintf("%d clients, n=%d", b.o.clients, len(l.concurrent))
	// A call that failed has no time; the percentiles are of the others, and
	// a target is not met while calls fail.
	if n := l.seqFailed; n > 0 {
		seq += fmt.Sprintf(", %d failed", n)
	}
	if n := l.concFailed; n > 0 {
		conc += fmt.Sprintf(", %d failed", n)
	}
	p50seq := valueRow(name+": p50 sequential", "ms", percentile(l.sequential, 50), seq)
	p50conc := valueRow(name+": p50 concurrent", "ms", percentile(l.concurrent, 50), conc)
	if strings.HasPrefix(name, "pgoctl") {
		p50seq, p50conc = p50seq.within(quotedPingSeq), p50conc.within(quotedPingConc)
	}
	p50seq.failures, p50conc.failures = l.seqFailed, l.concFailed
	b.add(
		p50seq,
		valueRow(name+": p99 sequential", "ms", percentile(l.sequential, 99), seq),
		p50conc,
		valueRow(name+": p99 concurrent", "ms", percentile(l.concurrent, 99), conc),
	)
}

// ratioRows compare pgod's SSH path with OpenSSH's; the aim is within 1.5x.
func (b *bench) ratioRows(r map[string]latencies) {
	base, ok := r["ssh -> sshd forced true"]
	if !ok {
		return
	}
	for _, name := range []string{"pgoctl -> pgod ping", "ssh -> pgod ping"} {
		l, ok := r[name]
		if !ok {
			continue
		}
		for _, p := range []float64{50, 99} {
			seq := ratioValue(fmt.Sprintf("%s / OpenSSH sshd: p%.0f sequential", name, p), percentile(l.sequential, p)/percentile(base.sequential, p), sshWithin)
			conc := ratioValue(fmt.Sprintf("%s / OpenSSH sshd: p%.0f concurrent", name, p), percentile(l.concurrent, p)/percentile(base.concurrent, p), sshWithin)
			seq.failures, conc.failures = l.seqFailed, l.concFailed
			if l.concFailed > 0 {
				conc.spread = fmt.Sprintf("%d of pgod's calls failed", l.concFailed)
			}
			b.add(seq, conc)
		}
	}
	// The same client against both servers: the servers' cost alone.
	goPgod, ok1 := r["Go client in-process -> pgod ping"]
	goSSHD, ok2 := r["Go client in-process -> sshd true"]
	if ok1 && ok2 {
		b.add(
			ratioValue("Go client: pgod / sshd, p50 sequential", median(goPgod.sequential)/median(goSSHD.sequential), sshWithin),
			ratioValue("Go client: pgod / sshd, p50 concurrent", median(goPgod.concurrent)/median(goSSHD.concurrent), sshWithin),
		)
	}
}

// startSSHD runs Debian's sshd on a free loopback port with its own config,
// host key and an authorized_keys whose only entry forces "true".
func (b *bench) startSSHD() (addr string, stop func(), err error) {
	dir := filepath.Join(b.o.work, "sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	// sshd refuses to start without its privilege separation directory,
	// which systemd normally creates.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return "", nil, err
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if _, err := runCmd("", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey); err != nil {
		return "", nil, err
	}
	pub, err := os.ReadFile(b.key + ".pub")
	if err != nil {
		return "", nil, err
	}
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, []byte(`command="true",restrict `+string(pub)), 0o600); err != nil {
		return "", nil, err
	}
	addr = freeAddr()
	host, port, _ := net.SplitHostPort(addr)
	config := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`# OpenSSH reference for the pgo bench
Port %s
ListenAddress %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
HostKeyAlgorithms ssh-ed25519
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 128
MaxSessions 64
# bash, root's shell, sources ~/.bashrc when started by sshd at SHLVL 0;
# a slow .bashrc (pyenv, ...) would be timed as OpenSSH's cost.
SetEnv SHLVL=1
`, port, host, hostKey, filepath.Join(dir, "sshd.pid"), keys)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		return "", nil, err
	}
	if _, err := runCmd("", nil, "/usr/sbin/sshd", "-t", "-f", config); err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", nil, err
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	}
	if err := waitListening(addr, 10*time.Second); err != nil {
		stop()
		return "", nil, fmt.Errorf("sshd: %w", err)
	}
	log.Printf("OpenSSH reference sshd on %s", addr)
	return addr, stop, nil
}

// waitListening polls until something accepts connections on addr.
func waitListening(addr string, deadline time.Duration) error {
	end := time.Now().Add(deadline)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, deadline, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
