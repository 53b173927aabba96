//go:build e2e

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EFanOut runs pgoctl against three pgods at once, named in a client
// config: output prefixed by host, the worst exit status, a host that hangs
// and one that is gone reported without holding up the others, and host
// keys checked per host.
func TestE2EFanOut(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	keys := openTempDir(t)
	operator := newKey(t, keys, "operator")
	operators := filepath.Join(openTempDir(t), "operators")
	if err := os.Mkdir(operators, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(operators, "oncall.pub"), []byte(readFile(t, operator+".pub")), 0o644)

	// Each pgod its own service: they share the engine.
	hosts := []string{"web1", "web2", "web3"}
	services := map[string]string{}
	daemons := map[string]*daemonProc{}
	for _, h := range hosts {
		services[h] = uniqueName("fan" + h)
		up := newUpstream(t)
		up.commit(t, map[string]string{"compose.yaml": webCompose(h)})
		daemons[h] = startDaemon(t, serviceTOML(services[h], up.bare), "--operators", operators)
	}
	for _, h := range hosts {
		pageIs(t, services[h], h, 90*time.Second)
	}

	dir := openTempDir(t)
	var cfg strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&cfg, "[[hosts]]\nname = %q\naddress = %q\n", h, daemons[h].sshAddr)
	}
	cfg.WriteString("[[groups]]\nname = \"prod\"\nhosts = [\"web1\", \"web2\", \"web3\"]\n")
	config := filepath.Join(dir, "pgoctl.toml")
	os.WriteFile(config, []byte(cfg.String()), 0o600)
	known := filepath.Join(dir, "known_hosts")

	fan := func(target string, args ...string) (string, string, int) {
		t.Helper()
		return fanOutCtl(t, operator, config, known, target, args...)
	}
	// rowOf finds host's status row of service in out.
	rowOf := func(out, host, service string) string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == host+":" && f[1] == service {
				return l
			}
		}
		return ""
	}

	out, errOut, code := fan("web1,web2:*//status")
	if code != 0 {
		t.Fatalf("web1,web2:*//status: code %d\n%s%s", code, out, errOut)
	}
	for _, h := range []string{"web1", "web2"} {
		if row := rowOf(out, h, services[h]); !strings.Contains(row, " deployed ") {
			t.Errorf("no deployed row of %s from %s:\n%s", services[h], h, out)
		}
		if !strings.Contains(errOut, h+": pgoctl: trusting [127.0.0.1]:") {
			t.Errorf("no trust-on-first-use notice of %s:\n%s", h, errOut)
		}
	}
	if strings.Contains(out, services["web3"]) || rowOf(out, "web1", services["web2"]) != "" {
		t.Errorf("a host shows a service it does not run, or web3 was asked:\n%s", out)
	}

	// The worst status: web1 runs the service, the others do not let the key in for it.
	out, errOut, code = fan("@prod:"+services["web1"]+"//ps", "--services")
	if code != exitUnauthorized || !strings.Contains(out, "web1: web\n") {
		t.Errorf("@prod ps: code %d, want %d; stdout:\n%s", code, exitUnauthorized, out)
	}
	for _, want := range []string{"web2: Unauthorized: ", "web3: Unauthorized: ", "pgoctl: 2 of 3 hosts failed: web2 (77), web3 (77)\n"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("@prod ps: stderr lacks %q:\n%s", want, errOut)
		}
	}

	// One known_hosts line per host, each pgod with its own key.
	lines := strings.Split(strings.TrimSpace(readFile(t, known)), "\n")
	keyOf := map[string]string{}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 {
			keyOf[f[0]] = f[1] + " " + f[2]
		}
	}
	entry := func(h string) string { return "[127.0.0.1]:" + strings.TrimPrefix(daemons[h].sshAddr, "127.0.0.1:") }
	if len(lines) != 3 || keyOf[entry("web1")] == "" || keyOf[entry("web2")] == "" || keyOf[entry("web3")] == "" ||
		keyOf[entry("web1")] == keyOf[entry("web2")] || keyOf[entry("web2")] == keyOf[entry("web3")] {
		t.Fatalf("known_hosts, want one line per host, each its own key:\n%s", readFile(t, known))
	}

	// web2's entry holding web1's key: web2 is refused, the others run.
	good := readFile(t, known)
	os.WriteFile(known, []byte(strings.Replace(good, keyOf[entry("web2")], keyOf[entry("web1")], 1)), 0o600)
	out, errOut, code = fan("@prod:*//status")
	if code != exitSSH || rowOf(out, "web1", services["web1"]) == "" || rowOf(out, "web3", services["web3"]) == "" || strings.Contains(out, "web2:") {
		t.Errorf("changed key of web2: code %d; stdout:\n%s", code, out)
	}
	if !strings.Contains(errOut, "web2: pgoctl: @@@ HOST KEY MISMATCH for "+entry("web2")) || strings.Count(errOut, "MISMATCH") != 1 {
		t.Errorf("changed key of web2: stderr:\n%s", errOut)
	}
	os.WriteFile(known, []byte(good), 0o600)

	// A pgod that hangs (stopped, so the kernel still accepts) is given up on
	// after the connect timeout; the others answer.
	web3 := daemons["web3"]
	web3.cmd.Process.Signal(syscall.SIGSTOP)
	out, errOut, code = fan("@prod:*//status")
	web3.cmd.Process.Signal(syscall.SIGCONT)
	if code != exitSSH || rowOf(out, "web1", services["web1"]) == "" || rowOf(out, "web2", services["web2"]) == "" {
		t.Errorf("web3 hanging: code %d; stdout:\n%s", code, out)
	}
	for _, want := range []string{"web3: cannot connect: " + web3.sshAddr + ": no SSH handshake within 3s", "pgoctl: 1 of 3 hosts failed: web3 (255)\n"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("web3 hanging: stderr lacks %q:\n%s", want, errOut)
		}
	}

	// A pgod that is gone: refused at once.
	web3.stop(t)
	out, errOut, code = fan("@prod:*//status")
	if code != exitSSH || rowOf(out, "web1", services["web1"]) == "" || rowOf(out, "web2", services["web2"]) == "" {
		t.Errorf("web3 down: code %d; stdout:\n%s", code, out)
	}
	for _, want := range []string{"web3: cannot connect: " + web3.sshAddr + ": ", "connection refused", "pgoctl: 1 of 3 hosts failed: web3 (255)\n"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("web3 down: stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// fanOutCtl runs pgoctl with key, the client config and known_hosts, a
// connect timeout of 3s and a deadline: a fan-out must end by itself.
func fanOutCtl(t *testing.T, key, config, known, target string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"ctl", "-i", key, "--config", config, "--known-hosts", known, "--connect-timeout", "3s", target}, args...)
	cmd := exec.CommandContext(ctx, pgoBinary(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("pgoctl %s did not end within 60s; stdout:\n%s\nstderr:\n%s", target, stdout.String(), stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("pgoctl: %v", err)
	}
	return stdout.String(), stderr.String(), 0
}
