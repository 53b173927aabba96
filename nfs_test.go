package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseNFSURL(t *testing.T) {
	for share, want := range map[string][2]string{
		"nfs://server.example.org/share":       {"server.example.org:/share", "rw,nosuid,hard"},
		"nfs://server.example.org/srv/data/":   {"server.example.org:/srv/data", "rw,nosuid,hard"},
		"nfs://[2001:db8::1]/export":           {"[2001:db8::1]:/export", "rw,nosuid,hard"},
		"nfs://server/with%20space":            {"server:/with space", "rw,nosuid,hard"},
		"nfs://SERVER.example.org/Case/Kept":   {"SERVER.example.org:/Case/Kept", "rw,nosuid,hard"},
		"nfs://nas/volume1/pgo/web-data_2024/": {"nas:/volume1/pgo/web-data_2024", "rw,nosuid,hard"},
	} {
		source, options, err := parseNFSURL(share)
		if err != nil || source != want[0] || options != want[1] {
			t.Errorf("parseNFSURL(%q) = %q, %q, %v; want %q, %q", share, source, options, err, want[0], want[1])
		}
	}
	for _, bad := range []string{
		"", "server:/share", "nfs://", "nfs://server", "nfs://server/", "smb://server/share",
		"nfs://user:pw@server/share", "nfs://server/share?x=1", "nfs://server/share#f", "nfs://10.0.0.5:2049/export",
		"nfs://server/a/../../etc", "nfs://server//share", "nfs://server:0/share", "nfs://server:99999/share",
		"nfs://server/a%2Cb", "nfs:server/share", "nfs://server/a%0Ab",
	} {
		if source, _, err := parseNFSURL(bad); err == nil {
			t.Errorf("parseNFSURL(%q) = %q, want an error", bad, source)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "nfs", "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := parseMountinfo(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{"/", "ext4", "/dev/vda1"},
		{"/proc", "proc", "proc"},
		{"/data/web", "nfs4", "nas.example.org:/export/web"},
		{"/data/with space\tand tab", "nfs", "nas:/export/a b"},
		{`/data/back\slash`, "tmpfs", "tmpfs"},
		{"/data/no-optional", "tmpfs", "none"},
		{`/data/bad\escape\9`, "tmpfs", "x"},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d: %q", len(entries), len(want), entries)
	}
	for i := range want {
		if entries[i] != want[i] {
			t.Errorf("entry %d = %q, want %q", i, entries[i], want[i])
		}
	}
	if _, err := parseMountinfo(strings.NewReader("36 35 98:0 / /mnt rw shared:1\n")); err == nil {
		t.Error("a line without the - separator was accepted")
	}
}

func FuzzMountinfoLine(f *testing.F) {
	f.Add(`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`)
	f.Add(`40 1 0:50 / /data/with\040space rw - nfs nas:/export\134x rw`)
	f.Add(`1 2 3 4 5 6 -`)
	f.Fuzz(func(t *testing.T, line string) {
		e, err := parseMountinfoLine(line)
		if err != nil {
			return
		}
		// Unescaping never lengthens a field.
		if len(e.mountPoint) > len(line) || len(e.source) > len(line) {
			t.Errorf("parseMountinfoLine(%q) = %q: longer than its input", line, e)
		}
		if strings.Contains(e.mountPoint, " ") && !strings.Contains(line, `\040`) {
			t.Errorf("space in mount point %q without \\040 in %q", e.mountPoint, line)
		}
	})
}

// fakeMount writes a substitute mount command that records its arguments
// one per line in a file, and fails with a message when exitCode is not 0.
func fakeMount(t *testing.T, exitCode int) (cmd, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "args")
	cmd = filepath.Join(dir, "mount")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '" + record + "'\n"
	if exitCode != 0 {
		script += "echo 'mount.nfs: Connection refused' >&2\nexit " + strconv.Itoa(exitCode) + "\n"
	}
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, record
}

