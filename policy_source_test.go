package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func precheckString(t *testing.T, compose string) (*composeSource, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := precheck(dir, &Service{Name: "team"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range src.violations {
		got = append(got, v.String())
	}
	return src, strings.Join(got, "\n")
}

func TestPrecheckYAML(t *testing.T) {
	tests := []struct {
		name, compose string
		want          string // "" for clean
	}{
		{"clean", "services:\n  web:\n    image: busybox\n    extends: base\n  base:\n    image: busybox\n", ""},
		{"include", "include: [a.yaml]\nservices: {}\n", "compose.yaml:1: include is not allowed"},
		{"include via merge", "x: &x\n  include: [a.yaml]\n<<: *x\nservices: {}\n", "compose.yaml:2: include is not allowed"},
		{"extends file", "services:\n  web:\n    extends: {file: b.yaml, service: x}\n", `compose.yaml:3: service "web": extends with file: is not allowed`},
		{"extends file via alias", "x: &e {file: https://e.com/a.yaml, service: x}\nservices:\n  web:\n    extends: *e\n", `service "web": extends with file: is not allowed`},
		{"services via alias", "x: &s\n  web:\n    extends: {file: oci://r/x}\nservices: *s\n", `service "web": extends with file: is not allowed`},
		{"override tag", "services:\n  web:\n    ports: !override [\"80:80\"]\n", "compose.yaml:3: YAML tag !override is not allowed"},
		{"local tag", "services:\n  web: !!python/object {}\n", "compose.yaml:2: YAML tag !!python/object is not allowed"},
		{"standard tag", "services:\n  web:\n    image: !!str busybox\n", ""},
		{"duplicate", "services:\n  web: {image: a}\n  web: {image: b}\n", `compose.yaml:3: duplicate key "web" is not allowed`},
		{"second document", "services: {}\n---\ninclude: [x.yaml]\n", "compose.yaml:3: include is not allowed"},
		{"invalid", "services: [\n", "compose.yaml:1: invalid YAML"},
		{"not a mapping", "- a\n", "not a YAML mapping"},
		{"env_file interpolated", "services:\n  web:\n    env_file: ${HOME}/x.env\n", "variables are not allowed"},
		{"label_file outside", "services:\n  web:\n    label_file: [/etc/hostname]\n", `label_file "/etc/hostname" is outside the checkout`},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nservices: {}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := precheckString(t, tt.compose)
			if tt.want == "" && got != "" {
				t.Fatalf("violations on a clean file:\n%s", got)
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("want %q; got:\n%s", tt.want, got)
			}
		})
	}
}

func TestPrecheckLines(t *testing.T) {
	src, _ := precheckString(t, "x-base: &base\n  privileged: true\nservices:\n  web:\n    <<: *base\n    image: busybox\n    build:\n      network: host\n")
	vs := []violation{
		{Path: "services.web.privileged", Service: "web", Msg: "m"},
		{Path: "services.web.build.network", Service: "web", Msg: "m"},
		{Path: "services.web.volumes[3]", Service: "web", Msg: "m"},
		{Path: "networks.default", Msg: "m"},
	}
	src.locate(vs)
	for i, want := range []int{2, 8, 4, 0} {
		if vs[i].Line != want || vs[i].File != "compose.yaml" {
			t.Errorf("%s: at %s:%d; want line %d", vs[i].Path, vs[i].File, vs[i].Line, want)
		}
	}
}

func TestFindComposeFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := findComposeFile(dir, ""); err == nil {
		t.Error("no compose file: no error")
	}
	for _, name := range []string{"docker-compose.yaml", "docker-compose.yml", "compose.yml", "compose.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := findComposeFile(dir, ""); err != nil || got != name {
			t.Errorf("with %s added: found %q, %v", name, got, err)
		}
	}
	for _, bad := range []string{"../x.yaml", "/etc/passwd", "missing.yaml"} {
		if _, err := findComposeFile(dir, bad); err == nil {
			t.Errorf("compose = %q: no error", bad)
		}
	}
}

func TestCheckEnvFile(t *testing.T) {
	data := "# comment\nA=1\n  export COMPOSE_PROJECT_NAME=x\nDOCKER_CONTEXT: remote\ncompose_file=y\nB=\"multi\nCOMPOSE_FILE=inside-a-value\"\nNOT_COMPOSE_X=1\n"
	vs := checkEnvFile(".env", []byte(data))
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	want := []string{
		".env:3: setting COMPOSE_PROJECT_NAME is not allowed",
		".env:4: setting DOCKER_CONTEXT is not allowed",
		".env:5: setting compose_file is not allowed",
		".env:7: setting COMPOSE_FILE is not allowed",
	}
	if len(got) != len(want) {
		t.Fatalf("got %q; want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("got %q; want %q", got[i], want[i])
		}
	}
}

func TestPrecheckItemLines(t *testing.T) {
	src, _ := precheckString(t, "services:\n  web:\n    image: busybox\n    ports:\n      - 8000-8001:80-81\n      - 9000:90\n    volumes:\n      - ./a:/a\n      - /etc:/etc\n")
	vs := []violation{
		{Path: "services.web.volumes[1]", Service: "web", Msg: "m"},
		{Path: "services.web.ports[2]", Service: "web", Msg: "m"},
	}
	src.locate(vs)
	// volumes render one for one; a port range becomes two items, so ports
	// point at the key.
	for i, want := range []int{9, 4} {
		if vs[i].Line != want {
			t.Errorf("%s: line %d; want %d", vs[i].Path, vs[i].Line, want)
		}
	}
}
