//go:build e2e

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests drive deploys the way CI does: pgoctl host:svc//git pull, and
// what counts is its exit status and the line on its standard error.

// healthyCompose is webCompose with a healthcheck that asks httpd for the
// page, and a one-shot service beside it that exits 0.
func healthyCompose(page string) string {
	return webCompose(page) + `    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 3
  init:
    image: ` + testImage + `
    command: ["true"]
    restart: "no"
`
}

// crashCompose's web container exits 1 as soon as it starts, over and over.
func crashCompose(page string) string {
	return `services:
  web:
    image: ` + testImage + `
    command: ["sh", "-c", "echo crash-` + page + `; exit 1"]
    restart: unless-stopped
`
}

// unhealthyCompose's web container runs, but its healthcheck always fails.
func unhealthyCompose(page string) string {
	return webCompose(page) + `    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      timeout: 1s
      retries: 1
`
}

// deployDaemon starts pgod on one service whose polls are an hour apart, so
// that only the test's ops deploy, and returns it with the team's key.
func deployDaemon(t *testing.T, name string, up *upstream, files map[string]string, extra ...string) (*daemonProc, string, string) {
	t.Helper()
	keys := openTempDir(t)
	team := newKey(t, keys, "team")
	files["ssh/team.pub"] = readFile(t, team+".pub")
	first := up.commit(t, files)
	d := startDaemon(t, serviceTOML(name, up.bare, append([]string{`health_timeout = "8s"`}, extra...)...), "-t", "1h")
	d.logShows(t, "deployed "+short(first), 90*time.Second)
	return d, team, first
}

// pull runs git pull as CI would and returns its exit status and standard error.
func (d *daemonProc) pull(t *testing.T, key, name string) (int, string) {
	t.Helper()
	out, errOut, code := d.ctl(t, key, name+"//git", "pull")
	t.Logf("git pull: exit %d\nstdout:\n%sstderr:\n%s", code, out, errOut)
	return code, errOut
}

// agree fetches status and /metrics and fails unless they tell the same:
// the deployed commit, since when, and the containers running and desired.
// It returns the status.
func (d *daemonProc) agree(t *testing.T, key, name string) string {
	t.Helper()
	status, errOut, code := d.ctl(t, key, name+"//status")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	resp, err := http.Get("http://" + d.metric + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	find := func(re, text string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			return ""
		}
		return m[1]
	}
	q := regexp.QuoteMeta(name)
	commit := find(`(?m)^deployed:\s+([0-9a-f]+|-)`, status)
	if commit == "-" {
		commit = ""
	}
	if got := find(`pgo_service_info\{service="`+q+`",branch="main",commit="([^"]*)"\}`, metrics); got != commit {
		t.Errorf("metrics say commit %q is deployed, status %q\n%s", got, commit, status)
	}
	counts := regexp.MustCompile(`(?m)^(?:containers|tasks):\s+(\d+) running of (\d+) desired`).FindStringSubmatch(status)
	if counts == nil {
		t.Fatalf("status has no containers line:\n%s", status)
	}
	for i, family := range []string{"pgo_containers_running", "pgo_containers_desired"} {
		if got := find(family+`\{service="`+q+`"\} (\d+)`, metrics); got != counts[i+1] {
			t.Errorf("%s is %s, status says %s\n%s", family, got, counts[i+1], status)
		}
	}
	since := find(`(?m)^deployed:\s+\S+ since (\S+)`, status)
	stamp := find(`pgo_service_last_deploy_timestamp_seconds\{service="`+q+`"\} (\S+)`, metrics)
	if since != "" || stamp != "" {
		at, err1 := time.Parse(time.RFC3339, since)
		secs, err2 := strconv.ParseFloat(stamp, 64)
		if err1 != nil || err2 != nil || at.Unix() != int64(secs) {
			t.Errorf("deployed since %q in status, %q in metrics", since, stamp)
		}
	}
	return status
}

