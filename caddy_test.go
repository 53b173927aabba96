package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func caddyServices() []*Service {
	return []*Service{
		{Name: "shop", URLs: map[string]string{"shop.example.org": "web:8080", "www.shop.example.org": "web:8080", "api.shop.example.org": "api:3000"}},
		{Name: "blog", URLs: map[string]string{"blog.example.org": "web:80"}}, // "web" again: another project's
		{Name: "caddy", Import: "caddy/Caddyfile-import"},
		{Name: "intranet", URLs: map[string]string{"intranet.example.org": "app:8000", "*.wiki.example.org": "wiki:80"}},
	}
}

func TestCaddySnippet(t *testing.T) {
	got, err := caddySnippet(caddyServices())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "caddy", "snippet.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.WriteFile(golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("snippet differs from %s:\n%s", golden, got)
	}
	// Two projects' "web" services get distinct, container-name backends.
	for _, line := range []string{"\treverse_proxy shop-web-1:8080\n", "\treverse_proxy blog-web-1:80\n"} {
		if !bytes.Contains(got, []byte(line)) {
			t.Errorf("snippet lacks %q", line)
		}
	}
	// Map order must not leak into the output.
	for range 20 {
		again, _ := caddySnippet(caddyServices())
		if !bytes.Equal(again, got) {
			t.Fatal("snippet is not stable across calls")
		}
	}
}

func TestCaddySnippetClash(t *testing.T) {
	services := caddyServices()
	services = append(services, &Service{Name: "phish", URLs: map[string]string{"Shop.Example.org": "web:80"}})
	_, err := caddySnippet(services)
	if err == nil {
		t.Fatal("a host claimed by two services was accepted")
	}
	for _, want := range []string{`"shop"`, `"phish"`, "shop.example.org", "claimed twice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestCaddySnippetRefusesBadURLs(t *testing.T) {
	for host, target := range map[string]string{
		"a.example.org {\n\trespond hi\n}\nb.org": "web:80", // Caddyfile injection through the host
		"a.example.org # comment":                 "web:80",
		"a.example.org/path":                      "web:80",
		"":                                        "web:80",
		"ok.example.org":                          "web",
		"ok2.example.org":                         "web:0",
		"ok3.example.org":                         "web:65536",
		"ok4.example.org":                         "web:80 {",
		"ok5.example.org":                         "we b:80",
		"ok6.example.org":                         ":80",
	} {
		_, err := caddySnippet([]*Service{{Name: "x", URLs: map[string]string{host: target}}})
		if err == nil {
			t.Errorf("urls {%q = %q} accepted", host, target)
		} else if !strings.Contains(err.Error(), `service "x"`) {
			t.Errorf("error %q does not name the service", err)
		}
	}
}

func TestWriteCaddySnippet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile-import")

	changed, err := writeCaddySnippet(path, caddyServices())
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v, want a write", changed, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (Caddy runs as another user)", fi.Mode().Perm())
	}
	changed, err = writeCaddySnippet(path, caddyServices())
	if err != nil || changed {
		t.Fatalf("same content again: changed=%v err=%v, want no write", changed, err)
	}
	fi2, _ := os.Stat(path)
	if !os.SameFile(fi, fi2) {
		t.Error("unchanged content was rewritten (the file was replaced)")
	}

	services := caddyServices()
	services[1].URLs["new.example.org"] = "web:80"
	changed, err = writeCaddySnippet(path, services)
	if err != nil || !changed {
		t.Fatalf("new url: changed=%v err=%v, want a write", changed, err)
	}
	if b, _ := os.ReadFile(path); !bytes.Contains(b, []byte("new.example.org {")) {
		t.Errorf("new url missing from the written file:\n%s", b)
	}

	// A clash leaves the last good file alone.
	before, _ := os.ReadFile(path)
	services = append(services, &Service{Name: "other", URLs: map[string]string{"new.example.org": "x:1"}})
	if _, err := writeCaddySnippet(path, services); err == nil {
		t.Fatal("clash accepted")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a refused snippet changed the file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// A team could commit the import file as a symlink to a file of root's; the
// write replaces the link and leaves its target alone.
func TestWriteCaddySnippetReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	path := filepath.Join(dir, "Caddyfile-import")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if changed, err := writeCaddySnippet(path, caddyServices()); err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	if fi, _ := os.Lstat(path); !fi.Mode().IsRegular() {
		t.Errorf("%s is still not a regular file: %v", path, fi.Mode())
	}
}

func TestSnippetPath(t *testing.T) {
	checkout := t.TempDir()
	outside := t.TempDir()
	os.Mkdir(filepath.Join(checkout, "caddy"), 0o755)
	os.Symlink(outside, filepath.Join(checkout, "escape"))
	os.Symlink("caddy", filepath.Join(checkout, "inside"))

	root, _ := filepath.EvalSymlinks(checkout)
	for rel, want := range map[string]string{
		"Caddyfile-import":        filepath.Join(root, "Caddyfile-import"),
		"caddy/Caddyfile-import":  filepath.Join(root, "caddy", "Caddyfile-import"),
		"inside/Caddyfile-import": filepath.Join(root, "caddy", "Caddyfile-import"),
	} {
		got, err := snippetPath(checkout, rel)
		if err != nil || got != want {
			t.Errorf("snippetPath(%q) = %q, %v; want %q", rel, got, err, want)
		}
	}
	for _, rel := range []string{"escape/Caddyfile-import", "../Caddyfile-import", "/etc/caddy/import", "missing/dir/file", ""} {
		if got, err := snippetPath(checkout, rel); err == nil {
			t.Errorf("snippetPath(%q) = %q, want an error", rel, got)
		}
	}
}

