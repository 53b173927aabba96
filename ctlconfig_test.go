package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCtlConfigResolve(t *testing.T) {
	cfg, err := parseCtlConfig("pgoctl.toml", []byte(`
[[hosts]]
name = "web1"
address = "10.0.0.11"

[[hosts]]
name = "web2"
address = "10.0.0.12:2223"

[[hosts]]
name = "v6"
address = "fd00::1"

[[groups]]
name = "prod"
hosts = ["web1", "web2", "db.example.org"]

[[groups]]
name = "all"
hosts = ["@prod", "v6", "web1"]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		words []string
		want  []ctlTarget
	}{
		{[]string{"web1"}, []ctlTarget{{"web1", "10.0.0.11:2222"}}},
		{[]string{"elsewhere"}, []ctlTarget{{"elsewhere", "elsewhere:2222"}}},
		{[]string{"::1"}, []ctlTarget{{"::1", "[::1]:2222"}}},
		{[]string{"@prod"}, []ctlTarget{{"web1", "10.0.0.11:2222"}, {"web2", "10.0.0.12:2223"}, {"db.example.org", "db.example.org:2222"}}},
		{[]string{"v6", "@all", "web2"}, []ctlTarget{{"v6", "[fd00::1]:2222"}, {"web1", "10.0.0.11:2222"}, {"web2", "10.0.0.12:2223"}, {"db.example.org", "db.example.org:2222"}}},
	}
	for _, tc := range tests {
		got, err := cfg.resolve(tc.words, "2222")
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("resolve(%q) = %v, %v; want %v", tc.words, got, err, tc.want)
		}
	}
	if _, err := cfg.resolve([]string{"web1", "@stage"}, "2222"); err == nil || !strings.Contains(err.Error(), "@stage: no such group in pgoctl.toml (it defines: @prod, @all)") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestCtlConfigErrors(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string // each a line of the error, in order
	}{
		{"syntax", "[[hosts]]\nname = \"web1\nx", []string{"pgoctl.toml:2: invalid TOML: unterminated string at line 2, column 8"}},
		{"unknown keys", `
[[host]]
name = "web1"
[[hosts]]
name = "web2"
adress = "10.0.0.12"
[[groups]]
name = "prod"
hosts = ["web2"]
parallel = 3
`, []string{
			`pgoctl.toml:2: unknown key "host" at line 2; did you mean "hosts"?`,
			`pgoctl.toml:6: host "web2": unknown key "adress" at line 6; did you mean "address"?`,
			`pgoctl.toml:10: group "prod": unknown key "parallel" at line 10`,
		}},
		{"bad values", `
hosts = "web1"
[[groups]]
name = "prod,stage"
hosts = []
[[groups]]
hosts = ["web1", "web 2", 3]
`, []string{
			`pgoctl.toml:2: hosts must be an array of tables ([[hosts]]), not a string`,
			`pgoctl.toml:4: group #1: name "prod,stage" is not allowed`,
			`pgoctl.toml:5: group #1: hosts is empty: a group needs at least one host`,
			`pgoctl.toml:6: group #2: name is required`,
			`pgoctl.toml:7: group #2: hosts[1]: "web 2" is neither a host name nor "@group"`,
			`pgoctl.toml:7: group #2: hosts[2] must be a string, not an integer`,
		}},
		{"hosts", `
[[hosts]]
name = "web1"
address = "10.0.0.11:99999"
[[hosts]]
name = "web1"
address = "a b"
[[hosts]]
name = "@web3"
[[groups]]
name = "g"
`, []string{
			`pgoctl.toml:4: host "web1": address "10.0.0.11:99999" has no valid port number`,
			`pgoctl.toml:5: host "web1": name is already used by the host at line 2`,
			`pgoctl.toml:7: host "web1": address "a b" is not "host" or "host:port"`,
			`pgoctl.toml:9: host #3: name "@web3" is not allowed`,
			`pgoctl.toml:10: group "g": hosts is required`,
		}},
		{"groups", `
[[groups]]
name = "a"
hosts = ["@b", "web1"]
[[groups]]
name = "b"
hosts = ["@c", "@nope"]
[[groups]]
name = "c"
hosts = ["@a"]
[[groups]]
name = "self"
hosts = ["@self"]
[[groups]]
name = "a"
hosts = ["web2"]
`, []string{
			`pgoctl.toml:2: group "a": hosts: groups name each other in a cycle: @a -> @b -> @c -> @a`,
			`pgoctl.toml:7: group "b": hosts: no group "nope" is defined`,
			`pgoctl.toml:11: group "self": hosts: groups name each other in a cycle: @self -> @self`,
			`pgoctl.toml:14: group "a": name is already used by the group at line 2`,
		}},
	}
	for _, tc := range tests {
		_, err := parseCtlConfig("pgoctl.toml", []byte(tc.data))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("%s: %d errors, want %d:\n%s", tc.name, len(lines), len(tc.want), err)
			continue
		}
		for i, want := range tc.want {
			if !strings.HasPrefix(lines[i], want) {
				t.Errorf("%s: error %d = %q, want it to start %q", tc.name, i+1, lines[i], want)
			}
		}
	}
}

func TestCtlConfigFile(t *testing.T) {
	home := t.TempDir()
	r := &ctlRun{home: home}
	defaultPath := defaultCtlConfig(home)

	// No file: plain host names are fine (they reach the key check), a group is not.
	if _, stderr, status := r.run("-i", "/nonexistent", "web1:shop//ps"); status != exitUsage || !strings.Contains(stderr, "key: ") {
		t.Errorf("no config, one host: status %d, %q; want the key error, not a config one", status, stderr)
	}
	_, stderr, status := r.run("@prod:shop//ps")
	if status != exitUsage || !strings.Contains(stderr, "@prod: no such group: "+defaultPath+" does not exist") {
		t.Errorf("no config, a group: status %d, %q", status, stderr)
	}

	// A file named by --config or PGOCTL_CONFIG must exist.
	missing := filepath.Join(home, "missing.toml")
	if _, stderr, status := r.run("--config", missing, "web1:shop//ps"); status != exitUsage || !strings.Contains(stderr, missing) {
		t.Errorf("--config missing: status %d, %q", status, stderr)
	}
	env := &ctlRun{home: home, env: map[string]string{"PGOCTL_CONFIG": missing}}
	if _, stderr, status := env.run("web1:shop//ps"); status != exitUsage || !strings.Contains(stderr, missing) {
		t.Errorf("PGOCTL_CONFIG missing: status %d, %q", status, stderr)
	}

	// A broken file is an error even for a plain host: it may have meant to name that host.
	os.MkdirAll(filepath.Dir(defaultPath), 0o700)
	writeFile(t, filepath.Dir(defaultPath), "pgoctl.toml", "[[hosts]]\nname = \"web1\"\naddres = \"x\"\n")
	if _, stderr, status := r.run("web1:shop//ps"); status != exitUsage || !strings.Contains(stderr, defaultPath+`:3: host "web1": unknown key "addres"`) {
		t.Errorf("broken config: status %d, %q", status, stderr)
	}
}
