//go:build e2e

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EDemo runs "make run"'s script on ports of its own, as a given
// user: it says which user and why, deploys a project of a name of its
// own, and on Ctrl-C removes the project, its image and its directory.
func TestE2EDemo(t *testing.T) {
	e2eNeed(t)
	svcUser := e2eUser(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("the demo builds its image from /bin/busybox")
	}
	sshAddr, metricsAddr := freePort(t), freePort(t)
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	out := &daemonProc{} // only for its locked log
	cmd := exec.Command("scripts/run-demo")
	cmd.Env = append(os.Environ(), "PGO_DEMO_USER="+svcUser, "PGO_DEMO_SSH_PORT="+port(sshAddr), "PGO_DEMO_METRICS_PORT="+port(metricsAddr))
	cmd.Stdout, cmd.Stderr = &lockedWriter{d: out}, &lockedWriter{d: out}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, to get Ctrl-C as a terminal would send it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			<-done
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", out.logs())
		}
	})

	head := regexp.MustCompile(`pgod demo: state in (/tmp/pgo-demo\.\w+)\.\nService "(pgo-demo-[0-9a-f]+)" runs as user (\S+) \(PGO_DEMO_USER\)`)
	var m []string
	waitFor(t, "the demo's banner", 60*time.Second, func() bool { m = head.FindStringSubmatch(out.logs()); return m != nil })
	tmp, name := m[1], m[2]
	if m[3] != svcUser {
		t.Errorf("demo runs as %s, want %s", m[3], svcUser)
	}
	if !strings.Contains(out.logs(), "-p "+port(sshAddr)+" 127.0.0.1:"+name+"//ping") || !strings.Contains(out.logs(), "127.0.0.1:"+port(metricsAddr)+"/metrics") {
		t.Errorf("banner does not use the ports given")
	}
	waitFor(t, "the demo's project to run", 90*time.Second, func() bool { return len(projectContainers(t, name)) > 0 })
	ctl := exec.Command("./pgo", "ctl", "-i", filepath.Join(tmp, "id_demo"), "--known-hosts", filepath.Join(tmp, "known_hosts"), "-p", port(sshAddr), "127.0.0.1:"+name+"//ping")
	if b, err := ctl.Output(); err != nil || !strings.HasPrefix(string(b), "pong!") {
		t.Errorf("ping through the demo's port: %s %v", b, err)
	}

	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-done:
		stopped = true
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not stop on Ctrl-C")
	}
	if _, err := os.Stat(tmp); err == nil {
		t.Errorf("%s is left behind", tmp)
	}
	if c := projectContainers(t, name); len(c) != 0 {
		t.Errorf("containers left behind: %v", c)
	}
	if n := projectNetworks(t, name); len(n) != 0 {
		t.Errorf("networks left behind: %v", n)
	}
	id := strings.TrimPrefix(name, "pgo-demo-")
	if err := exec.Command("docker", "image", "inspect", "pgo-demo-busybox:"+id).Run(); err == nil {
		t.Errorf("image pgo-demo-busybox:%s left behind", id)
	}
}
