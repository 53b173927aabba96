package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const diffRunning = `{"name":"shop","services":{
 "web":{"image":"nginx:1.25","environment":{"DB_URL":"postgres://u:old-secret@db/x","MODE":"prod"},"ports":[{"target":80,"published":"8080"}],"restart":"always"},
 "db":{"image":"postgres:16","volumes":[{"type":"bind","source":"/srv/db","target":"/var/lib/postgresql/data"}]}},
 "networks":{"default":{"name":"shop_default"}}}`

const diffNext = `{"name":"shop","services":{
 "web":{"image":"nginx:1.27","environment":{"DB_URL":"postgres://u:new-secret@db/x","MODE":"prod","FEATURE_X":"on-value"},"ports":[{"target":80,"published":"8080"}],"restart":"unless-stopped","labels":{"team":"label-value"}},
 "worker":{"image":"shop/worker:1","command":["work","--fast"]}},
 "networks":{"default":{"name":"shop_default"},"back":{"name":"shop_back"}}}`

func TestDiffProjects(t *testing.T) {
	d, err := diffProjects([]byte(diffRunning), []byte(diffNext))
	if err != nil {
		t.Fatal(err)
	}
	out := d.String()
	for _, want := range []string{
		"services: 1 added, 1 changed, 1 removed",
		"+ worker", "- db",
		"~ web: environment: ~DB_URL, +FEATURE_X; image: nginx:1.25 -> nginx:1.27; labels: +team; other: restart",
		"networks: +back",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"old-secret", "new-secret", "on-value", "label-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("diff shows the value %q:\n%s", secret, out)
		}
	}
}

func TestDiffProjectsNothingRunsAndNoChange(t *testing.T) {
	d, err := diffProjects(nil, []byte(diffNext))
	if err != nil || !strings.Contains(d.String(), "services: 2 added") {
		t.Errorf("nothing running: %v\n%s", err, d)
	}
	d, err = diffProjects([]byte(diffNext), []byte(diffNext))
	if err != nil || d.String() != "no change to what runs\n" {
		t.Errorf("same project: %v\n%s", err, d)
	}
	if _, err := diffProjects(nil, []byte("{")); err == nil {
		t.Error("a broken project diffed")
	}
}

// FuzzDiffProjects: a diff of any two projects never panics, never shows
// a value of an environment entry, and never writes a control character
// to the client's terminal.
func FuzzDiffProjects(f *testing.F) {
	f.Add([]byte(diffRunning), []byte(diffNext), "TOKEN", "value-1234")
	f.Add([]byte(`{"services":{"a":{"environment":["K=V"]}}}`), []byte(`{"services":{}}`), "K", "x\x1b[2J")
	f.Fuzz(func(t *testing.T, running, next []byte, name, value string) {
		if d, err := diffProjects(running, next); err == nil && strings.ContainsAny(d.String(), "\x1b\r") {
			t.Errorf("a control character in the diff: %q", d.String())
		}
		// What the diff says of an environment entry depends on its name, never its value.
		show := func(value string) string {
			env, _ := json.Marshal(map[string]map[string]map[string]map[string]string{"services": {"a": {"environment": {name: value}}}})
			d, err := diffProjects([]byte(`{"services":{"a":{"environment":{"`+"OTHER"+`":"v"}}}}`), env)
			if err != nil {
				t.Fatal(err)
			}
			return d.String()
		}
		if a, b := show(value), show(value+"-other"); a != b {
			t.Errorf("the value of %q shows in the diff:\n%s\n%s", name, a, b)
		}
	})
}
