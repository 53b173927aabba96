//go:build e2e

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// swarmNode is a second Docker engine on this machine, in a network
// namespace of its own, joined to the test engine's swarm as a worker.
type swarmNode struct {
	sock  string    // its API socket
	id    string    // its swarm node ID
	cmd   *exec.Cmd // its dockerd
	alive bool
}

// docker runs the docker CLI against the node.
func (n *swarmNode) docker(args ...string) *exec.Cmd {
	return exec.Command("docker", append([]string{"-H", "unix://" + n.sock}, args...)...)
}

// Addresses of the two nodes on the veth pair between them.
const (
	swarmNetns  = "pgoe2en2"
	swarmLink1  = "pgoe2e1"
	swarmLink2  = "pgoe2e2"
	swarmAddr1  = "10.231.0.1"
	swarmAddr2  = "10.231.0.2"
	swarmPrefix = "/24"
)

// twoNodeSwarm makes the test engine the manager of a swarm whose second
// node is another dockerd in a network namespace, with its own data and
// the test image loaded; nodes are labelled pgo=n1 (this engine) and pgo=n2.
// Everything is undone at the end. It skips, loudly, where a second engine
// cannot run.
func twoNodeSwarm(t *testing.T) *swarmNode {
	t.Helper()
	out, err := exec.Command("docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.Driver}}").CombinedOutput()
	if err != nil {
		t.Fatalf("docker info: %s", firstLine(out, err))
	}
	state, driver, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if state != "inactive" {
		t.Skipf("SWARM NODES E2E SKIPPED: the engine is in a swarm already (%s)", state)
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Skip("SWARM NODES E2E SKIPPED: no dockerd to run a second node")
	}
	removeSwarmNetwork()
	for _, args := range [][]string{
		{"netns", "add", swarmNetns},
		{"link", "add", swarmLink1, "type", "veth", "peer", "name", swarmLink2},
		{"link", "set", swarmLink2, "netns", swarmNetns},
		{"addr", "add", swarmAddr1 + swarmPrefix, "dev", swarmLink1},
		{"link", "set", swarmLink1, "up"},
		{"-n", swarmNetns, "addr", "add", swarmAddr2 + swarmPrefix, "dev", swarmLink2},
		{"-n", swarmNetns, "link", "set", swarmLink2, "up"},
		{"-n", swarmNetns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			removeSwarmNetwork()
			t.Skipf("SWARM NODES E2E SKIPPED: ip %s: %s", strings.Join(args, " "), firstLine(out, err))
		}
	}
	t.Cleanup(removeSwarmNetwork)

	dir := t.TempDir()
	// After dockerd: it leaves network namespaces mounted under its exec root.
	t.Cleanup(func() { unmountUnder(t, dir) })
	n := &swarmNode{sock: filepath.Join(dir, "docker.sock")}
	config := filepath.Join(dir, "daemon.json")
	os.WriteFile(config, []byte(fmt.Sprintf(`{"storage-driver": %q}`, driver)), 0o600)
	// nsenter, not ip netns exec: that remounts /sys, where dockerd finds
	// the cgroups.
	n.cmd = exec.Command("nsenter", "--net=/var/run/netns/"+swarmNetns, "dockerd", "--config-file", config,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", "unix://"+n.sock,
		"--containerd-namespace", "pgoe2en2", "--containerd-plugins-namespace", "pgoe2en2p",
		"--bridge", "none", "--iptables=false", "--ip-masq=false")
	logs := &syncBuffer{}
	n.cmd.Stdout, n.cmd.Stderr = logs, logs
	if err := n.cmd.Start(); err != nil {
		t.Skipf("SWARM NODES E2E SKIPPED: dockerd: %v", err)
	}
	n.alive = true
	t.Cleanup(func() { n.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for n.docker("info").Run() != nil {
		if time.Now().After(deadline) {
			t.Skipf("SWARM NODES E2E SKIPPED: the second dockerd did not answer within 30s:\n%s", lastLines(logs.String(), 5))
		}
		time.Sleep(100 * time.Millisecond)
	}

	sh(t, "", "docker", "swarm", "init", "--advertise-addr", swarmAddr1)
	t.Cleanup(func() { exec.Command("docker", "swarm", "leave", "--force").Run() })
	token := sh(t, "", "docker", "swarm", "join-token", "-q", "worker")
	if out, err := n.docker("swarm", "join", "--advertise-addr", swarmAddr2, "--token", token, swarmAddr1+":2377").CombinedOutput(); err != nil {
		t.Fatalf("the second node cannot join: %s", firstLine(out, err))
	}
	id, err := n.docker("info", "--format", "{{.Swarm.NodeID}}").Output()
	if err != nil {
		t.Fatalf("the second node's ID: %v", err)
	}
	n.id = strings.TrimSpace(string(id))
	save := exec.Command("docker", "save", testImage)
	load := n.docker("load", "-q")
	load.Stdin, _ = save.StdoutPipe()
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("docker load on the second node: %s", firstLine(out, err))
	}
	save.Wait()
	self := sh(t, "", "docker", "info", "--format", "{{.Swarm.NodeID}}")
	sh(t, "", "docker", "node", "update", "--label-add", "pgo=n1", self)
	sh(t, "", "docker", "node", "update", "--label-add", "pgo=n2", n.id)
	return n
}

// stop has the node leave the swarm and ends its dockerd, which stops the
// node's containers, and waits for it.
func (n *swarmNode) stop(t *testing.T) {
	if !n.alive {
		return
	}
	n.alive = false
	n.docker("swarm", "leave", "--force").Run()
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-done
		t.Errorf("the second dockerd did not stop on SIGTERM within 30s")
	}
}