// TestE2EDeployHealthGate: a healthy commit deploys; a crash-looping one and
// an unhealthy one are rolled back and git pull exits 71; a rejected one exits
// 65; nothing new exits 0 and says so; status and metrics agree throughout.
func TestE2EDeployHealthGate(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("gate")
	up := newUpstream(t)
	d, team, first := deployDaemon(t, name, up, map[string]string{"compose.yaml": healthyCompose("one")})
	pageIs(t, name, "one", 30*time.Second)
	st := d.agree(t, team, name)
	for _, want := range []string{"deployed:    " + first + " since", name + "-web-1  " + testImage + "  running  healthy", name + "-init-1  " + testImage + "  exited"} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q:\n%s", want, st)
		}
	}

	if code, errOut := d.pull(t, team, name); code != 0 || errOut != "" {
		t.Fatalf("git pull with nothing new: exit %d, stderr %q", code, errOut)
	}
	if out, _, _ := d.ctl(t, team, name+"//git", "pull"); !strings.Contains(out, "nothing new") {
		t.Errorf("git pull with nothing new does not say so:\n%s", out)
	}

	crash := up.commit(t, map[string]string{"compose.yaml": crashCompose("two")})
	code, errOut := d.pull(t, team, name)
	if code != exitUnhealthy || !strings.HasPrefix(errOut, "pgod: deploy of "+short(crash)+" failed, rolled back to "+short(first)+": unhealthy: ") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("crash-looping commit: exit %d, stderr %q; want %d and one line naming the rollback", code, errOut, exitUnhealthy)
	}
	pageIs(t, name, "one", 30*time.Second)
	st = d.agree(t, team, name)
	for _, want := range []string{"deployed:    " + first, "last attempt: " + crash + " by git pull", "unhealthy", "| crash-two"} {
		if !strings.Contains(st, want) {
			t.Errorf("status after the crash loop lacks %q:\n%s", want, st)
		}
	}

	sick := up.commit(t, map[string]string{"compose.yaml": unhealthyCompose("three")})
	code, errOut = d.pull(t, team, name)
	if code != exitUnhealthy || !strings.Contains(errOut, "rolled back to "+short(first)) || !strings.Contains(errOut, "is unhealthy") {
		t.Fatalf("unhealthy commit: exit %d, stderr %q; want %d, rolled back", code, errOut, exitUnhealthy)
	}
	pageIs(t, name, "one", 30*time.Second)
	if st = d.agree(t, team, name); !strings.Contains(st, "last attempt: "+sick) {
		t.Errorf("status does not name the unhealthy attempt:\n%s", st)
	}

	good := up.commit(t, map[string]string{"compose.yaml": healthyCompose("four")})
	if code, errOut := d.pull(t, team, name); code != 0 {
		t.Fatalf("healthy commit: exit %d, stderr %q", code, errOut)
	}
	pageIs(t, name, "four", 10*time.Second)
	if st = d.agree(t, team, name); !strings.Contains(st, "deployed:    "+good) || strings.Contains(st, "last attempt") {
		t.Errorf("status after a good deploy:\n%s", st)
	}

	bad := up.commit(t, map[string]string{"compose.yaml": healthyCompose("five") + "    privileged: true\n"})
	code, errOut = d.pull(t, team, name)
	if code != exitRejected || !strings.HasPrefix(errOut, "pgod: rejected "+short(bad)) {
		t.Fatalf("rejected commit: exit %d, stderr %q; want %d", code, errOut, exitRejected)
	}
	if st = d.agree(t, team, name); !strings.Contains(st, "rejected:    "+bad) || !strings.Contains(st, "deployed:    "+good) {
		t.Errorf("status after a rejection:\n%s", st)
	}

	// The exit status reaches a stock OpenSSH client as it reaches pgoctl.
	_, port, _ := strings.Cut(d.sshAddr, ":")
	cmd := exec.Command("ssh", "-p", port, "-i", team, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"ci@127.0.0.1", name+"//git pull")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != exitRejected || !strings.HasPrefix(stderr.String(), "pgod: rejected") {
		t.Errorf("ssh git pull: %v, stderr %q; want exit %d", err, stderr.String(), exitRejected)
	}

	// Right after down, status says nothing runs.
	if _, errOut, code := d.ctl(t, team, name+"//down"); code != 0 {
		t.Fatalf("down: exit %d: %s", code, errOut)
	}
	if st = d.agree(t, team, name); !strings.Contains(st, "containers:  0 running of 0 desired") {
		t.Errorf("status right after down:\n%s", st)
	}
}

