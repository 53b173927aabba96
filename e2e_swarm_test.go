//go:build e2e

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// swarmCompose's web service serves page and prints hello-page first; its
// healthcheck asks httpd, or with sick always fails. A config file of the
// checkout is mounted into it.
func swarmCompose(page string, sick bool) string {
	check := `["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]`
	if sick {
		check = `["CMD", "false"]`
	}
	return `services:
  web:
    image: ` + testImage + `
    command: ["sh", "-c", "echo hello-` + page + ` && mkdir -p /srv && echo ` + page + ` > /srv/index.html && exec httpd -f -p 8080 -h /srv"]
    stop_grace_period: 1s
    healthcheck:
      test: ` + check + `
      interval: 1s
      timeout: 2s
      retries: 1
    configs:
      - source: site
        target: /etc/site.conf
configs:
  site:
    file: ./site.conf
`
}

// swarmNeed makes the test engine a single-node swarm unless it is in one,
// and leaves the swarm again at the end if it made it.
func swarmNeed(t *testing.T) {
	t.Helper()
	out, err := exec.Command("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").CombinedOutput()
	if err != nil {
		t.Fatalf("docker info: %s", firstLine(out, err))
	}
	if state := strings.TrimSpace(string(out)); state != "inactive" {
		t.Logf("the engine is in a swarm already (%s); the test leaves it as it is", state)
		return
	}
	if out, err := exec.Command("docker", "swarm", "init", "--advertise-addr", "127.0.0.1").CombinedOutput(); err != nil {
		t.Skipf("SWARM E2E SKIPPED: docker swarm init --advertise-addr 127.0.0.1: %s", strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "swarm", "leave", "--force").CombinedOutput(); err != nil {
			t.Errorf("docker swarm leave --force: %s", firstLine(out, err))
		}
	})
}

// stackServices lists the services of stack name, from the engine.
func stackServices(t *testing.T, name string) []string {
	t.Helper()
	out, err := exec.Command("docker", "service", "ls", "--format", "{{.Name}}", "--filter", "label=com.docker.stack.namespace="+name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker service ls: %s", firstLine(out, err))
	}
	return strings.Fields(string(out))
}

// swarmPage asks the running task of name_web on this node for its page.
func swarmPage(name string) string {
	return swarmExec(name, "wget", "-qO-", "http://127.0.0.1:8080/")
}

