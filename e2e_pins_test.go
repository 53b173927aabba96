//go:build e2e

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The routes by which a bind source swapped for a symlink after the check
// would mount the host's files, with the real engine. Each victim service
// lists its /host mount at every start and exits when /ctl/go appears, so
// that Docker's own restart policy (which pgod never sees) starts it again
// and resolves its mounts anew. The host directory the symlinks point to
// holds a marker that must never show.

// hostSecretDir is a directory of the host's outside every service directory.
func hostSecretDir(t *testing.T) string {
	dir := openTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "HOST-SECRET"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// victimService binds source at /host and ctl at /ctl, prints /host at each
// start and exits when /ctl/go appears; restart: always brings it back.
func victimService(source, ctl string) string {
	return `  victim:
    image: ` + testImage + `
    restart: always
    stop_grace_period: 1s
    command: ["sh", "-c", "echo start; ls /host; while [ ! -e /ctl/go ]; do sleep 0.1; done; rm /ctl/go; exit 1"]
    volumes:
      - ` + source + `:/host
      - ` + ctl + `:/ctl
`
}

// restartByPolicy makes the victim exit and waits until Docker's restart
// policy has started it again and it listed /host once more.
func restartByPolicy(t *testing.T, project, ctlDir string) {
	t.Helper()
	name := project + "-victim-1"
	before := strings.Count(containerLogs(t, name), "start")
	if err := os.WriteFile(filepath.Join(ctlDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restart policy to start "+name+" again, or the engine to refuse", 30*time.Second, func() bool {
		return strings.Count(containerLogs(t, name), "start") > before || containerError(name) != ""
	})
}

func containerLogs(t *testing.T, name string) string {
	out, _ := exec.Command("docker", "logs", name).CombinedOutput()
	return string(out)
}

func containerError(name string) string {
	out, _ := exec.Command("docker", "inspect", "--format", "{{.State.Error}}", name).Output()
	return strings.TrimSpace(string(out))
}

// TestE2EPinDataDirSwappedUnderARestartPolicy: a container that has the data
// directory bound (here one started beside the project, as any service of an
// earlier commit could have been) replaces the victim's bind source with a
// symlink to a host directory. Docker's restart policy starts the victim
// again; it must still see its own directory.
func TestE2EPinDataDirSwappedUnderARestartPolicy(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("pinsdata")
	secret := hostSecretDir(t)
	up := newUpstream(t)
	compose := "services:\n" + victimService("/data/"+name+"/x", "/data/"+name+"/ctl")
	up.commit(t, map[string]string{"compose.yaml": compose})
	d := startDaemonWithData(t, serviceTOML(name, up.bare), name)
	data := filepath.Join(d.datadir, name)
	os.MkdirAll(filepath.Join(data, "x"), 0o755)
	os.WriteFile(filepath.Join(data, "x", "MINE"), nil, 0o644)

	waitFor(t, "the victim to run", 60*time.Second, func() bool {
		return strings.Contains(containerLogs(t, name+"-victim-1"), "MINE")
	})
	swap := fmt.Sprintf("mv /d/x /d/x.old && ln -s %s /d/x", secret)
	if out, err := exec.Command("docker", "run", "--rm", "-v", data+":/d", testImage, "sh", "-c", swap).CombinedOutput(); err != nil {
		t.Fatalf("swap: %s", firstLine(out, err))
	}
	restartByPolicy(t, name, filepath.Join(data, "ctl"))
	logs := containerLogs(t, name+"-victim-1")
	if strings.Contains(logs, "HOST-SECRET") {
		t.Fatalf("after the swap the victim mounted the host's directory:\n%s", logs)
	}
	if strings.Count(logs, "MINE") < 2 {
		t.Fatalf("the victim did not see its own directory again after the restart:\n%s\nerror: %s", logs, containerError(name+"-victim-1"))
	}
}

// TestE2EPinCheckoutSwappedByACommit: commit 1 binds ./x; commit 2, with
// x-pgo reload false so that it is only checked out, replaces x with a
// symlink to a host directory and drops the bind. The running victim keeps
// its directory across a restart by policy, and pgod's repair never binds
// through the link.
func TestE2EPinCheckoutSwappedByACommit(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("pinsgit")
	secret := hostSecretDir(t)
	up := newUpstream(t)
	compose := "x-pgo:\n  reload: false\nservices:\n" + victimService("./x", "/data/"+name+"/ctl")
	up.commit(t, map[string]string{"compose.yaml": compose, "x/MINE": "1"})
	d := startDaemonWithData(t, serviceTOML(name, up.bare), name)
	waitFor(t, "the victim to run", 60*time.Second, func() bool {
		return strings.Contains(containerLogs(t, name+"-victim-1"), "MINE")
	})

	os.RemoveAll(filepath.Join(up.work, "x"))
	if err := os.Symlink(secret, filepath.Join(up.work, "x")); err != nil {
		t.Fatal(err)
	}
	second := up.commit(t, map[string]string{"compose.yaml": "x-pgo:\n  reload: false\nservices:\n  victim:\n    image: " + testImage + "\n"})
	checkout := filepath.Join(d.dir, name)
	waitFor(t, "commit 2 to be checked out", 30*time.Second, func() bool {
		target, err := os.Readlink(filepath.Join(checkout, "x"))
		return err == nil && target == secret
	})
	d.logShows(t, short(second)+" is checked out", 10*time.Second)

	restartByPolicy(t, name, filepath.Join(d.datadir, name, "ctl"))
	logs := containerLogs(t, name+"-victim-1")
	if strings.Contains(logs, "HOST-SECRET") {
		t.Fatalf("after commit 2 the running project mounted the host's directory:\n%s", logs)
	}

	// Removed by hand, the victim is brought back by pgod's repair, which
	// walks ./x again: it refuses the link rather than mount it.
	sh(t, "", "docker", "rm", "-f", name+"-victim-1")
	waitFor(t, "pgod to refuse the link", 30*time.Second, func() bool {
		logs := d.logs()
		return strings.Contains(logs, "passes through the symlink ./x") || strings.Contains(logs, "x is a symlink, which pgod never follows")
	})
	if c := containerID(t, name+"-victim-1"); c != "" {
		t.Fatalf("repair brought the victim back through the link: %s\n%s", c, containerLogs(t, name+"-victim-1"))
	}
}

// startDaemonWithData is startDaemon with the test's services' data
// directories under /data/<name>, as bind sources in compose files name
// them, linked to the daemon's --datadir.
func startDaemonWithData(t *testing.T, cfg, name string) *daemonProc {
	t.Helper()
	d := startDaemon(t, cfg, "--datadir", "/data")
	d.datadir = "/data"
	t.Cleanup(func() { os.RemoveAll(filepath.Join("/data", name)) })
	waitFor(t, "the data directory", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join("/data", name))
		return err == nil
	})
	return d
}

