//go:build e2e

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// projectNetworks lists the networks that carry project's compose label.
func projectNetworks(t *testing.T, project string) []string {
	t.Helper()
	out, err := exec.Command("docker", "network", "ls", "--filter", "label=com.docker.compose.project="+project, "--format", "{{.Name}}").Output()
	if err != nil {
		t.Fatalf("docker network ls: %v", err)
	}
	return strings.Fields(string(out))
}

// TestE2ERemoveTakesNetworks removes the last service from the config after
// a commit dropped one of its networks: compose down, given the deployed
// project, would leave that network behind; pgod removes it too and says
// what it removed.
func TestE2ERemoveTakesNetworks(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("rmnet")
	up := newUpstream(t)
	withOld := webCompose("one") + "    networks: [default, old]\nnetworks:\n  old: {}\n"
	up.commit(t, map[string]string{"compose.yaml": withOld})
	d := startDaemon(t, serviceTOML(name, up.bare))
	t.Cleanup(func() {
		for _, n := range projectNetworks(t, name) {
			exec.Command("docker", "network", "rm", n).Run()
		}
	})
	pageIs(t, name, "one", 60*time.Second)
	if n := projectNetworks(t, name); len(n) != 2 {
		t.Fatalf("networks after the first deploy: %v, want default and old", n)
	}
	up.commit(t, map[string]string{"compose.yaml": webCompose("two")})
	pageIs(t, name, "two", 60*time.Second)

	if err := os.WriteFile(d.config, []byte("# no services\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.logShows(t, "["+name+"] removed: 1 container", 60*time.Second)
	if n := projectNetworks(t, name); len(n) != 0 {
		t.Errorf("networks left after the removal: %v", n)
	}
	for _, line := range strings.Split(d.logs(), "\n") {
		if strings.Contains(line, "["+name+"] removed:") && !strings.Contains(line, "2 networks") {
			t.Errorf("removal line does not name both networks: %s", line)
		}
	}
}