// cut takes the link between the nodes down: to the manager the second
// node is gone, while its engine and tasks run on.
func (n *swarmNode) cut(t *testing.T) {
	if out, err := exec.Command("ip", "link", "set", swarmLink1, "down").CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s down: %s", swarmLink1, firstLine(out, err))
	}
}

// removeSwarmNetwork deletes the namespace and the veth pair, also what an
// earlier run left.
func removeSwarmNetwork() {
	exec.Command("ip", "netns", "del", swarmNetns).Run()
	exec.Command("ip", "link", "del", swarmLink1).Run()
}

// nodesCompose runs replicas tasks of web, spread over the nodes' pgo
// labels, within constraints; each prints hello-page first.
func nodesCompose(page string, replicas int, constraints ...string) string {
	placement := "      placement:\n        preferences:\n          - spread: node.labels.pgo\n"
	if len(constraints) > 0 {
		placement += "        constraints: [\"" + strings.Join(constraints, `", "`) + "\"]\n"
	}
	return fmt.Sprintf(`services:
  web:
    image: %s
    command: ["sh", "-c", "echo hello-%s && exec sleep 100000"]
    stop_grace_period: 1s
    deploy:
      replicas: %d
%s`, testImage, page, replicas, placement)
}

// taskNodes maps each running task of name_web, as "name_web.SLOT", to
// the ID of its node.
func taskNodes(t *testing.T, name string) map[string]string {
	t.Helper()
	ids, err := exec.Command("docker", "service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", name+"_web").Output()
	if err != nil || len(strings.Fields(string(ids))) == 0 {
		return nil
	}
	out, err := exec.Command("docker", append([]string{"inspect", "--format", "{{.Slot}} {{.NodeID}} {{.Status.State}}"}, strings.Fields(string(ids))...)...).Output()
	if err != nil {
		return nil
	}
	tasks := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "running" {
			tasks[name+"_web."+f[0]] = f[1]
		}
	}
	return tasks
}

// runningTasks counts the lines of ps output that show a task of name
// running.
func runningTasks(ps, name string) int {
	n := 0
	for _, l := range strings.Split(ps, "\n") {
		if strings.HasPrefix(l, name+"_web.") && strings.Contains(l, "Running") {
			n++
		}
	}
	return n
}