// caddyAdapt runs Debian's caddy on a Caddyfile and returns its JSON config.
func caddyAdapt(t *testing.T, caddyfile string) map[string]any {
	t.Helper()
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy not installed (Debian package caddy); skipped")
	}
	home := t.TempDir()
	cmd := exec.Command(caddy, "adapt", "--config", caddyfile, "--adapter", "caddyfile", "--validate")
	cmd.Env = []string{"HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CONFIG_HOME=" + home, "PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("caddy adapt %s: %v\n%s", caddyfile, err, stderr.String())
	}
	if strings.Contains(stderr.String(), `"level":"warn"`) || strings.Contains(stderr.String(), `"level":"error"`) {
		t.Errorf("caddy adapt warns about %s:\n%s", caddyfile, stderr.String())
	}
	var config map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &config); err != nil {
		t.Fatalf("caddy adapt output: %v", err)
	}
	return config
}

// The snippet is a Caddyfile of its own, and also works through "import"
// in a Caddyfile with global options, as the pgo-caddy setup uses it.
func TestCaddyAdaptsSnippet(t *testing.T) {
	dir := t.TempDir()
	snippet := filepath.Join(dir, "Caddyfile-import")
	if _, err := writeCaddySnippet(snippet, caddyServices()); err != nil {
		t.Fatal(err)
	}
	standalone := caddyAdapt(t, snippet)
	out, _ := json.Marshal(standalone)
	for _, dial := range []string{`"dial":"shop-web-1:8080"`, `"dial":"blog-web-1:80"`, `"dial":"shop-api-1:3000"`, `"dial":"intranet-wiki-1:80"`, `"*.wiki.example.org"`} {
		if !bytes.Contains(out, []byte(dial)) {
			t.Errorf("caddy's config lacks %s:\n%s", dial, out)
		}
	}

	main := filepath.Join(dir, "Caddyfile")
	os.WriteFile(main, []byte("{\n\temail ops@example.org\n}\n\nimport Caddyfile-import\n"), 0o644)
	imported, _ := json.Marshal(caddyAdapt(t, main))
	if !bytes.Contains(imported, []byte(`"dial":"shop-web-1:8080"`)) {
		t.Errorf("imported snippet's routes missing:\n%s", imported)
	}

	// No urls at all still gives a file Caddy accepts.
	empty := filepath.Join(dir, "empty")
	if _, err := writeCaddySnippet(empty, []*Service{{Name: "lonely"}}); err != nil {
		t.Fatal(err)
	}
	caddyAdapt(t, empty)
}

// caddy fmt leaves the snippet as it is: Caddy would warn otherwise.
func TestCaddySnippetFormatted(t *testing.T) {
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy not installed; skipped")
	}
	got, _ := caddySnippet(caddyServices())
	cmd := exec.Command(caddy, "fmt", "-")
	cmd.Stdin = bytes.NewReader(got)
	formatted, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy fmt: %v", err)
	}
	if !bytes.Equal(formatted, got) {
		t.Errorf("caddy fmt changes the snippet:\n%s", formatted)
	}
}

func TestParseReload(t *testing.T) {
	host, name, args, err := parseReload("localhost:caddy//exec caddy caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if host != "localhost" || name != "caddy" || strings.Join(args, " ") != "caddy caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile" {
		t.Errorf("got %q %q %q", host, name, args)
	}
	if host, name, _, err := parseReload("localhost:2222:proxy//exec  caddy  caddy reload"); err != nil || host != "localhost:2222" || name != "proxy" {
		t.Errorf("host with a port: %q %q %v", host, name, err)
	}
	for _, bad := range []string{
		"", "localhost:caddy", "localhost:caddy//", "localhost:caddy//up", "localhost:caddy//exec caddy",
		"caddy//exec caddy caddy reload", ":caddy//exec c c", "localhost://exec c c", "local host:caddy//exec c c",
		"localhost:ca ddy//exec c c", "[::1]:proxy//exec c c", "localhost:Caddy//exec c c",
	} {
		if _, _, _, err := parseReload(bad); err == nil {
			t.Errorf("parseReload(%q) accepted", bad)
		}
	}
}

func FuzzParseReload(f *testing.F) {
	f.Add("localhost:caddy//exec caddy caddy reload --config /etc/caddy/Caddyfile")
	f.Add("[::1]:x//exec a b")
	f.Add("a:b//exec")
	f.Fuzz(func(t *testing.T, s string) {
		host, name, args, err := parseReload(s)
		if err != nil {
			return
		}
		if host == "" || name == "" || len(args) < 2 {
			t.Errorf("parseReload(%q) = %q %q %q: accepted with a part missing", s, host, name, args)
		}
		if !strings.HasPrefix(s, host+":"+name+"//") {
			t.Errorf("parseReload(%q): host %q and name %q are not what it starts with", s, host, name)
		}
	})
}
