package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// billionLaughs is a small file whose aliases stand in sequences, each level
// nine copies of the one before: 9^8 nodes once compose expands it.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h"} {
		fmt.Fprintf(&b, "x-%s: &%s [%s]\n", n, n, strings.TrimSuffix(strings.Repeat("*"+prev+", ", 9), ", "))
		prev = n
	}
	fmt.Fprintf(&b, "services:\n  web:\n    image: busybox\n    command: *%s\n", prev)
	return b.String()
}

// aliasedString is one long string aliased into many environment values.
func aliasedString(size, times int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "x-s: &s \"%s\"\nservices:\n  web:\n    image: busybox\n    environment:\n", strings.Repeat("x", size))
	for i := range times {
		fmt.Fprintf(&b, "      V%d: *s\n", i)
	}
	return b.String()
}

// doublingEnv is a dotenv file whose every variable is twice the one before.
func doublingEnv(lines int) string {
	var b strings.Builder
	b.WriteString("V0=" + strings.Repeat("x", 1024) + "\n")
	for i := 1; i < lines; i++ {
		fmt.Fprintf(&b, "V%d=${V%d}${V%d}\n", i, i-1, i-1)
	}
	return b.String()
}

// TestPrecheckBombs: whatever makes the project grow once compose expands
// it (aliases in mappings, in sequences, as merge sources; variables from
// .env, from env files, from pgo.toml) is refused before compose reads it.
func TestPrecheckBombs(t *testing.T) {
	const want = "the project grows past 4194304 bytes or 1000000 YAML nodes once its aliases, variables and env files are expanded"
	mergeBomb := "x-a: &a {a: " + strings.Repeat("y", 100000) + "}\nservices:\n  web:\n    image: busybox\n    labels:\n      <<: [*a, *a]\n"
	for i := range 60 {
		mergeBomb += fmt.Sprintf("  s%d:\n    image: busybox\n    labels:\n      <<: *a\n", i)
	}
	tests := []struct {
		name   string
		files  map[string]string
		env    []string
		want   string
		benign bool
	}{
		{name: "aliases in sequences", files: map[string]string{"compose.yaml": billionLaughs()}, want: "compose.yaml: " + want},
		{name: "one string aliased", files: map[string]string{"compose.yaml": aliasedString(1<<20, 200)}, want: "compose.yaml: " + want},
		{name: "merge sources", files: map[string]string{"compose.yaml": mergeBomb}, want: "compose.yaml: " + want},
		{name: ".env doubling", files: map[string]string{"compose.yaml": "services:\n  web:\n    image: busybox\n", ".env": doublingEnv(40)}, want: ".env:13: this value grows past 4194304 bytes"},
		{name: "variable repeated", files: map[string]string{"compose.yaml": "services:\n  web:\n    image: busybox\n    environment:\n" + strings.Repeat("      - X=${BIG}${BIG}\n", 40), ".env": "BIG=" + strings.Repeat("b", 100000) + "\n"}, want: want},
		{name: "pgo.toml env repeated", env: []string{"BIG=" + strings.Repeat("b", 100000)}, files: map[string]string{"compose.yaml": "services:\n  web:\n    image: busybox\n    command: [" + strings.Repeat("\"${BIG}\", ", 50) + "x]\n"}, want: want},
		{name: "env_file doubling", files: map[string]string{"compose.yaml": "services:\n  web:\n    image: busybox\n    env_file: [app.env]\n", "app.env": doublingEnv(40)}, want: want},
		{name: "env_file many times", files: map[string]string{"compose.yaml": "services:\n" + manyServices(50, "    env_file: [app.env]\n"), "app.env": "A=" + strings.Repeat("a", 100000) + "\n"}, want: want},
		{name: "anchors of real size", files: map[string]string{"compose.yaml": "x-base: &base {image: busybox, restart: always, environment: {A: \"${A:-1}\"}}\nservices:\n" + manyServices(100, "    <<: *base\n")}, benign: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			src, err := precheck(dir, &Service{Name: "team", Env: tt.env})
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(src.violations)
			if tt.benign {
				if len(src.violations) > 0 {
					t.Fatalf("refused: %s", got)
				}
				return
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("violations %s; want %q", got, tt.want)
			}
		})
	}
}

