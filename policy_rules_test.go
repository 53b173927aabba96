package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var updateFixtures = flag.Bool("update", false, "regenerate testdata/fixtures/*.json with docker compose")

// fixtureRequest is the pgo.toml the fixtures are checked against; the
// fixtures were rendered with --project-directory /srv/pgo/fixt, which does
// not exist, so path rules run without touching the test machine's files.
func fixtureRequest() renderRequest {
	return renderRequest{
		Service:  &Service{Name: "fixt", Ports: []string{"80", "9000"}, Networks: []string{"proxy"}},
		Others:   []string{"billing", "fixt-api"},
		Checkout: "/srv/pgo/fixt",
		DataDir:  "/data/fixt",
	}
}

func loadFixture(t *testing.T, name string) []byte {
	t.Helper()
	src := filepath.Join("testdata/fixtures", name+".yaml")
	dst := filepath.Join("testdata/fixtures", name+".json")
	if *updateFixtures {
		requireCompose(t)
		out, err := exec.Command("docker", "compose", "-p", "fixt", "-f", src, "--project-directory", "/srv/pgo/fixt",
			"--profile", "*", "config", "--format", "json").Output()
		if err != nil {
			t.Fatalf("render %s: %v", src, err)
		}
		if err := os.WriteFile(dst, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestPolicyFixtures checks every rule against canonical JSON that real
// Compose v2 rendered from testdata/fixtures/*.yaml.
func TestPolicyFixtures(t *testing.T) {
	tests := []struct {
		fixture string
		want    []string // each a substring of one violation; none: the fixture is clean
	}{
		{"clean", nil},
		{"privileged", []string{
			`services.web.privileged: service "web": privileged is not allowed`,
			`services.web.build.privileged: service "web": privileged build is not allowed`,
			`services.web.post_start[0].privileged: service "web": privileged post_start hook is not allowed`,
			`services.web.pre_stop[0].privileged: service "web": privileged pre_stop hook is not allowed`,
			`privileged develop.watch exec is not allowed`,
		}},
		{"namespaces", []string{
			`service "a": network_mode "host" is not allowed`,
			`service "a": pid: host is not allowed`,
			`service "a": ipc: host is not allowed`,
			`service "a": uts: host is not allowed`,
			`service "a": userns_mode: host is not allowed`,
			`service "a": cgroup: host is not allowed`,
			`service "a": cgroup_parent is not allowed`,
			`service "b": network_mode "container:x" is not allowed`,
			`service "b": pid "container:x" is not allowed`,
			`service "b": ipc "container:x" is not allowed`,
			`service "c": network_mode "bridge" is not allowed`,
		}},
		{"capabilities", []string{
			`cap_add SYS_ADMIN is not allowed`,
			`devices is not allowed`,
			`device_cgroup_rules is not allowed`,
			`gpus is not allowed`,
			`runtime is not allowed`,
			`isolation is not allowed`,
			`use_api_socket is not allowed`,
			`storage_opt is not allowed`,
			`oom_kill_disable is not allowed`,
			`negative oom_score_adj is not allowed`,
			`security_opt "seccomp=unconfined" is not allowed`,
			`security_opt "apparmor:unconfined" is not allowed`,
			`sysctl kernel.msgmax is not allowed; only net.* and kernel.shm_rmid_forced`,
			`device reservations are not allowed`,
		}},
		{"mounts", []string{
			`bind mount source / is outside the checkout and the data directory`,
			`bind mount source /var/run/docker.sock`,
			`bind propagation "rslave" is not allowed`,
			`volume type "image" is not allowed; only bind, volume and tmpfs`,
			`services.web.volumes[14]: service "web": bind mount source /etc/localtime`,
			`services.web.volumes[15]: service "web": bind mount source /etc/hostname is outside the checkout`,
			`bind mount source /data/other/db is outside`,
			`volume "named": driver_opts are not allowed`,
			`volume "remote": driver "rexray" is not allowed`,
			`volume "foreign": name "billing_db" is not allowed`,
			`volume "ext": external volume "billing_db" is not allowed`,
		}},
		{"files", []string{
			`secrets file /etc/shadow is outside`,
			`secret "env": secrets from the environment are not allowed`,
			`secret "ext": external secrets are not allowed`,
			`configs file /etc/passwd is outside`,
			`build context / is outside`,
			`Dockerfile /etc/Dockerfile is outside`,
			`build network "host" is not allowed`,
			`build entitlements are not allowed`,
			`build ssh is not allowed`,
			`build cache_from type=local is not allowed`,
			`additional context /etc is outside`,
			`additional context b="https://example.com/x.git" is not allowed`,
			`build isolation is not allowed`,
			`service "remote": build context "git@github.com:example/app.git" is not allowed`,
		}},
		{"networks", []string{
			`network "other": external network "billing_internal" is not allowed; allowed: proxy`,
			`network "hostnet": external network "host" is not allowed`,
			`network "lan": driver "macvlan" is not allowed`,
			`network "named": name "billing_default" is not allowed`,
			`network "opts": driver option "com.docker.network.bridge.name" is not allowed`,
			`host port 8080 is not allowed (pgo.toml ports: 80, 9000)`,
			`host port 9001 is not allowed`,
			`port 53 published on a random host port is not allowed`,
			`volumes_from "container:billing-db-1" is not allowed`,
			`external_links "billing-db-1:db" is not allowed`,
			`container_name "billing-web" is not allowed: it belongs to service "billing"`,
			`label "com.docker.compose.project" is reserved for compose`,
			`network "subnet": ipam config (subnet, gateway, ip_range) is not allowed`,
		}},
		{"extensions", []string{
			`x-pgo.reload: x-pgo reload must be true or false`,
			`x-pgo.user: x-pgo key "user" is not allowed`,
			`service "web": models are not allowed`,
			`services.web.credential_spec: service "web": unknown key "credential_spec" is not allowed`,
			`service "ai": provider services are not allowed`,
		}},
		{"escapes", []string{
			`logging driver "gelf" is not allowed`,
			`annotations are not allowed`,
			`alias "billing-web-1" on shared network "proxy" is not allowed: it belongs to service "billing"`,
			`hostname "billing-web-1" is a DNS name on shared network "proxy" and belongs to service "billing"`,
			`services.web.mac_address: service "web": mac_address is not allowed on a service that joins shared network "proxy"`,
			`ipv6_address on shared network "proxy" is not allowed`,
			`services.web.networks.proxy.mac_address: service "web": mac_address on shared network "proxy" is not allowed`,
			`driver_opts on shared network "proxy" are not allowed`,
			`services.billing-web-1: service "billing-web-1": the compose service name "billing-web-1" is a DNS name on shared network "proxy" and belongs to service "billing"`,
			`services.api: service "api": compose names this service's container fixt-api-1, which belongs to service "fixt-api"`,
		}},
		{"images", []string{
			`services.db.image: service "db": image "postgres:16" is not allowed for a service that builds: a build would retag it on the engine every project shares; name it fixt-db or fixt/db (any tag)`,
			`services.db.build.tags: service "db": build tag "redis:7" is not allowed`,
			`services.db.build.tags: service "db": build tag "registry.example.org/fixt/db:1" is not allowed`,
			`services.db.build.labels: service "db": label "com.docker.compose.project" is reserved for compose`,
			`services.api.build: service "api": compose names this service's image fixt-api, which belongs to service "fixt-api"; set image: fixt/api`,
			`services.api: service "api": compose names this service's container fixt-api-1`,
			`services.bare.image: service "bare": image "fixt" is not allowed`,
		}},
		{"external-only", []string{
			`networks: a project on an external network needs a network of its own too`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			vs := validateProject(loadFixture(t, tt.fixture), fixtureRequest())
			var got []string
			for _, v := range vs {
				got = append(got, v.String())
			}
			all := strings.Join(got, "\n")
			if tt.want == nil && len(vs) > 0 {
				t.Fatalf("clean fixture has violations:\n%s", all)
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("no violation contains %q; got:\n%s", w, all)
				}
			}
			// Every finding must be one the table expects: no rule fires by accident.
			for _, g := range got {
				matched := false
				for _, w := range tt.want {
					matched = matched || strings.Contains(g, w)
				}
				if !matched {
					t.Errorf("unexpected violation: %s", g)
				}
			}
		})
	}
}

func TestTruthy(t *testing.T) {
	for _, v := range []any{true, "true", "yes", "on", "True", "1", json.Number("1"), map[string]any{}, []any{}} {
		if !truthy(v) {
			t.Errorf("truthy(%#v) = false; a value compose might read as true must count as set", v)
		}
	}
	for _, v := range []any{nil, false, "false", "", "no", "off", "0", json.Number("0")} {
		if truthy(v) {
			t.Errorf("truthy(%#v) = true", v)
		}
	}
}

// TestValidateHandWritten covers what real compose never renders but a
// hand-made project on stdin could hold: wrong types fail closed.
func TestValidateHandWritten(t *testing.T) {
	project := `{"name": "fixt", "services": {"web": {"image": "x", "privileged": "yes", "unknown": 1,
		"cap_add": "SYS_ADMIN", "volumes": [{"type": "bind", "source": "relative"}]}}, "x-pgo": [1]}`
	vs := validateProject([]byte(project), fixtureRequest())
	all := fmt.Sprint(vs)
	for _, want := range []string{
		`privileged is not allowed`,
		`unknown key "unknown" is not allowed`,
		`services.web.cap_add: service "web": a plain value`,
		`x-pgo must be a mapping`,
		`bind mount source relative: not an absolute path`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no violation contains %q; got %s", want, all)
		}
	}
	if vs := validateProject([]byte(`[]`), fixtureRequest()); len(vs) != 1 || !strings.Contains(vs[0].Msg, "cannot decode") {
		t.Errorf("non-object project: %v", vs)
	}
}
