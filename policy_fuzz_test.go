package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzPrecheck: the raw pre-check never panics or hangs on any file, and a
// finding always says where it is.
func FuzzPrecheck(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/policy/*/compose.yaml")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [x]\nb: [*a, *a]\n<<: *a\nservices: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &composeSource{root: "/nonexistent-pgo", rel: "compose.yaml", lines: map[string]int{}, vars: map[string]int64{"BIG": 1 << 20}}
		for _, v := range s.precheckYAML(data) {
			if v.File != "compose.yaml" || v.Msg == "" {
				t.Fatalf("violation without a place or a reason: %#v", v)
			}
		}
		checkEnvFile(".env", data)
		expandEnv(data, map[string]int64{})
		s.locate([]violation{{Path: "services.web.volumes[1].source"}})
	})
}

// FuzzValidate: the validator and the recheck never panic on any JSON.
func FuzzValidate(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/fixtures/*.json")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"services": {"web": {"volumes": [{"type": "bind", "source": "/"}], "ports": [{"published": "1-65535"}]}}}`))
	f.Add([]byte(`{"x-pgo": [], "services": []}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := fixtureRequest()
		validateProject(data, r)
		recheckPaths(data, r)
		xPgoReload(data)
	})
}

// FuzzCheckBeforeUp: the last check never panics, whatever the project and
// whatever the engine answers.
func FuzzCheckBeforeUp(f *testing.F) {
	f.Add([]byte(`{"name": "fixt", "services": {"db": {"image": "postgres:16"}}, "networks": {"x": {"name": "billing_x", "external": true}}}`),
		[]byte(`[{"RepoDigests": [], "Config": {"Labels": {"com.docker.compose.project": "billing"}}, "Labels": {"com.docker.compose.project": "billing"}}]`))
	f.Add([]byte(`{"services": {"a": {"build": {}}}}`), []byte(`[{"RepoDigests": [1, null], "Config": []}]`))
	f.Fuzz(func(t *testing.T, project, answer []byte) {
		engine := func(context.Context, ...string) ([]byte, error) { return answer, nil }
		checkBeforeUp(context.Background(), project, fixtureRequest(), engine)
	})
}

// FuzzNames: ownership never panics and agrees with itself: a name the
// project owns is foreign to it never, and an image it may build names no
// registry.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"shop-web-1", "shop", "SHOP_default", "registry.example.org/shop/web:1", "shop/web@sha256:ab", "localhost:5000/x", ":", "/", "@"} {
		f.Add("shop", s)
	}
	f.Fuzz(func(t *testing.T, self, name string) {
		n := newNamespaces(self, []string{"shop-web", "blog", self + "-x"})
		if n.own(name) && n.foreign(name) != "" {
			t.Fatalf("%q is both %q's and %q's", name, self, n.foreign(name))
		}
		if n.ownImage(name) {
			if host, _ := imageRepo(name); host != "" {
				t.Fatalf("%q may be built although it names registry %q", name, host)
			}
		}
	})
}