// swarmExec runs a command in the running task of name_web on this node
// and returns its output.
func swarmExec(name string, command ...string) string {
	id, err := exec.Command("docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+name+"_web").Output()
	first, _, _ := strings.Cut(strings.TrimSpace(string(id)), "\n")
	if err != nil || first == "" {
		return ""
	}
	out, _ := exec.Command("docker", append([]string{"exec", first}, command...)...).Output()
	return strings.TrimSpace(string(out))
}

func swarmPageIs(t *testing.T, name, want string, timeout time.Duration) {
	t.Helper()
	waitFor(t, name+"_web to serve "+want, timeout, func() bool { return swarmPage(name) == want })
}

// TestE2ESwarm deploys a project on a single-node swarm and takes it
// through what a team does: a refused option Swarm would ignore, a failing
// update rolled back, ps, logs, exec, restart, and down.
func TestE2ESwarm(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	swarmNeed(t)
	name := uniqueName("swarm")
	t.Cleanup(func() {
		exec.Command("docker", "stack", "rm", name).Run()
		waitFor(t, "stack "+name+" to be removed", 60*time.Second, func() bool { return len(stackServices(t, name)) == 0 })
	})
	up := newUpstream(t)
	keys := openTempDir(t)
	team := newKey(t, keys, "team")
	files := map[string]string{"compose.yaml": swarmCompose("one", false), "site.conf": "listen 8080\n", "ssh/team.pub": readFile(t, team+".pub")}
	first := up.commit(t, files)
	started := time.Now()
	d := startDaemon(t, serviceTOML(name, up.bare, "swarm = true", `placement = ["node.role==manager"]`, `health_timeout = "60s"`), "-t", "1h")
	d.logShows(t, "deployed "+short(first), 120*time.Second)
	t.Logf("first deploy on the swarm: %s from pgod's start, clone and check included", time.Since(started).Round(100*time.Millisecond))
	swarmPageIs(t, name, "one", 10*time.Second)
	if got := stackServices(t, name); len(got) != 1 || got[0] != name+"_web" {
		t.Fatalf("stack services %v, want %s_web", got, name)
	}
	if out, err := exec.Command("docker", "service", "inspect", "--format", "{{json .Spec.TaskTemplate.Placement.Constraints}}", name+"_web").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != `["node.role==manager"]` {
		t.Errorf("constraints of %s_web: %s, %v; want the operator's placement", name, out, err)
	}
	st := d.agree(t, team, name)
	if !strings.Contains(st, name+"_web.1  "+testImage+"  running") || !strings.Contains(st, "1 running of 1 desired") {
		t.Errorf("status does not show the running task:\n%s", st)
	}
	out, err := exec.Command("docker", "config", "ls", "--format", "{{.Name}}", "--filter", "label=com.docker.stack.namespace="+name).Output()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), name+"_site_") {
		t.Errorf("configs of the stack: %q, %v; want %s_site_<hash>", out, err, name)
	}

	// An option docker stack deploy would ignore is refused with its line,
	// and what runs stays.
	files["compose.yaml"] = strings.Replace(swarmCompose("two", false), "    stop_grace_period: 1s\n", "    stop_grace_period: 1s\n    restart: always\n", 1)
	refused := up.commit(t, files)
	code, errOut := d.pull(t, team, name)
	if code != exitRejected || !strings.Contains(errOut, "rejected "+short(refused)) {
		t.Fatalf("restart: always: exit %d, stderr %q; want %d, rejected", code, errOut, exitRejected)
	}
	if log := d.logs(); !strings.Contains(log, `compose.yaml:6: service \"web\": restart: docker stack deploy ignores it; pgo refuses what would not run as checked`) &&
		!strings.Contains(log, `compose.yaml:6: service "web": restart: docker stack deploy ignores it; pgo refuses what would not run as checked`) {
		t.Errorf("pgod does not log the refusal with its line:\n%s", log)
	}
	swarmPageIs(t, name, "one", 5*time.Second)

	// An update whose healthcheck fails is rolled back to the last good spec.
	files["compose.yaml"] = swarmCompose("three", true)
	sick := up.commit(t, files)
	began := time.Now()
	code, errOut = d.pull(t, team, name)
	if code != exitUnhealthy || !strings.Contains(errOut, "deploy of "+short(sick)+" failed, rolled back to "+short(first)+": unhealthy: task "+name+"_web.1 failed") {
		t.Fatalf("unhealthy update: exit %d, stderr %q; want %d, rolled back to %s", code, errOut, exitUnhealthy, short(first))
	}
	t.Logf("failed update and rollback, converged: %s", time.Since(began).Round(100*time.Millisecond))
	swarmPageIs(t, name, "one", 30*time.Second)
	if st := d.agree(t, team, name); !strings.Contains(st, "deployed:    "+first) || !strings.Contains(st, "last attempt: "+sick) ||
		!strings.Contains(st, "tasks:       1 running of 1 desired") {
		t.Errorf("status after the rollback:\n%s", st)
	}

	// ps lists the stack's tasks; logs show what the task printed.
	ps, errOut, code := d.ctl(t, team, name+"//ps")
	if code != 0 || !strings.Contains(ps, name+"_web.1") || !strings.Contains(ps, "Running") {
		t.Errorf("ps: exit %d, stderr %q, stdout:\n%s", code, errOut, ps)
	}
	waitFor(t, "logs to show hello-one", 20*time.Second, func() bool {
		logs, _, code := d.ctl(t, team, name+"//logs", "--tail", "50", "web")
		return code == 0 && strings.Contains(logs, "hello-one")
	})
	if got, errOut, code := d.ctl(t, team, name+"//exec", "-T", "web", "cat", "/srv/index.html"); code != 0 || strings.TrimSpace(got) != "one" {
		t.Errorf("exec: exit %d, stdout %q, stderr %q", code, got, errOut)
	}
	if _, errOut, code := d.ctl(t, team, name+"//stop"); code != exitBadRequest || !strings.Contains(errOut, "not supported in swarm mode") {
		t.Errorf("stop: exit %d, stderr %q; want %d, not supported", code, errOut, exitBadRequest)
	}

	// restart replaces the task and waits for it; down removes the stack.
	before := swarmTaskIDs(t, name)
	if out, errOut, code := d.ctl(t, team, name+"//restart"); code != 0 {
		t.Fatalf("restart: exit %d\n%s%s", code, out, errOut)
	}
	if after := swarmTaskIDs(t, name); after == before || after == "" {
		t.Errorf("restart left the task %q as it was (%q)", after, before)
	}
	swarmPageIs(t, name, "one", 10*time.Second)
	if out, errOut, code := d.ctl(t, team, name+"//down"); code != 0 || len(stackServices(t, name)) != 0 {
		t.Errorf("down: exit %d, services %v\n%s%s", code, stackServices(t, name), out, errOut)
	}
	if out, errOut, code := d.ctl(t, team, name+"//up"); code != 0 {
		t.Fatalf("up: exit %d\n%s%s", code, out, errOut)
	}
	swarmPageIs(t, name, "one", 10*time.Second)

	// A good commit deploys; then a service removed by hand is deployed
	// again (Swarm's own restarts are Swarm's).
	files["compose.yaml"] = swarmCompose("four", false)
	up.commit(t, files)
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("a good commit after the rollback: exit %d, stderr %q", code, errOut)
	}
	swarmPageIs(t, name, "four", 10*time.Second)

	// A commit that changes only the config file deploys a new config.
	files["site.conf"] = "listen 8081\n"
	up.commit(t, files)
	if out, errOut, code := d.ctl(t, team, name+"//git", "pull"); code != 0 || !strings.Contains(out, "deployed ") {
		t.Fatalf("a changed config file: exit %d\n%s%s", code, out, errOut)
	}
	if got := swarmExec(name, "cat", "/etc/site.conf"); got != "listen 8081" {
		t.Errorf("/etc/site.conf in the task is %q after the change", got)
	}
	out, _ = exec.Command("docker", "config", "ls", "--format", "{{.Name}}", "--filter", "label=com.docker.stack.namespace="+name).Output()
	if configs := strings.Fields(string(out)); len(configs) != 1 || !strings.HasPrefix(configs[0], name+"_site_") {
		t.Errorf("configs of the stack after the change: %q; want the new one only", configs)
	}
	if out, err := exec.Command("docker", "service", "rm", name+"_web").CombinedOutput(); err != nil {
		t.Fatalf("docker service rm: %s", firstLine(out, err))
	}
	if out, errOut, code := d.ctl(t, team, name+"//git", "pull"); code != 0 || !strings.Contains(out, "drift: "+name+"_web removed") {
		t.Errorf("git pull after the service was removed: exit %d\n%s%s", code, out, errOut)
	}
	swarmPageIs(t, name, "four", 30*time.Second)

	// Out of the config, the stack is removed.
	if err := os.WriteFile(d.config, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(sighup)
	waitFor(t, "the stack of the removed service to go", 60*time.Second, func() bool { return len(stackServices(t, name)) == 0 })
}

