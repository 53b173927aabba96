package main

import (
	"fmt"
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

// pathsProject is a project of one service mounting vols (JSON objects),
// with extra top-level JSON (secrets) if given.
func pathsProject(extra string, vols ...string) []byte {
	return []byte(`{"name": "team", ` + extra + `"services": {"web": {"image": "busybox", "volumes": [` + strings.Join(vols, ", ") + `]}}}`)
}

func bindVol(source string, readOnly bool) string {
	return fmt.Sprintf(`{"type": "bind", "source": %q, "target": "/x", "read_only": %v}`, source, readOnly)
}

// pathsFixture makes a checkout and a data directory, both reached through
// a symlink of the host (as /var/lib -> /srv would be), with symlinks below
// them.
func pathsFixture(t *testing.T) (r renderRequest, checkout, data string) {
	t.Helper()
	base, _ := filepath.EvalSymlinks(t.TempDir())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(base, "real", "checkout", "conf", "prod"), 0o755))
	must(os.MkdirAll(filepath.Join(base, "real", "checkout", "html"), 0o755))
	must(os.MkdirAll(filepath.Join(base, "real", "data", "v2"), 0o755))
	must(os.Symlink("real", filepath.Join(base, "srv")))
	checkout, data = filepath.Join(base, "srv", "checkout"), filepath.Join(base, "srv", "data")
	must(os.Symlink("conf/prod", filepath.Join(checkout, "config")))
	must(os.Symlink(filepath.Join(checkout, "conf"), filepath.Join(checkout, "abs")))
	must(os.Symlink("prod", filepath.Join(checkout, "conf", "latest")))
	must(os.Symlink("v2", filepath.Join(data, "current")))
	must(os.Symlink(data, filepath.Join(base, "datalink")))
	must(os.WriteFile(filepath.Join(checkout, "conf", "prod", "token"), nil, 0o600))
	return renderRequest{Service: &Service{Name: "team"}, Checkout: checkout, DataDir: data}, checkout, data
}

// TestBindThroughSymlinks: a host path below the checkout or the data
// directory reached through a symlink there is refused, saying which real
// path to bind; the directories themselves may be reached through the
// host's symlinks.
func TestBindThroughSymlinks(t *testing.T) {
	r, checkout, data := pathsFixture(t)
	base := filepath.Dir(filepath.Dir(checkout))
	real := filepath.Join(base, "real", "data")
	tests := []struct {
		project []byte
		want    string // "" for allowed
	}{
		{pathsProject("", bindVol(checkout+"/html", false)), ""},
		{pathsProject("", bindVol(base+"/datalink/db", false)), ""},
		{pathsProject("", bindVol(checkout+"/config", true)),
			"bind mount source ./config passes through the symlink ./config -> conf/prod; pgod's directories do not follow symlinks, so bind ./conf/prod"},
		{pathsProject("", bindVol(checkout+"/abs/prod", true)),
			"bind mount source ./abs/prod passes through the symlink ./abs -> " + checkout + "/conf; pgod's directories do not follow symlinks, so bind ./conf/prod"},
		{pathsProject("", bindVol(checkout+"/conf/latest/new", false)),
			"bind mount source ./conf/latest/new passes through the symlink ./conf/latest -> prod; pgod's directories do not follow symlinks, so bind ./conf/prod/new"},
		{pathsProject("", bindVol(data+"/current", false)),
			"bind mount source " + data + "/current passes through the symlink " + real + "/current -> v2; pgod's directories do not follow symlinks, so bind " + real + "/v2"},
		{pathsProject(`"secrets": {"s": {"file": "` + checkout + `/config/token"}}, `),
			"secrets file ./config/token passes through the symlink ./config -> conf/prod; pgod's directories do not follow symlinks, so bind ./conf/prod/token"},
		{[]byte(`{"name": "team", "services": {"web": {"build": {"context": "` + checkout + `/config"}}}}`),
			"build context ./config passes through the symlink ./config -> conf/prod"},
	}
	for _, tt := range tests {
		vs := recheckPaths(tt.project, r)
		got := fmt.Sprint(vs)
		switch {
		case tt.want == "" && len(vs) > 0:
			t.Errorf("%s: refused: %s", tt.project, got)
		case tt.want != "" && (len(vs) != 1 || !strings.Contains(got, tt.want)):
			t.Errorf("%s:\n got %s\nwant %s", tt.project, got, tt.want)
		}
	}
}

// TestBindInsideWritableBind: a mount whose source lies inside another
// writable bind of the project is refused; inside a read-only one it is not.
func TestBindInsideWritableBind(t *testing.T) {
	r, checkout, data := pathsFixture(t)
	tests := []struct {
		project []byte
		want    string
	}{
		{pathsProject("", bindVol(checkout+"/conf", false), bindVol(checkout+"/conf/prod", true)),
			"services.web.volumes[1]: service \"web\": ./conf/prod lies inside ./conf, which services.web.volumes[0] binds writable"},
		{pathsProject("", bindVol(data+"/db", true), bindVol(data, false)),
			"services.web.volumes[0]: service \"web\": " + data + "/db lies inside " + data + ", which services.web.volumes[1] binds writable"},
		{pathsProject(`"secrets": {"s": {"file": "`+checkout+`/conf/prod/token"}}, `, bindVol(checkout+"/conf", false)),
			"secrets.s.file: ./conf/prod/token lies inside ./conf"},
		{pathsProject("", bindVol(checkout+"/conf", true), bindVol(checkout+"/conf/prod", false)), ""},
		{pathsProject("", bindVol(checkout+"/html", false), bindVol(checkout+"/html", false)), ""},
		{pathsProject("", bindVol(checkout+"/html", false), bindVol(checkout+"/conf", false)), ""},
	}
	for _, tt := range tests {
		vs := recheckPaths(tt.project, r)
		got := fmt.Sprint(vs)
		switch {
		case tt.want == "" && len(vs) > 0:
			t.Errorf("%s: refused: %s", tt.project, got)
		case tt.want != "" && (len(vs) != 1 || !strings.Contains(got, tt.want)):
			t.Errorf("%s:\n got %s\nwant %s", tt.project, got, tt.want)
		}
	}
}

// TestTimezoneBinds: the host's time zone files may be bound read-only, and
// nothing else outside the service's directories.
func TestTimezoneBinds(t *testing.T) {
	r, _, _ := pathsFixture(t)
	for _, tt := range []struct {
		source   string
		readOnly bool
		allowed  bool
	}{
		{"/etc/localtime", true, true},
		{"/etc/timezone", true, true},
		{"/etc/localtime", false, false},
		{"/etc/hostname", true, false},
		{"/usr/share/zoneinfo", true, false},
	} {
		vs := recheckPaths(pathsProject("", bindVol(tt.source, tt.readOnly)), r)
		if (len(vs) == 0) != tt.allowed {
			t.Errorf("bind %s read-only %v: %v; want allowed %v", tt.source, tt.readOnly, vs, tt.allowed)
		}
	}
}
