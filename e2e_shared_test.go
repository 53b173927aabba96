//go:build e2e

package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// capNetRaw is CAP_NET_RAW's bit in /proc/PID/status's capability masks.
const capNetRaw = 13

// effectiveCaps reads a container's PID 1 effective capability mask.
func effectiveCaps(t *testing.T, container string) uint64 {
	t.Helper()
	out, err := exec.Command("docker", "exec", container, "grep", "CapEff", "/proc/1/status").CombinedOutput()
	if err != nil {
		t.Fatalf("capabilities of %s: %s", container, firstLine(out, err))
	}
	mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "CapEff:")), 16, 64)
	if err != nil {
		t.Fatalf("capabilities of %s: %q", container, out)
	}
	return mask
}

// TestE2ENetRawDroppedOnSharedNetwork: a team's service on a network other
// projects join runs without NET_RAW (with it, it could forge ARP there and
// take its neighbours' traffic); on its own network alone it keeps it.
func TestE2ENetRawDroppedOnSharedNetwork(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("netraw")
	network := name + "-proxy"
	sharedNetwork(t, network)
	up := newUpstream(t)
	up.commit(t, map[string]string{"compose.yaml": `services:
  web:
    image: ` + testImage + `
    command: [sleep, "600"]
    stop_grace_period: 1s
    cap_add: [NET_RAW]
    networks: [default, proxy]
  alone:
    image: ` + testImage + `
    command: [sleep, "600"]
    stop_grace_period: 1s
networks:
  proxy:
    external: true
    name: ` + network + `
`})
	startDaemon(t, serviceTOML(name, up.bare, `networks = ["`+network+`"]`))
	waitFor(t, "both containers", 60*time.Second, func() bool {
		c := projectContainers(t, name)
		return c[name+"-web-1"] == "running" && c[name+"-alone-1"] == "running"
	})
	if effectiveCaps(t, name+"-web-1")&(1<<capNetRaw) != 0 {
		t.Error("the service on the shared network has NET_RAW")
	}
	if effectiveCaps(t, name+"-alone-1")&(1<<capNetRaw) == 0 {
		t.Error("the service on its own network lost NET_RAW")
	}
}
