package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestWorstExit(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  int
	}{
		{nil, 0}, {[]int{0, 0}, 0}, {[]int{0, 1, 0}, 1}, {[]int{69, 0, 1}, 69}, {[]int{69, 255, 65}, 255},
	} {
		if got := worstExit(tc.codes); got != tc.want {
			t.Errorf("worstExit(%v) = %d, want %d", tc.codes, got, tc.want)
		}
	}
}

// fakeHosts runs fanOut over hosts named h0, h1, ... with a runHost that
// says its name on stdout and on stderr and exits with codes[i].
func fakeHosts(t *testing.T, codes []int, parallel int, interrupt chan os.Signal, during func(name string)) (stdout, stderr string, status int) {
	t.Helper()
	var targets []ctlTarget
	for i := range codes {
		targets = append(targets, ctlTarget{name: fmt.Sprintf("h%d", i)})
	}
	var out, errOut bytes.Buffer
	c := &ctlClient{stdout: &out, stderr: &errOut}
	status = c.fanOut(targets, parallel, interrupt, func(hc *ctlClient, tg ctlTarget) int {
		fmt.Fprintf(hc.stdout, "out of %s\npartial", tg.name)
		if during != nil {
			during(tg.name)
		}
		fmt.Fprintf(hc.stderr, "err of %s\n", tg.name)
		var i int
		fmt.Sscanf(tg.name, "h%d", &i)
		return codes[i]
	})
	return out.String(), errOut.String(), status
}

func TestFanOut(t *testing.T) {
	// At most parallel at once, and all of them.
	var running, most, ran atomic.Int32
	_, _, status := fakeHosts(t, make([]int, 20), 3, nil, func(string) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		ran.Add(1)
		time.Sleep(time.Millisecond) // a host takes a moment, as a real one does, so that unbounded hosts would overlap
	})
	if status != 0 || ran.Load() != 20 || most.Load() > 3 {
		t.Errorf("parallel 3: status %d, %d ran, at most %d at once", status, ran.Load(), most.Load())
	}

	// --parallel 1 goes host by host, in order; output prefixed, stdout and stderr apart.
	var order []string
	out, errOut, status := fakeHosts(t, []int{0, 69, 0, 1}, 1, nil, func(name string) { order = append(order, name) })
	if strings.Join(order, " ") != "h0 h1 h2 h3" {
		t.Errorf("parallel 1 ran %v", order)
	}
	if want := "h0: out of h0\nh0: partial\nh1: out of h1\nh1: partial\nh2: out of h2\nh2: partial\nh3: out of h3\nh3: partial\n"; out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if want := "h0: err of h0\nh1: err of h1\nh2: err of h2\nh3: err of h3\npgoctl: 2 of 4 hosts failed: h1 (69), h3 (1)\n"; errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
	if status != 69 {
		t.Errorf("status %d, want the worst, 69", status)
	}

	// One host: no summary.
	if _, errOut, status := fakeHosts(t, []int{70}, 8, nil, nil); status != 70 || strings.Contains(errOut, "hosts failed") {
		t.Errorf("one host: status %d, %q", status, errOut)
	}

	// A signal while hosts wait for a slot: those not started are reported and left out.
	interrupt := make(chan os.Signal, 1)
	_, errOut, status = fakeHosts(t, []int{0, 0, 0}, 1, interrupt, func(name string) {
		if name == "h0" {
			interrupt <- syscall.SIGINT
		}
	})
	if status != 130 || !strings.Contains(errOut, "h1: pgoctl: not started: interrupt\nh2: pgoctl: not started: interrupt\n") ||
		!strings.HasSuffix(errOut, "pgoctl: 2 of 3 hosts failed: h1 (130), h2 (130)\n") {
		t.Errorf("interrupted: status %d, stderr:\n%s", status, errOut)
	}
}

