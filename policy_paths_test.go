package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvePath(t *testing.T) {
	dir, _ := filepath.EvalSymlinks(t.TempDir())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "real"), 0o755))
	must(os.Symlink("real", filepath.Join(dir, "inside")))
	must(os.Symlink("/etc", filepath.Join(dir, "out")))
	must(os.Symlink("/nonexistent-pgo/x", filepath.Join(dir, "dangling")))
	must(os.WriteFile(filepath.Join(dir, "file"), nil, 0o644))
	tests := []struct {
		in, want, err string
	}{
		{dir + "/inside/new/deeper", dir + "/real/new/deeper", ""},
		{dir + "/out/passwd", "/etc/passwd", ""},
		{dir + "/missing/a/../b", dir + "/missing/b", ""},
		{dir + "/dangling/sub", "", "cannot resolve"},
		{dir + "/file/sub", "", "not a directory"},
		{"relative/path", "", "not an absolute path"},
	}
	for _, tt := range tests {
		got, err := resolveHostPath(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolveHostPath(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolveHostPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestWithin(t *testing.T) {
	for _, tt := range []struct {
		p, root string
		want    bool
	}{
		{"/data/web", "/data/web", true},
		{"/data/web/db", "/data/web", true},
		{"/data/web2", "/data/web", false},
		{"/data", "/data/web", false},
		{"/anything", "/", true},
	} {
		if got := pathWithin(tt.p, tt.root); got != tt.want {
			t.Errorf("pathWithin(%q, %q) = %v", tt.p, tt.root, got)
		}
	}
}

func bindProject(source string) []byte {
	return []byte(`{"name": "team", "services": {"web": {"image": "busybox", "volumes": [{"type": "bind", "source": "` + source + `", "target": "/x"}]}}}`)
}

// TestRecheckPathsSymlinkSwap: a directory validated as inside the data
// directory and replaced by a symlink to / before "up" is caught.
func TestRecheckPathsSymlinkSwap(t *testing.T) {
	base, _ := filepath.EvalSymlinks(t.TempDir())
	checkout, data := filepath.Join(base, "checkout"), filepath.Join(base, "data", "team")
	for _, d := range []string{checkout, filepath.Join(data, "db")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := renderRequest{Service: &Service{Name: "team"}, Checkout: checkout, DataDir: data}
	project := bindProject(data + "/db")
	if vs := validateProject(project, r); len(vs) > 0 {
		t.Fatalf("validate: %v", vs)
	}
	if err := os.Remove(filepath.Join(data, "db")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(data, "db")); err != nil {
		t.Fatal(err)
	}
	vs := recheckPaths(project, r)
	if len(vs) != 1 || !strings.Contains(vs[0].String(), "passes through the symlink "+data+"/db -> / and resolves to /, which is outside the checkout and the data directory") {
		t.Fatalf("recheck after swap = %v", vs)
	}
}

// TestSocketInDataDir: a socket is refused as a bind source even where bind
// mounts may point.
func TestSocketInDataDir(t *testing.T) {
	base, _ := filepath.EvalSymlinks(t.TempDir())
	sock := filepath.Join(base, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("cannot create a unix socket: %v", err)
	}
	defer l.Close()
	r := renderRequest{Service: &Service{Name: "team"}, Checkout: "/nonexistent-checkout", DataDir: base}
	vs := recheckPaths(bindProject(sock), r)
	if len(vs) != 1 || !strings.Contains(vs[0].Msg, "is a socket or device node") {
		t.Fatalf("violations = %v; want socket refused", vs)
	}
	if vs := recheckPaths(bindProject(base+"/plain"), r); len(vs) > 0 {
		t.Errorf("plain path refused: %v", vs)
	}
}

func TestXPgoReload(t *testing.T) {
	for _, tt := range []struct {
		json string
		want bool
	}{
		{`{"name": "t", "services": {}}`, true},
		{`{"x-pgo": {"reload": false}}`, false},
		{`{"x-pgo": {"reload": true}}`, true},
		{`{"x-pgo": {"reload": "false"}}`, true},
		{`not json`, true},
	} {
		if got := xPgoReload([]byte(tt.json)); got != tt.want {
			t.Errorf("xPgoReload(%s) = %v; want %v", tt.json, got, tt.want)
		}
	}
}

// TestWritableBindOfGit: a container that can write the checkout's .git
// could plant hooks that pgod's git then runs on the host.
func TestWritableBindOfGit(t *testing.T) {
	base, _ := filepath.EvalSymlinks(t.TempDir())
	checkout := filepath.Join(base, "checkout")
	for _, d := range []string{filepath.Join(checkout, ".git", "hooks"), filepath.Join(checkout, "html")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(".git", filepath.Join(checkout, "meta")); err != nil {
		t.Fatal(err)
	}
	r := renderRequest{Service: &Service{Name: "team"}, Checkout: checkout, DataDir: filepath.Join(base, "data")}
	for _, source := range []string{checkout, checkout + "/.git", checkout + "/.git/hooks"} {
		vs := recheckPaths(bindProject(source), r)
		if len(vs) != 1 || !strings.Contains(vs[0].Msg, "reaches the checkout's .git") {
			t.Errorf("writable bind of %s: %v", source, vs)
		}
	}
	// Through a symlink, it is refused before it gets that far.
	if vs := recheckPaths(bindProject(checkout+"/meta"), r); len(vs) != 1 || !strings.Contains(vs[0].Msg, "passes through the symlink ./meta -> .git") {
		t.Errorf("writable bind of ./meta -> .git: %v", vs)
	}
	if vs := recheckPaths(bindProject(checkout+"/html"), r); len(vs) != 0 {
		t.Errorf("writable bind of a subdirectory refused: %v", vs)
	}
	readOnly := []byte(`{"name": "team", "services": {"web": {"image": "busybox", "volumes": [{"type": "bind", "source": "` + checkout + `", "target": "/x", "read_only": true}]}}}`)
	if vs := recheckPaths(readOnly, r); len(vs) != 0 {
		t.Errorf("read-only bind of the checkout refused: %v", vs)
	}
}
