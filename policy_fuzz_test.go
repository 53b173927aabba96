package main

import (
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
		s := &composeSource{root: "/nonexistent-pgo", rel: "compose.yaml", lines: map[string]int{}}
		for _, v := range s.precheckYAML(data) {
			if v.File != "compose.yaml" || v.Msg == "" {
				t.Fatalf("violation without a place or a reason: %#v", v)
			}
		}
		checkEnvFile(".env", data)
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