// TestE2EDeployConfigFixReadmits: a commit rejected for a port the operator
// then grants in pgo.toml deploys after the reload, with no new commit.
func TestE2EDeployConfigFixReadmits(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("rejudge")
	up := newUpstream(t)
	d, team, first := deployDaemon(t, name, up, map[string]string{"compose.yaml": webCompose("one")})
	_, port, _ := strings.Cut(freePort(t), ":")
	withPort := webCompose("two") + fmt.Sprintf("    ports: [\"127.0.0.1:%s:8080\"]\n", port)
	bad := up.commit(t, map[string]string{"compose.yaml": withPort})
	if code, errOut := d.pull(t, team, name); code != exitRejected || !strings.Contains(errOut, port) {
		t.Fatalf("commit publishing port %s: exit %d, stderr %q; want %d naming the port", port, code, errOut, exitRejected)
	}
	// Unchanged rules: check says the head is still refused, and exits 1.
	if out, _, code := d.ctl(t, team, name+"//check"); code != 1 || !strings.Contains(out, "rejected "+short(bad)) {
		t.Errorf("check under unchanged rules: exit %d:\n%s", code, out)
	}
	cfg := serviceTOML(name, up.bare, `health_timeout = "8s"`, fmt.Sprintf("ports = [%q]", port))
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(sighup)
	pageIs(t, name, "two", 60*time.Second)
	// The page changes at up; the deploy counts once the health gate passed.
	waitFor(t, "the re-admitted commit to be deployed", 60*time.Second, func() bool {
		out, _, _ := d.ctl(t, team, name+"//status")
		return strings.Contains(out, "deployed:    "+bad)
	})
	if st := d.agree(t, team, name); !strings.Contains(st, "deployed:    "+bad) || strings.Contains(st, "rejected:") {
		t.Errorf("status after the config fix:\n%s", st)
	}
	_ = first
}

// TestE2EDeployRebuildsChangedBuild: a commit that changes only a
// Dockerfile builds that service again and deploys it, health-gated; the
// service beside it, whose build did not change, keeps its container.
func TestE2EDeployRebuildsChangedBuild(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("build")
	up := newUpstream(t)
	dockerfile := func(page string) string {
		return "FROM " + testImage + "\nRUN mkdir -p /srv && echo " + page + " > /srv/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv\"]\n"
	}
	compose := `services:
  web:
    build: ./web
    restart: unless-stopped
    stop_grace_period: 1s
  side:
    build: ./side
    restart: unless-stopped
    stop_grace_period: 1s
`
	t.Cleanup(func() {
		exec.Command("docker", "rmi", "-f", name+"-web", name+"-side").Run()
	})
	d, team, _ := deployDaemon(t, name, up, map[string]string{"compose.yaml": compose,
		"web/Dockerfile": dockerfile("one"), "side/Dockerfile": dockerfile("side")})
	pageIs(t, name, "one", 30*time.Second)
	side := containerID(t, name+"-side-1")

	changed := up.commit(t, map[string]string{"web/Dockerfile": dockerfile("two")})
	code, errOut := d.pull(t, team, name)
	if code != 0 {
		t.Fatalf("Dockerfile-only commit: exit %d, stderr %q", code, errOut)
	}
	pageIs(t, name, "two", 10*time.Second)
	if got := containerID(t, name+"-side-1"); got != side {
		t.Errorf("the service whose build did not change was recreated: %s -> %s", side, got)
	}
	if st := d.agree(t, team, name); !strings.Contains(st, "deployed:    "+changed) {
		t.Errorf("status after the rebuild:\n%s", st)
	}

	// Restarted, pgod keeps what it built: nothing deploys again.
	d.stop(t)
	web := containerID(t, name+"-web-1")
	d.start(t, "-t", "1h")
	waitFor(t, "pgod to answer again", 30*time.Second, func() bool {
		_, _, code := d.ctl(t, team, name+"//ping")
		return code == 0
	})
	if out, _, code := d.ctl(t, team, name+"//git", "pull"); code != 0 || !strings.Contains(out, "nothing new") {
		t.Errorf("git pull after a restart: exit %d:\n%s", code, out)
	}
	if got := containerID(t, name+"-web-1"); got != web {
		t.Errorf("a restart of pgod rebuilt and recreated web: %s -> %s", web, got)
	}

	// A rebuilt image that crashes is rolled back to the last good build.
	broken := strings.Replace(dockerfile("three"), `CMD ["httpd"`, `CMD ["/no/such/httpd"`, 1)
	up.commit(t, map[string]string{"web/Dockerfile": broken})
	if code, errOut := d.pull(t, team, name); code != exitUnhealthy && code != exitFailed {
		t.Fatalf("broken Dockerfile: exit %d, stderr %q; want %d or %d", code, errOut, exitUnhealthy, exitFailed)
	}
	pageIs(t, name, "two", 30*time.Second)

}