func recorded(t *testing.T, record string) []string {
	t.Helper()
	b, err := os.ReadFile(record)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestEnsureMountRunsMount(t *testing.T) {
	cmd, record := fakeMount(t, 0)
	target := filepath.Join(t.TempDir(), "data", "web")
	if err := ensureMount(context.Background(), cmd, "nfs://nas.example.org/export/web", target); err != nil {
		t.Fatal(err)
	}
	want := []string{"-t", "nfs", "-o", "rw,nosuid,hard", "nas.example.org:/export/web", target}
	if got := recorded(t, record); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("mount ran with %q, want %q", got, want)
	}
	if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
		t.Errorf("target not created: %v", err)
	}
}

func TestEnsureMountFailure(t *testing.T) {
	cmd, _ := fakeMount(t, 32)
	target := filepath.Join(t.TempDir(), "web")
	err := ensureMount(context.Background(), cmd, "nfs://nas.example.org/export/web", target)
	if err == nil {
		t.Fatal("a failing mount command gave no error")
	}
	for _, want := range []string{"nas.example.org:/export/web", target, "Connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := ensureMount(context.Background(), cmd, "http://nas/export", target); err == nil || !strings.Contains(err.Error(), "nfs://") {
		t.Errorf("bad URL: error %v, want one asking for nfs://", err)
	}
}

// tmpfsMount mounts a small tmpfs with the given source name at dir, or
// skips the test when this process may not mount.
func tmpfsMount(t *testing.T, source, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", source, dir).CombinedOutput()
	if err != nil {
		t.Skipf("SKIPPED: cannot mount tmpfs here (need root and CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

// Real mounts, to check the mountinfo logic against what the kernel writes,
// with a name that needs its escapes.
func TestEnsureMountAlreadyMounted(t *testing.T) {
	cmd, record := fakeMount(t, 0)
	target := filepath.Join(t.TempDir(), `data dir\with`+"\ttab", "web")
	tmpfsMount(t, "nas.example.org:/export/web", target)

	ctx := context.Background()
	if err := ensureMount(ctx, cmd, "nfs://nas.example.org/export/web/", target); err != nil {
		t.Fatalf("already mounted: %v", err)
	}
	if got := recorded(t, record); got != nil {
		t.Errorf("mount ran although the share was mounted: %q", got)
	}
	err := ensureMount(ctx, cmd, "nfs://other.example.org/export/web", target)
	if err == nil || !strings.Contains(err.Error(), "already mounted from \"nas.example.org:/export/web\"") {
		t.Errorf("another share on the target: error %v, want one naming what is mounted", err)
	}
	if got := recorded(t, record); got != nil {
		t.Errorf("mount ran over another mount: %q", got)
	}

	if err := unmount(ctx, "umount", target); err != nil {
		t.Fatal(err)
	}
	resolved, _ := mountPoint(target)
	if _, mounted, _ := mountAt(mountinfoPath, resolved); mounted {
		t.Fatal("still mounted after unmount")
	}
	// Not mounted (any more), or not even there: nothing to do, no error.
	if err := unmount(ctx, "/bin/false", target); err != nil {
		t.Errorf("unmount of a plain directory ran umount: %v", err)
	}
	if err := unmount(ctx, "/bin/false", filepath.Join(target, "missing")); err != nil {
		t.Errorf("unmount of a missing directory: %v", err)
	}
	// Once unmounted, ensureMount mounts again.
	if err := ensureMount(ctx, cmd, "nfs://nas.example.org/export/web", target); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, record); len(got) != 6 || got[5] != target {
		t.Errorf("mount after unmount ran with %q", got)
	}
}

func TestUnmountFailure(t *testing.T) {
	target := filepath.Join(t.TempDir(), "web")
	tmpfsMount(t, "tmpfs", target)
	err := unmount(context.Background(), "/bin/false", target)
	if err == nil || !strings.Contains(err.Error(), target) {
		t.Errorf("failing umount: error %v, want one naming %s", err, target)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:         "plain",
		`a\040b`:        "a b",
		`a\011b\012c`:   "a\tb\nc",
		`back\134slash`: `back\slash`,
		`trail\04`:      `trail\04`,
		`not\8oct`:      `not\8oct`,
		`\400`:          `\400`, // beyond a byte: not an escape the kernel writes
		`\`:             `\`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