// manyServices writes n services s0..s(n-1), each with an image and extra.
func manyServices(n int, extra string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  s%d:\n    image: busybox\n%s", i, extra)
	}
	return b.String()
}

// TestRenderBombsRefused: both bombs, through the whole render with the
// real compose, come back refused, and quickly (the pre-check stops them
// before compose runs; the context only keeps a regression from hanging).
func TestRenderBombsRefused(t *testing.T) {
	requireCompose(t)
	for name, compose := range map[string]string{"laughs": billionLaughs(), "string": aliasedString(1<<20, 200)} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, vs, err := renderProject(ctx, renderRequest{Service: &Service{Name: "team"}, Checkout: dir, Docker: "docker"})
			if err != nil || len(vs) != 1 || !strings.Contains(vs[0].String(), "grows past") {
				t.Fatalf("renderProject = %v, %v; want the bomb refused", vs, err)
			}
		})
	}
}

// TestPrecheckReadFiles: env files compose reads while rendering are regular
// files of the checkout, named without ~ or variables and reached without
// symlinks (pgod's checkout follows none; a FIFO would hang compose).
func TestPrecheckReadFiles(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, "conf"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "conf", "app.env"), []byte("A=1\n"), 0o644))
	must(os.Symlink("conf", filepath.Join(dir, "linked")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo.env"), 0o644))
	compose := "services:\n  web:\n    image: busybox\n    env_file:\n      - conf/app.env\n      - linked/app.env\n      - fifo.env\n      - ~/app.env\n      - path: missing.env\n        required: false\n    label_file: ../x\n"
	must(os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644))
	src, err := precheck(dir, &Service{Name: "team"})
	must(err)
	var got []string
	for _, v := range src.violations {
		got = append(got, v.String())
	}
	want := []string{
		`compose.yaml:6: service "web": env_file "linked/app.env" passes through the symlink linked -> conf; pgod's checkout does not follow symlinks, so commit the file itself or name conf/app.env`,
		`compose.yaml:7: service "web": env_file "fifo.env" is not a regular file`,
		`compose.yaml:8: service "web": env_file "~/app.env": ~ is not allowed in its path`,
		`compose.yaml:11: service "web": label_file "../x" is outside the checkout`,
	}
	if len(got) != len(want) {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("got  %s\nwant %s", got[i], want[i])
		}
	}
}

// TestPrecheckLinkedFiles: a compose file reached through a symlink is
// handed to compose by its real path; a .env that is a symlink is refused,
// since compose opens it by name in a checkout that follows no symlinks.
func TestPrecheckLinkedFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deploy", "compose.prod.yaml"), []byte("services: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("deploy/compose.prod.yaml", filepath.Join(dir, "compose.yaml")); err != nil {
		t.Fatal(err)
	}
	src, err := precheck(dir, &Service{Name: "team"})
	if err != nil || len(src.violations) > 0 {
		t.Fatalf("precheck = %v, %v", src, err)
	}
	root, _ := filepath.EvalSymlinks(dir)
	if src.file != filepath.Join(root, "deploy", "compose.prod.yaml") {
		t.Errorf("compose gets %s; want the real path", src.file)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env.prod"), []byte("A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".env.prod", filepath.Join(dir, ".env")); err != nil {
		t.Fatal(err)
	}
	src, err = precheck(dir, &Service{Name: "team"})
	if err != nil || len(src.violations) != 1 || !strings.Contains(src.violations[0].String(), ".env: passes through the symlink .env -> .env.prod") {
		t.Fatalf("precheck with a linked .env = %v, %v", src.violations, err)
	}
}

// A YAML syntax error is reported at its own line, not at the start of the
// block around it (as yaml.v3 says, one too low).
func TestPrecheckYAMLErrorLine(t *testing.T) {
	dir := t.TempDir()
	compose := "services:\n  web:\n    image: x\n    environment:\n      A: 1\n      B: 2\n      C: [unclosed\n    ports: []\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := precheck(dir, &Service{Name: "team"})
	if err != nil {
		t.Fatal(err)
	}
	if len(src.violations) != 1 || src.violations[0].Line != 7 {
		t.Fatalf("violations %v, want one at line 7", src.violations)
	}
}