// TestE2EDeployImageUpdates: with update_images, a tag that moves to a new
// image (here by docker tag: no registry is reachable, so the poll's pull
// fails and is ignored) is deployed, health-gated; one that crashes is
// rolled back to the image kept as <name>/rollback/web and not tried again.
func TestE2EDeployImageUpdates(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("imgupd")
	ref := name + "/app:live"
	build := func(tag, dockerfile string) {
		t.Helper()
		cmd := exec.Command("docker", "build", "-q", "-t", tag, "-")
		cmd.Stdin = strings.NewReader("FROM " + testImage + "\n" + dockerfile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker build %s: %v\n%s", tag, err, out)
		}
	}
	page := func(p string) string { return "RUN mkdir -p /srv && echo " + p + " > /srv/index.html\n" }
	build(name+"/app:one", page("one"))
	build(name+"/app:two", page("two"))
	build(name+"/app:crash", page("crash")+"ENTRYPOINT [\"sh\", \"-c\", \"echo crash-image; exit 3\"]\n")
	t.Cleanup(func() {
		exec.Command("docker", "rmi", "-f", ref, name+"/app:one", name+"/app:two", name+"/app:crash", name+"/rollback/web").Run()
	})
	sh(t, "", "docker", "tag", name+"/app:one", ref)
	compose := `services:
  web:
    image: ` + ref + `
    command: ["httpd", "-f", "-p", "8080", "-h", "/srv"]
    restart: unless-stopped
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 3
`
	keys := openTempDir(t)
	team := newKey(t, keys, "team")
	up := newUpstream(t)
	first := up.commit(t, map[string]string{"compose.yaml": compose, "ssh/team.pub": readFile(t, team+".pub")})
	d := startDaemon(t, serviceTOML(name, up.bare, `health_timeout = "8s"`, `update_images = true`))
	pageIs(t, name, "one", 60*time.Second)

	sh(t, "", "docker", "tag", name+"/app:two", ref)
	pageIs(t, name, "two", 60*time.Second)
	d.logShows(t, "image update: web run their new images", 10*time.Second)
	if st := d.agree(t, team, name); !strings.Contains(st, "deployed:    "+first) || strings.Contains(st, "last attempt") {
		t.Errorf("status after an image update:\n%s", st)
	}
	one := strings.TrimSpace(sh(t, "", "docker", "image", "inspect", "--format", "{{.Id}}", name+"/app:one"))
	if kept := strings.TrimSpace(sh(t, "", "docker", "image", "inspect", "--format", "{{.Id}}", name+"/rollback/web")); kept != one {
		t.Errorf("%s/rollback/web is %s, want the image that ran before, %s", name, kept, one)
	}

	sh(t, "", "docker", "tag", name+"/app:crash", ref)
	d.logShows(t, "image update of web failed, rolled back to the old images", 60*time.Second)
	pageIs(t, name, "two", 30*time.Second)
	st := d.agree(t, team, name)
	if !strings.Contains(st, "by image update") || !strings.Contains(st, "unhealthy") || !strings.Contains(st, "| crash-image") {
		t.Errorf("status after a failed image update:\n%s", st)
	}
	// The crashing image is not tried again poll after poll.
	before := strings.Count(d.logs(), "image update: new images for web")
	mark := strings.Count(d.logs(), `cmd="git ls-remote`)
	waitFor(t, "three more polls", 30*time.Second, func() bool { return strings.Count(d.logs(), `cmd="git ls-remote`) >= mark+3 })
	if after := strings.Count(d.logs(), "image update: new images for web"); after != before {
		t.Errorf("the rolled-back image was tried again (%d updates, then %d)", before, after)
	}
}