// TestE2EPinDataDirLinkPlantedForALaterCommit: a container of commit 1 has
// the data directory bound and plants a symlink to a host directory there;
// commit 2 binds through it. The link is refused (by the check, or at the
// latest when pgod pins the source) and the host directory never shows.
func TestE2EPinDataDirLinkPlantedForALaterCommit(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("pinsplant")
	secret := hostSecretDir(t)
	up := newUpstream(t)
	planter := `services:
  planter:
    image: ` + testImage + `
    restart: unless-stopped
    stop_grace_period: 1s
    command: ["sh", "-c", "ln -s ` + secret + ` /d/x && echo planted; exec sleep 3600"]
    volumes:
      - /data/` + name + `:/d
`
	up.commit(t, map[string]string{"compose.yaml": planter})
	d := startDaemonWithData(t, serviceTOML(name, up.bare), name)
	waitFor(t, "the link to be planted", 60*time.Second, func() bool {
		return strings.Contains(containerLogs(t, name+"-planter-1"), "planted")
	})
	second := up.commit(t, map[string]string{"compose.yaml": "services:\n" + victimService("/data/"+name+"/x", "/data/"+name+"/ctl")})
	waitFor(t, "commit 2 to be refused", 60*time.Second, func() bool {
		logs := d.logs()
		return strings.Contains(logs, "rejected "+short(second)) || strings.Contains(logs, "deploy of "+short(second)+" failed")
	})
	if logs := d.logs(); !strings.Contains(logs, "symlink") && !strings.Contains(logs, "resolves to") {
		t.Errorf("the refusal does not say the source leads elsewhere:\n%s", logs)
	}
	if logs := containerLogs(t, name+"-victim-1"); strings.Contains(logs, "HOST-SECRET") {
		t.Fatalf("the victim mounted the host directory through the planted link:\n%s", logs)
	}
}