// TestE2ESwarmTwoNodes runs a swarm service over two engines on this
// machine: its tasks spread over both and the gate counts the other node's,
// logs and ps reach them, exec says where a task runs, and when the second
// node goes away Swarm moves its task and pgod lets it, while a deploy that
// only the lost node could run fails the gate and is rolled back.
func TestE2ESwarmTwoNodes(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	node := twoNodeSwarm(t)
	name := uniqueName("nodes")
	t.Cleanup(func() {
		exec.Command("docker", "stack", "rm", name).Run()
		waitFor(t, "stack "+name+" to be removed", 60*time.Second, func() bool { return len(stackServices(t, name)) == 0 })
	})
	self := sh(t, "", "docker", "info", "--format", "{{.Swarm.NodeID}}")
	up := newUpstream(t)
	team := newKey(t, openTempDir(t), "team")
	up.commit(t, map[string]string{"compose.yaml": nodesCompose("spread", 2), "ssh/team.pub": readFile(t, team+".pub")})
	started := time.Now()
	d := startDaemon(t, serviceTOML(name, up.bare, "swarm = true", `health_timeout = "20s"`), "-t", "1h")

	// Two tasks, one a node: the gate waited for the other node's too.
	d.logShows(t, "deployed ", 120*time.Second)
	t.Logf("two tasks on two nodes deployed: %s from pgod's start", time.Since(started).Round(100*time.Millisecond))
	nodes := taskNodes(t, name)
	if len(nodes) != 2 || nodes[name+"_web.1"] == nodes[name+"_web.2"] {
		t.Fatalf("tasks %v, want web.1 and web.2 on different nodes", nodes)
	}
	ps, errOut, code := d.ctl(t, team, name+"//ps")
	if code != 0 || runningTasks(ps, name) != 2 {
		t.Errorf("ps: exit %d, stderr %q, want both tasks running:\n%s", code, errOut, ps)
	}
	waitFor(t, "logs of both tasks", 20*time.Second, func() bool {
		logs, _, code := d.ctl(t, team, name+"//logs", "web")
		return code == 0 && strings.Count(logs, "hello-spread") == 2
	})

	// A task only the second node may run: exec names where it runs.
	second := up.commit(t, map[string]string{"compose.yaml": nodesCompose("there", 1, "node.labels.pgo==n2")})
	if out, errOut, code := d.ctl(t, team, name+"//git", "pull"); code != 0 {
		t.Fatalf("git pull of %s: exit %d\n%s%s", short(second), code, out, errOut)
	}
	if nodes := taskNodes(t, name); len(nodes) != 1 || nodes[name+"_web.1"] != node.id {
		t.Fatalf("tasks %v, want web.1 on the second node %s", nodes, node.id)
	}
	if _, errOut, code := d.ctl(t, team, name+"//exec", "-T", "web", "true"); code == 0 || !strings.Contains(errOut, "runs on node") {
		t.Errorf("exec of a task on the other node: exit %d, stderr %q", code, errOut)
	}

	// The second node goes away (its link cut): Swarm runs its task on this
	// node, and pgod redeploys nothing.
	third := up.commit(t, map[string]string{"compose.yaml": nodesCompose("anywhere", 2)})
	if out, errOut, code := d.ctl(t, team, name+"//git", "pull"); code != 0 {
		t.Fatalf("git pull of %s: exit %d\n%s%s", short(third), code, out, errOut)
	}
	if nodes := taskNodes(t, name); len(nodes) != 2 || nodes[name+"_web.1"] == nodes[name+"_web.2"] {
		t.Fatalf("tasks %v, want web.1 and web.2 on different nodes", nodes)
	}
	deploys := strings.Count(d.logs(), "] deployed ")
	node.cut(t)
	lost := time.Now()
	waitFor(t, "the second node to be down", 90*time.Second, func() bool {
		out, _ := exec.Command("docker", "node", "inspect", "--format", "{{.Status.State}}", node.id).Output()
		return strings.TrimSpace(string(out)) == "down"
	})
	t.Logf("second node cut off: down to the manager after %s", time.Since(lost).Round(100*time.Millisecond))
	waitFor(t, "both tasks to run on this node", 60*time.Second, func() bool {
		nodes := taskNodes(t, name)
		return len(nodes) == 2 && nodes[name+"_web.1"] == self && nodes[name+"_web.2"] == self
	})
	t.Logf("second node cut off: both tasks run here after %s", time.Since(lost).Round(100*time.Millisecond))
	if st := d.agree(t, team, name); !strings.Contains(st, "deployed:    "+third) || !strings.Contains(st, "2 running of 2 desired") {
		t.Errorf("status after the node went away:\n%s", st)
	}
	if n := strings.Count(d.logs(), "] deployed "); n != deploys {
		t.Errorf("pgod deployed %d times while Swarm moved the task, want none", n-deploys)
	}

	// A commit only the lost node could run: the gate gives up at the
	// deadline and the last good one runs again.
	fourth := up.commit(t, map[string]string{"compose.yaml": nodesCompose("nowhere", 1, "node.labels.pgo==n2")})
	_, errOut, code = d.ctl(t, team, name+"//git", "pull")
	if code != exitTimeout || !strings.Contains(errOut, "deploy of "+short(fourth)+" failed, rolled back to "+short(third)) {
		t.Errorf("deploy to the lost node: exit %d, stderr %q; want %d, rolled back to %s", code, errOut, exitTimeout, short(third))
	}
	if nodes := taskNodes(t, name); len(nodes) != 2 || nodes[name+"_web.1"] != self || nodes[name+"_web.2"] != self {
		t.Errorf("after the rollback tasks %v, want web.1 and web.2 on this node", nodes)
	}
}