// silentHost accepts connections and never says a word, as a host whose
// pgod hangs; it returns the address.
func silentHost(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestCtlFanOutOverSSH(t *testing.T) {
	dir := t.TempDir()
	key, keyFile, _ := newKeyFile(t, dir, "id")
	ctl1 := newFakeCtl(newFakeService("shop", key.PublicKey()))
	ctl2 := newFakeCtl(newFakeService("shop", key.PublicKey()), newFakeService("db", key.PublicKey()))
	web1, web2 := startSSH(t, ctl1, nil), startSSH(t, ctl2, nil)
	closed := freeLoopbackAddr(t)
	config := writeFile(t, dir, "pgoctl.toml", fmt.Sprintf(`
[[hosts]]
name = "web1"
address = %q
[[hosts]]
name = "web2"
address = %q
[[hosts]]
name = "silent"
address = %q
[[hosts]]
name = "gone"
address = %q
[[groups]]
name = "prod"
hosts = ["web1", "web2"]
[[groups]]
name = "all"
hosts = ["@prod", "silent", "gone", "web1"]
[[groups]]
name = "one"
hosts = ["web2"]
`, web1.addr, web2.addr, silentHost(t), closed))
	known := filepath.Join(dir, "known_hosts")
	r := &ctlRun{home: dir}
	ctl := func(args ...string) (string, string, int) {
		return r.run(append([]string{"-i", keyFile, "--config", config, "--known-hosts", known, "--connect-timeout", "1s"}, args...)...)
	}

	// Both hosts answer, each trusted on first use with a prefixed notice.
	out, errOut, status := ctl("web1,web2,web1:shop//ping")
	if status != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "web1: pong! - ") || !strings.Contains(out, "web2: pong! - ") {
		t.Errorf("web1,web2: status %d, stdout:\n%s\nstderr:\n%s", status, out, errOut)
	}
	for _, ts := range []struct {
		name string
		srv  *testServer
	}{{"web1", web1}, {"web2", web2}} {
		if want := ts.name + ": pgoctl: trusting [127.0.0.1]:" + port(t, ts.srv.addr) + " on first use"; !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	data, _ := os.ReadFile(known)
	if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 2 {
		t.Errorf("known_hosts holds %d lines, want one per host:\n%s", len(lines), data)
	}

	// The worst status wins: db is only on web2, and web1 does not let the key in for it.
	out, errOut, status = ctl("@prod:db//ps")
	if status != exitUnauthorized || !strings.Contains(out, "web2: ") || !strings.Contains(errOut, "web1: Unauthorized: ") ||
		!strings.HasSuffix(errOut, "pgoctl: 1 of 2 hosts failed: web1 (77)\n") {
		t.Errorf("@prod db//ps: status %d, stdout:\n%s\nstderr:\n%s", status, out, errOut)
	}

	// A silent host and a closed port are reported within the timeout; the others answer.
	start := time.Now()
	out, errOut, status = ctl("@all:shop//ping")
	if status != exitSSH || !strings.Contains(out, "web1: pong!") || !strings.Contains(out, "web2: pong!") {
		t.Errorf("@all: status %d, stdout:\n%s", status, out)
	}
	for _, want := range []string{"silent: cannot connect: " + "", "no SSH handshake within 1s", "gone: cannot connect: ", "connection refused",
		"pgoctl: 2 of 4 hosts failed: silent (255), gone (255)\n"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("@all: stderr lacks %q:\n%s", want, errOut)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("@all took %s with a connect timeout of 1s", took)
	}

	// A changed key for one host is refused for that host only.
	os.WriteFile(known, []byte(knownhosts.Line([]string{web1.addr}, web1.hostKey.PublicKey())+"\n"+
		knownhosts.Line([]string{web2.addr}, newTestKey(t).PublicKey())+"\n"), 0o600)
	out, errOut, status = ctl("@prod:shop//ping")
	if status != exitSSH || !strings.Contains(out, "web1: pong!") || strings.Contains(out, "web2:") ||
		!strings.Contains(errOut, "web2: pgoctl: @@@ HOST KEY MISMATCH") || strings.Contains(errOut, "web1: pgoctl: @@@") {
		t.Errorf("changed key of web2: status %d, stdout:\n%s\nstderr:\n%s", status, out, errOut)
	}

	// One plain host uses its [[hosts]] address, unprefixed; a group of one is a fan-out.
	os.Remove(known)
	out, _, status = ctl("web2:shop//ping")
	if status != 0 || !strings.HasPrefix(out, "pong! - ") {
		t.Errorf("web2 alone: status %d, %q", status, out)
	}
	if out, _, status := ctl("@one:shop//ping"); status != 0 || !strings.HasPrefix(out, "web2: pong! - ") {
		t.Errorf("@one: status %d, %q", status, out)
	}

	// What cannot go to several hosts.
	for _, args := range [][]string{{"@prod:shop//exec", "-it", "app", "sh"}, {"web1,web2:shop//exec", "-i", "app", "cat"}, {"@one:shop//exec", "-t", "app", "sh"}} {
		if _, errOut, status := ctl(args...); status != exitUsage || !strings.Contains(errOut, "name one host") {
			t.Errorf("%q: status %d, %q", args, status, errOut)
		}
	}
	pin := ssh.FingerprintSHA256(web2.hostKey.PublicKey())
	r.env = map[string]string{"PGOCTL_HOSTKEY": pin}
	if _, errOut, status := ctl("@prod:shop//ping"); status != exitUsage || !strings.Contains(errOut, "PGOCTL_HOSTKEY pins the key of one host and cannot be right for 2") {
		t.Errorf("pinned, two hosts: status %d, %q", status, errOut)
	}
	if out, _, status := ctl("@one:shop//ping"); status != 0 || !strings.HasPrefix(out, "web2: pong!") {
		t.Errorf("pinned, a group of one: status %d, %q", status, out)
	}
	for _, args := range [][]string{{"--parallel", "0", "@prod:shop//ping"}, {"--connect-timeout", "0s", "@prod:shop//ping"}} {
		if _, errOut, status := ctl(args...); status != exitUsage || !strings.HasPrefix(errOut, "pgoctl: "+args[0]) {
			t.Errorf("%q: status %d, %q", args, status, errOut)
		}
	}
}

// freeLoopbackAddr is a loopback address nothing listens on.
func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCtlFanOutLogsFollow: logs -f streams from every host at once, each line
// prefixed as it comes, and a last line without its newline gets one.
func TestCtlFanOutLogsFollow(t *testing.T) {
	dir := t.TempDir()
	key, keyFile, _ := newKeyFile(t, dir, "id")
	release := filepath.Join(dir, "release")
	var addrs []string
	for range 2 {
		svc := newFakeService("shop", key.PublicKey())
		svc.composeScripts["logs"] = `echo "first $*"; while [ ! -e ` + release + ` ]; do sleep 0.05; done; printf 'last, no newline'`
		addrs = append(addrs, startSSH(t, newFakeCtl(svc), nil).addr)
	}
	config := writeFile(t, dir, "pgoctl.toml", fmt.Sprintf("[[hosts]]\nname = \"web1\"\naddress = %q\n[[hosts]]\nname = \"web2\"\naddress = %q\n", addrs[0], addrs[1]))

	pr, pw := io.Pipe()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	errOut := &syncBuffer{}
	c := &ctlClient{stdout: pw, stderr: errOut, home: dir, getenv: func(string) string { return "" }}
	status := make(chan int, 1)
	go func() {
		status <- c.run([]string{"-i", keyFile, "--config", config, "--known-hosts", filepath.Join(dir, "known_hosts"), "web1,web2:shop//logs", "-f", "app"})
		pw.Close()
	}()

	// Both hosts' first lines arrive while the ops still run.
	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < 2 {
		select {
		case l := <-lines:
			seen[l] = true
		case <-deadline:
			t.Fatalf("first lines of logs -f did not arrive while it ran: %v; stderr %q", seen, errOut.String())
		}
	}
	if !seen["web1: first logs --follow -- app"] || !seen["web2: first logs --follow -- app"] {
		t.Errorf("first lines %v", seen)
	}
	os.WriteFile(release, nil, 0o600)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	slices.Sort(rest)
	if want := []string{"web1: last, no newline", "web2: last, no newline"}; !slices.Equal(rest, want) {
		t.Errorf("last lines %q, want %q", rest, want)
	}
	if s := <-status; s != 0 {
		t.Errorf("status %d; stderr %q", s, errOut.String())
	}
}

// freezingProxy forwards TCP to target until freeze, after which it drops
// every byte both ways, as a host whose network went away; it returns its
// address and freeze.
func freezingProxy(t *testing.T, target string) (addr string, freeze func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var frozen atomic.Bool
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				dst.Close()
				return
			}
			if !frozen.Load() {
				dst.Write(buf[:n])
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() { frozen.Store(true) }
}

// TestCtlKeepAliveGivesUpAGoneHost: a host that stops answering while
// logs -f runs is given up once a keepalive goes unanswered, with 255, and
// a fan-out's other host finishes.
func TestCtlKeepAliveGivesUpAGoneHost(t *testing.T) {
	dir := t.TempDir()
	key, keyFile, _ := newKeyFile(t, dir, "id")
	release := filepath.Join(dir, "release")
	var addrs []string
	for range 2 {
		svc := newFakeService("shop", key.PublicKey())
		svc.composeScripts["logs"] = `echo first; while [ ! -e ` + release + ` ]; do sleep 0.05; done; echo last`
		addrs = append(addrs, startSSH(t, newFakeCtl(svc), nil).addr)
	}
	gone, freeze := freezingProxy(t, addrs[1])
	config := writeFile(t, dir, "pgoctl.toml", fmt.Sprintf("[[hosts]]\nname = \"web1\"\naddress = %q\n[[hosts]]\nname = \"web2\"\naddress = %q\n", addrs[0], gone))

	out, errOut := &syncBuffer{}, &syncBuffer{}
	c := &ctlClient{stdout: out, stderr: errOut, home: dir, getenv: func(string) string { return "" }}
	status := make(chan int, 1)
	go func() {
		status <- c.run([]string{"-i", keyFile, "--config", config, "--known-hosts", filepath.Join(dir, "known_hosts"),
			"--connect-timeout", "500ms", "web1,web2:shop//logs", "-f"})
	}()
	waitLong(t, "both hosts' first lines", 10*time.Second, func() bool {
		return strings.Contains(out.String(), "web1: first\n") && strings.Contains(out.String(), "web2: first\n")
	})
	freeze()
	waitLong(t, "web2 to be given up", 10*time.Second, func() bool {
		return strings.Contains(errOut.String(), "web2: pgoctl: "+gone+": no answer to a keepalive within 500ms")
	})
	os.WriteFile(release, nil, 0o600)
	select {
	case s := <-status:
		if s != exitSSH || !strings.Contains(out.String(), "web1: last\n") || strings.Contains(out.String(), "web2: last") {
			t.Errorf("status %d, stdout:\n%s\nstderr:\n%s", s, out.String(), errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("pgoctl did not end; stderr:\n%s", errOut.String())
	}
}
