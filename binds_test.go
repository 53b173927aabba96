package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pinTest is a service directory, a pinner for it and the cleanup of its
// mounts; pins need root, as pgod has.
func pinTest(t *testing.T) (data string, p *pinner) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bind pins need root")
	}
	root := t.TempDir()
	data = filepath.Join(root, "data")
	os.MkdirAll(data, 0o755)
	p = &pinner{dir: filepath.Join(root, "pins", "web"), roots: []string{data}}
	t.Cleanup(func() {
		if err := unpinAll(p.dir); err != nil {
			t.Errorf("unpinAll: %v", err)
		}
	})
	return data, p
}

func pinnedBinds(t *testing.T, sources ...string) []byte {
	t.Helper()
	var vols []any
	for i, s := range sources {
		vols = append(vols, map[string]any{"type": "bind", "source": s, "target": "/m" + string(rune('a'+i)),
			"bind": map[string]any{"create_host_path": true}})
	}
	p := map[string]any{"name": "web", "services": map[string]any{"app": map[string]any{"image": "x", "volumes": vols}}}
	b, _ := json.Marshal(p)
	return b
}

// pinJSON pins a project given as JSON and returns it as JSON.
func pinJSON(p *pinner, project []byte, mount bool) ([]byte, error) {
	proj, err := decodeProject(project)
	if err != nil {
		return nil, err
	}
	if err := p.pinProject(proj, mount); err != nil {
		return nil, err
	}
	return json.Marshal(proj)
}

func pinnedSources(t *testing.T, project []byte) []string {
	t.Helper()
	proj, err := decodeProject(project)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, src := range pinSources(proj) {
		out = append(out, src.path)
	}
	return out
}

// A pin keeps the directory pgod opened, whatever happens to the path later:
// the route of a container that swaps a bind source for a symlink to /.
func TestPinSurvivesASwappedSource(t *testing.T) {
	data, p := pinTest(t)
	src := filepath.Join(data, "x")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "marker"), []byte("mine"), 0o644)
	out, err := pinJSON(p, pinnedBinds(t, src), true)
	if err != nil {
		t.Fatal(err)
	}
	pin := pinnedSources(t, out)[0]
	if !strings.HasPrefix(pin, p.dir+"/") {
		t.Fatalf("source %s is not replaced by a pin under %s", pin, p.dir)
	}
	// What a container with the data directory bound can do after the check.
	os.Rename(src, src+".old")
	if err := os.Symlink("/", src); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(pin, "marker"))
	if err != nil || string(got) != "mine" {
		t.Fatalf("pin shows %q, %v; want the directory that was pinned", got, err)
	}
	if _, err := os.Stat(filepath.Join(pin, "etc")); err == nil {
		t.Fatal("the pin leads to the host's /")
	}
	// Pinning again (the next up) walks the path anew and refuses the link.
	if _, err := pinJSON(p, pinnedBinds(t, src), true); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("pinning through a symlink: err = %v, want a refusal naming the symlink", err)
	}
}

func TestPinRefusesASymlinkAnywhereBelowTheRoot(t *testing.T) {
	data, p := pinTest(t)
	os.MkdirAll(filepath.Join(data, "real", "sub"), 0o755)
	os.Symlink("real", filepath.Join(data, "link"))
	os.Symlink("/etc", filepath.Join(data, "real", "etc"))
	for _, src := range []string{"link/sub", "link", "real/etc", "real/etc/ssh"} {
		_, err := pinJSON(p, pinnedBinds(t, filepath.Join(data, src)), true)
		if err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("%s: err = %v, want a symlink refusal", src, err)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "real", "etc", "ssh2")); err == nil {
		t.Error("something was created through the link")
	}
}

func TestPinCreatesMissingSourcesLikeTheEngine(t *testing.T) {
	data, p := pinTest(t)
	src := filepath.Join(data, "new", "deep")
	out, err := pinJSON(p, pinnedBinds(t, src), true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("missing source: %v %v, want a 0755 directory", fi, err)
	}
	proj, _ := decodeProject(out)
	vol := jsonObject(jsonList(jsonObject(jsonObject(proj["services"])["app"])["volumes"])[0])
	if truthy(jsonObject(vol["bind"])["create_host_path"]) {
		t.Error("a pin is handed over with create_host_path on: after a reboot the engine would start on an empty directory")
	}
	os.WriteFile(filepath.Join(src, "f"), []byte("1"), 0o644)
	if _, err := os.Stat(filepath.Join(pinnedSources(t, out)[0], "f")); err != nil {
		t.Errorf("a file written in the source does not show in the pin: %v", err)
	}
}

func TestPinFilesAndOutsideSources(t *testing.T) {
	data, p := pinTest(t)
	file := filepath.Join(data, "app.conf")
	os.WriteFile(file, []byte("conf"), 0o644)
	out, err := pinJSON(p, pinnedBinds(t, file, "/etc/localtime"), true)
	if err != nil {
		t.Fatal(err)
	}
	srcs := pinnedSources(t, out)
	if got, _ := os.ReadFile(srcs[0]); string(got) != "conf" {
		t.Errorf("file pin reads %q", got)
	}
	if srcs[1] != "/etc/localtime" {
		t.Errorf("a host path outside the service's directories became %s; it is not the team's to change", srcs[1])
	}
	again, err := pinJSON(p, pinnedBinds(t, file, "/etc/localtime"), false)
	if err != nil || string(again) != string(out) {
		t.Errorf("naming the pins without mounting gives another project:\n%s\n%s", again, out)
	}
}

func TestUnpinUnusedKeepsWhatRuns(t *testing.T) {
	data, p := pinTest(t)
	a, b := filepath.Join(data, "a"), filepath.Join(data, "b")
	if _, err := pinJSON(p, pinnedBinds(t, a, b), true); err != nil {
		t.Fatal(err)
	}
	if err := p.unpinUnused(pinnedBinds(t, b)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.pinPath(a)); err == nil {
		t.Error("the pin of a source no longer deployed stays")
	}
	if _, mounted, _ := mountAt(mountinfoPath, p.pinPath(b)); !mounted {
		t.Error("the pin of a deployed source is gone")
	}
}
