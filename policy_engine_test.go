package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeEngine answers "docker network|image inspect NAME" from a table of
// JSON objects; anything else is "no such object".
type fakeEngine map[string]string

func (f fakeEngine) inspect(_ context.Context, args ...string) ([]byte, error) {
	if len(args) == 3 && args[1] == "inspect" {
		if obj, ok := f[args[0]+" "+args[2]]; ok {
			return []byte("[" + obj + "]"), nil
		}
	}
	return []byte("[]"), errors.New("exit status 1")
}

func engineProject(services, networks string) []byte {
	return []byte(`{"name": "team", "services": {` + services + `}, "networks": {` + networks + `}}`)
}

// TestEngineNetworks: an external network that compose made for another
// project is refused whatever its name, unless pgo.toml lists it; networks
// of no project (made with docker network create) are joined.
func TestEngineNetworks(t *testing.T) {
	engine := fakeEngine{
		"network shared-db": `{"Name": "shared-db", "Labels": {"com.docker.compose.project": "billing"}}`,
		"network proxy":     `{"Name": "proxy", "Labels": {}}`,
		"network team_old":  `{"Name": "team_old", "Labels": {"com.docker.compose.project": "team"}}`,
	}
	nets := `"db": {"name": "shared-db", "external": true}, "proxy": {"name": "proxy", "external": true}, "old": {"name": "team_old", "external": true}, "gone": {"name": "gone", "external": true}, "default": {"name": "team_default"}`
	project := engineProject(`"web": {"image": "busybox", "networks": {"db": null, "proxy": null, "old": null, "gone": null, "default": null}}`, nets)
	r := renderRequest{Service: &Service{Name: "team"}, Checkout: "/nonexistent-pgo"}
	vs := checkEngine(context.Background(), mustDecode(t, project), r, engine.inspect)
	want := `networks.db: network "db": external network "shared-db" belongs to compose project "billing"; a project joins another's network only when its pgo.toml networks lists it`
	if len(vs) != 1 || vs[0].String() != want {
		t.Fatalf("violations %v; want %s", vs, want)
	}
	r.Service.Networks = []string{"shared-db", "proxy", "team_old", "gone"}
	if vs := checkEngine(context.Background(), mustDecode(t, project), r, engine.inspect); len(vs) != 0 {
		t.Errorf("listed networks refused: %v", vs)
	}
}

