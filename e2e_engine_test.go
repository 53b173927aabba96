//go:build e2e

package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2EDeployCostAndEngineEvents shows what a deploy costs in compose
// processes and what an idle look costs, with the real engine: a poll that
// finds nothing new starts no compose, a commit that changes what runs but
// no image renders once and runs up once (no pull), a commit that changes
// nothing that runs (rendered in a staging copy, unlike the first commit
// rendered in the fresh clone) renders once and deploys by saying so, and a container
// removed by hand comes back at once, long before the next poll (1h here),
// because pgod follows the engine's events.
func TestE2EDeployCostAndEngineEvents(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("cost")
	up := newUpstream(t)
	d, team, _ := deployDaemon(t, name, up, map[string]string{"compose.yaml": webCompose("one")})
	pageIs(t, name, "one", 30*time.Second)

	before := composeRuns(t, d, name)
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("git pull with nothing new: exit %d: %s", code, errOut)
	}
	if after := composeRuns(t, d, name); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a look that found nothing new ran compose: %v -> %v", before, after)
	}

	readme := up.commit(t, map[string]string{"README.md": "only words\n"})
	out, errOut, code := d.ctl(t, team, name+"//git", "pull")
	if code != 0 || !strings.Contains(out, "changes nothing that runs") {
		t.Fatalf("git pull of a README change: exit %d\n%s%s", code, out, errOut)
	}
	d.deployedIs(t, team, name, readme, 10*time.Second)
	if now := composeRuns(t, d, name); now["up"] != before["up"] || now["config"] != before["config"]+1 {
		t.Errorf("compose runs for a commit that changes nothing that runs: %v -> %v, want one render and no up", before, now)
	}

	before = composeRuns(t, d, name)
	withEnv := up.commit(t, map[string]string{"compose.yaml": strings.Replace(webCompose("one"), "web:", "web:\n    environment:\n      LEVEL: two", 1)})
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("git pull of an environment change: exit %d: %s", code, errOut)
	}
	d.deployedIs(t, team, name, withEnv, 10*time.Second)
	after := composeRuns(t, d, name)
	if want := (map[string]int{"config": before["config"] + 1, "up": before["up"] + 1, "pull": before["pull"]}); fmt.Sprint(after) != fmt.Sprint(want) {
		t.Errorf("compose runs for a commit that changes no image: %v -> %v, want %v (one render, one up, no pull)", before, after, want)
	}

	id := containerID(t, name+"-web-1")
	if out, err := exec.Command("docker", "rm", "-f", name+"-web-1").CombinedOutput(); err != nil {
		t.Fatalf("docker rm: %v: %s", err, out)
	}
	waitFor(t, "the removed container to come back", 30*time.Second, func() bool {
		now := containerID(t, name+"-web-1")
		return now != "" && now != id && projectContainers(t, name)[name+"-web-1"] == "running"
	})
	d.logShows(t, "drift: ", 10*time.Second)
	pageIs(t, name, "one", 10*time.Second)
}

// composeRuns reads how often pgod ran compose's config, pull and up for a
// service from its metrics.
func composeRuns(t *testing.T, d *daemonProc, name string) map[string]int {
	t.Helper()
	text := metricsText(t, d)
	runs := map[string]int{"config": 0, "pull": 0, "up": 0}
	for verb := range runs {
		re := regexp.MustCompile(`(?m)^pgo_command_count\{service="` + regexp.QuoteMeta(name) + `",cmd="compose",subcmd="` + verb + `"\} (\d+)$`)
		if m := re.FindStringSubmatch(text); m != nil {
			runs[verb], _ = strconv.Atoi(m[1])
		}
	}
	if runs["up"] == 0 {
		t.Fatalf("no compose up counted for %s in the metrics:\n%s", name, text)
	}
	return runs
}