// swarmTaskIDs is the running task of name_web.
func swarmTaskIDs(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("docker", "service", "ps", "-q", "--filter", "desired-state=running", name+"_web").CombinedOutput()
	if err != nil {
		t.Fatalf("docker service ps: %s", firstLine(out, err))
	}
	return strings.TrimSpace(string(out))
}

// TestE2ESwarmNotManager: on an engine that manages no swarm a swarm
// service does not deploy, and git pull says what to do, exit 70.
func TestE2ESwarmNotManager(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	if out, _ := exec.Command("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").Output(); strings.TrimSpace(string(out)) != "inactive" {
		t.Skipf("the engine is in a swarm (%s)", strings.TrimSpace(string(out)))
	}
	name := uniqueName("noswarm")
	up := newUpstream(t)
	keys := openTempDir(t)
	team := newKey(t, keys, "team")
	up.commit(t, map[string]string{"compose.yaml": swarmCompose("one", false), "site.conf": "x\n", "ssh/team.pub": readFile(t, team+".pub")})
	d := startDaemon(t, serviceTOML(name, up.bare, "swarm = true"), "-t", "1h")
	d.logShows(t, "this engine is not in a swarm", 60*time.Second)
	code, errOut := d.pull(t, team, name)
	if code != exitFailed || !strings.Contains(errOut, "stack deploy: this engine is not in a swarm: run docker swarm init on this host") {
		t.Errorf("git pull: exit %d, stderr %q; want %d and the hint", code, errOut, exitFailed)
	}
}