// TestEngineImages: an image another project's compose built, present
// under a name this project runs and never pulled under it, is refused; the
// project's own builds, pulled images, and the operator's own builds run.
func TestEngineImages(t *testing.T) {
	engine := fakeEngine{
		"image postgres:16":     `{"RepoDigests": [], "Config": {"Labels": {"com.docker.compose.project": "blog", "com.docker.compose.service": "db"}}}`,
		"image redis:7":         `{"RepoDigests": ["redis@sha256:aa"], "Config": {"Labels": {"com.docker.compose.project": "blog"}}}`,
		"image nginx:1":         `{"RepoDigests": ["evil.example.org/nginx@sha256:bb"], "Config": {"Labels": {"com.docker.compose.project": "blog"}}}`,
		"image team-app":        `{"RepoDigests": [], "Config": {"Labels": {"com.docker.compose.project": "team"}}}`,
		"image local/tool:1":    `{"RepoDigests": [], "Config": {"Labels": {"maintainer": "ops"}}}`,
		"image team/api:2":      `{"RepoDigests": [], "Config": {"Labels": {"com.docker.compose.project": "billing"}}}`,
		"image caddy@sha256:cc": `{"RepoDigests": [], "Config": {"Labels": {"com.docker.compose.project": "blog"}}}`,
	}
	services := `"db": {"image": "postgres:16"}, "cache": {"image": "redis:7"}, "web": {"image": "nginx:1"},
		"app": {"build": {"context": "."}}, "tool": {"image": "local/tool:1"}, "api": {"image": "team/api:2", "build": {"context": "."}},
		"proxy": {"image": "caddy@sha256:cc"}, "fresh": {"image": "alpine:3"}`
	r := renderRequest{Service: &Service{Name: "team"}}
	vs := checkEngine(context.Background(), mustDecode(t, engineProject(services, "")), r, engine.inspect)
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	want := []string{
		`services.api.image: service "api": image team/api:2 on this engine was built by compose project "billing", not pulled from a registry`,
		`services.db.image: service "db": image postgres:16 on this engine was built by compose project "blog", not pulled from a registry; pgod does not run another project's build. Ask the operator to remove it (docker image rm postgres:16)`,
		`services.web.image: service "web": image nginx:1 on this engine was built by compose project "blog"`,
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

// TestCheckBeforeUp: the last check applies the rules with the services
// configured now, the host paths as they are now, and the engine.
func TestCheckBeforeUp(t *testing.T) {
	r, checkout, _ := pathsFixture(t)
	project := []byte(`{"name": "team", "services": {"web": {"image": "postgres:16", "volumes": [` + bindVol(checkout+"/config", true) + `],
		"networks": {"proxy": {"aliases": ["blog-web-1"]}}}}, "networks": {"proxy": {"name": "proxy", "external": true}}}`)
	engine := fakeEngine{"image postgres:16": `{"RepoDigests": [], "Config": {"Labels": {"com.docker.compose.project": "blog"}}}`}
	r.Others = []string{"blog"}
	got := fmt.Sprint(checkBeforeUp(context.Background(), project, r, engine.inspect))
	for _, want := range []string{
		`alias "blog-web-1" on shared network "proxy" is not allowed: it belongs to service "blog"`,
		`bind mount source ./config passes through the symlink ./config -> conf/prod`,
		`image postgres:16 on this engine was built by compose project "blog"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("checkBeforeUp lacks %q: %s", want, got)
		}
	}
	if vs := checkBeforeUp(context.Background(), []byte("not json"), r, engine.inspect); len(vs) != 1 {
		t.Errorf("undecodable project: %v", vs)
	}
}

func mustDecode(t *testing.T, project []byte) map[string]any {
	t.Helper()
	p, err := decodeProject(project)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBaseImages: the images a build starts from, as its Dockerfile names them.
func TestBaseImages(t *testing.T) {
	dir := t.TempDir()
	dockerfile := "# syntax = docker/dockerfile:1.7\nARG BASE=alpine\nFROM --platform=$BUILDPLATFORM golang:1.26 AS build\nCOPY --from=tools:1 /bin/x /x\nFROM ${BASE}\nFROM build AS again\nCOPY --from=build /out /out\nCOPY --from=0 /a /a\nfrom postgres:16\nFROM scratch\n"
	if err := os.MkdirAll(filepath.Join(dir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app", "Dockerfile.prod"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	b := map[string]any{"context": filepath.Join(dir, "app"), "dockerfile": "Dockerfile.prod",
		"additional_contexts": map[string]any{"x": "docker-image://redis:7", "y": "./y"}}
	got := fmt.Sprint(baseImages(b, dir))
	if want := "[redis:7 docker/dockerfile:1.7 golang:1.26 tools:1 postgres:16]"; got != want {
		t.Errorf("baseImages = %s; want %s", got, want)
	}
	inline := map[string]any{"context": dir, "dockerfile_inline": "FROM nginx:1\n"}
	if got := fmt.Sprint(baseImages(inline, dir)); got != "[nginx:1]" {
		t.Errorf("inline: %s", got)
	}
	outside := map[string]any{"context": "/etc", "dockerfile": "passwd"}
	if got := baseImages(outside, dir); len(got) != 0 {
		t.Errorf("a Dockerfile outside the checkout was read: %v", got)
	}
}

// TestEngineBaseImages: a build that starts from an image another project
// planted is refused.
func TestEngineBaseImages(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM postgres:16\nRUN true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	engine := fakeEngine{"image postgres:16": `{"RepoDigests": [], "Config": {"Labels": {"com.docker.compose.project": "blog"}}}`}
	project := engineProject(`"db": {"build": {"context": "`+dir+`"}}`, "")
	r := renderRequest{Service: &Service{Name: "team"}, Checkout: dir}
	vs := checkEngine(context.Background(), mustDecode(t, project), r, engine.inspect)
	want := `services.db.build: service "db": build base image postgres:16 on this engine was built by compose project "blog"`
	if len(vs) != 1 || !strings.HasPrefix(vs[0].String(), want) {
		t.Fatalf("violations %v; want %s", vs, want)
	}
}

// TestAccountEngine: the engine inspector runs docker with the arguments
// given and the environment it was made with, and returns its standard
// output; a failure carries the end of its standard error.
func TestAccountEngine(t *testing.T) {
	docker := fakeComposeDocker(t, `echo "$MARK $*"; [ "$1" = fail ] && { echo "no such object" >&2; exit 1; }; exit 0`)
	engine := accountEngine(nil, []string{"MARK=env"}, docker)
	out, err := engine(context.Background(), "image", "inspect", "x")
	if err != nil || string(out) != "env image inspect x\n" {
		t.Errorf("engine = %q, %v", out, err)
	}
	if _, err := engine(context.Background(), "fail"); err == nil || !strings.Contains(err.Error(), "no such object") {
		t.Errorf("failure: %v", err)
	}
}
