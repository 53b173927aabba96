package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigReference(t *testing.T) {
	cfg, err := loadConfig("testdata/config/reference.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []*Service{{
		Name:       "pgo",
		User:       "miek",
		Repository: "https://oauth2:glpat-Xy3kQ9vLm2TzRw8pNc4B@gitlab.science.ru.nl/cncz/pgo.git",
		Branch:     "main",
		Registries: []string{"user:dckr_pat_7hG2kLmN9pQrS4tUvW@registry.science.ru.nl"},
		Compose:    "compose.yaml",
		Env:        []string{"MYENV=bla", "OTHERENV=bliep"},
		URLs:       map[string]string{"pgo.science.ru.nl": "pgo:5007"},
		Networks:   []string{"reverseproxy"},
		Line:       3,
	}}
	if !reflect.DeepEqual(cfg.Services, want) {
		t.Errorf("services:\n got %+v\nwant %+v", cfg.Services[0], want[0])
	}
	if cfg.Path != "testdata/config/reference.toml" {
		t.Errorf("Path = %q", cfg.Path)
	}
}

func TestLoadConfigEveryKey(t *testing.T) {
	cfg, err := loadConfig("testdata/config/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []*Service{{
		Name:       "caddy",
		User:       "root",
		Repository: "git@gitlab.science.ru.nl:cncz/pgo-caddy.git",
		Branch:     "main",
		Ports:      []string{"80", "443"},
		Import:     "caddy/Caddyfile-import",
		Reload:     "localhost:caddy//exec caddy caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile",
		Line:       3,
	}, {
		Name:          "web",
		User:          "web",
		Repository:    "https://ghp_8sHj2KdLq0wErTy6UiOp@github.com/example/web",
		Branch:        "production",
		Registries:    []string{"9fT4xQ2wLp7vB3nM@ghcr.io", "robot$ci:Zk8Wq3Rt6Yu1Io4P@registry.example.org:5000"},
		Compose:       "deploy/compose.yaml",
		Env:           []string{"DATABASE_URL=postgres://web:s3cr3t-pw@db/web", "LOG_LEVEL=info"},
		URLs:          map[string]string{"example.org": "frontend:8080", "www.example.org": "frontend:8080", "api.example.org": "api:3000"},
		Networks:      []string{"reverseproxy"},
		Mount:         "nfs://nfs.example.org/export/web",
		WebhookSecret: "e1f0c3b2a9d8e7f6a5b4c3d2",
		Line:          11,
	}}
	if len(cfg.Services) != len(want) {
		t.Fatalf("got %d services, want %d", len(cfg.Services), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(cfg.Services[i], want[i]) {
			t.Errorf("service %d:\n got %+v\nwant %+v", i, cfg.Services[i], want[i])
		}
	}
	logins := cfg.Services[1].registryLogins()
	wantLogins := []registryLogin{{User: "web", Token: "9fT4xQ2wLp7vB3nM", Host: "ghcr.io"}, {User: "robot$ci", Token: "Zk8Wq3Rt6Yu1Io4P", Host: "registry.example.org:5000"}}
	if !reflect.DeepEqual(logins, wantLogins) {
		t.Errorf("registryLogins = %+v, want %+v", logins, wantLogins)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := loadConfig(filepath.Join(t.TempDir(), "pgo.toml"))
	if err == nil || !os.IsNotExist(err) {
		t.Errorf("loadConfig of a missing file: %v, want a not-exist error", err)
	}
}

func TestParseConfigValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []*Service
	}{
		{"empty config", "# nothing yet\n", nil},
		{"branch defaults to main", "[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/srv/git/a.git\"\n",
			[]*Service{{Name: "a", User: "u", Repository: "/srv/git/a.git", Branch: "main", Line: 1}}},
		{"inline array of tables", "services = [\n  { name = \"a\", user = \"u\", repository = \"file:///srv/a\" },\n]\n",
			[]*Service{{Name: "a", User: "u", Repository: "file:///srv/a", Branch: "main", Line: 2}}},
		{"integer ports", "[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"ssh://git@example.org:2222/a.git\"\nports = [ 80, \"8080\" ]\n",
			[]*Service{{Name: "a", User: "u", Repository: "ssh://git@example.org:2222/a.git", Branch: "main", Ports: []string{"80", "8080"}, Line: 1}}},
		{"env value may hold = and be empty", "[[services]]\nname = \"a-1_b\"\nuser = \"u\"\nrepository = \"https://example.org/a\"\nenv = [ \"A=b=c\", \"EMPTY=\" ]\n",
			[]*Service{{Name: "a-1_b", User: "u", Repository: "https://example.org/a", Branch: "main", Env: []string{"A=b=c", "EMPTY="}, Line: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig("pgo.toml", []byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Services, tc.want) {
				t.Errorf("services:\n got %+v\nwant %+v", cfg.Services, tc.want)
			}
		})
	}
}

// TestParseConfigErrors checks the messages a user sees, line by line, in file order.
func TestParseConfigErrors(t *testing.T) {
	const head = "[[services]]\nname = \"web\"\nuser = \"web\"\nrepository = \"https://example.org/web\"\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown key with suggestion", "[[services]]\nname = \"web\"\nuser = \"web\"\nrepo = \"https://example.org/web\"\n", []string{
			`pgo.toml:1: service "web": repository is required`,
			`pgo.toml:4: service "web": unknown key "repo" at line 4; did you mean "repository"?`,
		}},
		{"unknown keys, near and far", head + "brnach = \"x\"\nenvironment = []\nregistry = []\nWebhook-Secret = \"x\"\ncolour = 1\n", []string{
			`pgo.toml:5: service "web": unknown key "brnach" at line 5; did you mean "branch"?`,
			`pgo.toml:6: service "web": unknown key "environment" at line 6; did you mean "env"?`,
			`pgo.toml:7: service "web": unknown key "registry" at line 7; did you mean "registries"?`,
			`pgo.toml:8: service "web": unknown key "Webhook-Secret" at line 8; did you mean "webhook_secret"?`,
			`pgo.toml:9: service "web": unknown key "colour" at line 9`,
		}},
		{"unknown top-level key", "[service]\nname = \"x\"\n", []string{
			`pgo.toml:1: unknown key "service" at line 1; did you mean "services"?`,
		}},
		{"services not tables", "services = [ 1 ]\n", []string{`pgo.toml:1: services[0] must be a table, not an integer`}},
		{"services not an array", "services = \"web\"\n", []string{`pgo.toml:1: services must be an array of tables ([[services]]), not a string`}},
		{"required keys", "[[services]]\n\n[[services]]\nname = \"b\"\n", []string{
			`pgo.toml:1: service #1: name is required`,
			`pgo.toml:1: service #1: user is required`,
			`pgo.toml:1: service #1: repository is required`,
			`pgo.toml:3: service "b": user is required`,
			`pgo.toml:3: service "b": repository is required`,
		}},
		{"wrong types", "[[services]]\nname = 1\nuser = [\"u\"]\nrepository = true\nbranch = {}\nenv = \"A=1\"\nurls = []\nports = \"80\"\n", []string{
			`pgo.toml:2: service #1: name must be a string, not an integer`,
			`pgo.toml:3: service #1: user must be a string, not an array`,
			`pgo.toml:4: service #1: repository must be a string, not a boolean`,
			`pgo.toml:5: service #1: branch must be a string, not a table`,
			`pgo.toml:6: service #1: env must be an array of strings, not a string`,
			`pgo.toml:7: service #1: urls must be a table of "host" = "service:port", not an array`,
			`pgo.toml:8: service #1: ports must be an array of port numbers, e.g. [ "80", "443" ], not a string`,
		}},
		{"names", "[[services]]\nname = \"Web\"\nuser = \"u\"\nrepository = \"/r\"\n[[services]]\nname = \"-web\"\nuser = \"u\"\nrepository = \"/r\"\n[[services]]\nname = \"" + strings.Repeat("a", 64) + "\"\nuser = \"u\"\nrepository = \"/r\"\n[[services]]\nname = \"../etc\"\nuser = \"u\"\nrepository = \"/r\"\n", []string{
			`pgo.toml:2: service "Web": name "Web" is not allowed: use at most 63 lowercase letters, digits, "-" and "_", starting with a letter or digit`,
			`pgo.toml:6: service "-web": name "-web" is not allowed: use at most 63 lowercase letters, digits, "-" and "_", starting with a letter or digit`,
			`pgo.toml:10: service "` + strings.Repeat("a", 64) + `": name "` + strings.Repeat("a", 64) + `" is not allowed: use at most 63 lowercase letters, digits, "-" and "_", starting with a letter or digit`,
			`pgo.toml:14: service "../etc": name "../etc" is not allowed: use at most 63 lowercase letters, digits, "-" and "_", starting with a letter or digit`,
		}},
		{"duplicate names", head + "\n" + head + "\n" + head, []string{
			`pgo.toml:6: service "web": name is already used by the service at line 1`,
			`pgo.toml:11: service "web": name is already used by the service at line 1`,
		}},
		{"user names", "[[services]]\nname = \"a\"\nuser = \"1000\"\nrepository = \"/r\"\n[[services]]\nname = \"b\"\nuser = \"a b\"\nrepository = \"/r\"\n", []string{
			`pgo.toml:3: service "a": user "1000" is not a valid Unix user name`,
			`pgo.toml:7: service "b": user "a b" is not a valid Unix user name`,
		}},
		{"repositories", "[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"ext::sh -c touch% /tmp/pwned\"\n" +
			"[[services]]\nname = \"b\"\nuser = \"u\"\nrepository = \"--upload-pack=touch /tmp/x\"\n" +
			"[[services]]\nname = \"c\"\nuser = \"u\"\nrepository = \"relative/path\"\n" +
			"[[services]]\nname = \"d\"\nuser = \"u\"\nrepository = \"ftp://example.org/x\"\n" +
			"[[services]]\nname = \"e\"\nuser = \"u\"\nrepository = \"https//oauth2:TOKEN1234@gitlab.example.org/x\"\n" +
			"[[services]]\nname = \"f\"\nuser = \"u\"\nrepository = \"https://oauth2:TOKEN1234@gitlab.example.org:port/x\"\n" +
			"[[services]]\nname = \"g\"\nuser = \"u\"\nrepository = \"\"\n", []string{
			`pgo.toml:4: service "a": repository must not use a git transport ("transport::address")`,
			`pgo.toml:8: service "b": repository must not start with "-"`,
			`pgo.toml:12: service "c": repository must be a URL (https://, ssh://, git://, file://), user@host:path, or an absolute path`,
			`pgo.toml:16: service "d": repository scheme "ftp" is not supported (use https, http, ssh, git or file)`,
			`pgo.toml:20: service "e": repository must be a URL (https://, ssh://, git://, file://), user@host:path, or an absolute path`,
			`pgo.toml:24: service "f": repository is not a valid URL`,
			`pgo.toml:28: service "g": repository must not be empty`,
		}},
		{"branches", head + "branch = \"-f\"\n" + strings.Replace(head, "web", "b", 1) + "branch = \"a b\"\n" + strings.Replace(head, "web", "c", 1) + "branch = \"x.lock\"\n", []string{
			`pgo.toml:5: service "web": branch "-f" is not a valid git branch name`,
			`pgo.toml:10: service "b": branch "a b" is not a valid git branch name`,
			`pgo.toml:15: service "c": branch "x.lock" is not a valid git branch name`,
		}},
		{"registries never quoted", head + "registries = [\n  \"token-without-host\",\n  \":tok@host\",\n  \"user:tok@\",\n  \"user:@host\",\n  \"ok@ghcr.io\",\n  42,\n]\n", []string{
			`pgo.toml:6: service "web": registries[0]: expected "[user:]token@host"`,
			`pgo.toml:7: service "web": registries[1]: expected "[user:]token@host"`,
			`pgo.toml:8: service "web": registries[2]: expected "[user:]token@host"`,
			`pgo.toml:9: service "web": registries[3]: expected "[user:]token@host"`,
			`pgo.toml:11: service "web": registries[5] must be a string, not an integer`,
		}},
		{"compose and import paths", head + "compose = \"../compose.yaml\"\nimport = \"/etc/caddy/import\"\n" + strings.Replace(head, "web", "b", 1) + "compose = \"./compose.yaml\"\nimport = \"a/../../b\"\n" + strings.Replace(head, "web", "c", 1) + "compose = \"\"\nimport = \"caddy/\"\n", []string{
			`pgo.toml:5: service "web": compose "../compose.yaml" must stay inside the repository (no ".." component)`,
			`pgo.toml:6: service "web": import "/etc/caddy/import" must be relative to the repository, not absolute`,
			`pgo.toml:11: service "b": compose "./compose.yaml" is not a clean path; write "compose.yaml"`,
			`pgo.toml:12: service "b": import "a/../../b" must stay inside the repository (no ".." component)`,
			`pgo.toml:17: service "c": compose "" must name a file in the repository`,
			`pgo.toml:18: service "c": import "caddy/" is not a clean path; write "caddy"`,
		}},
		{"env", head + "env = [\n  \"1BAD=secret1\",\n  \"NOEQUALSsecret\",\n  \"OK=1\",\n  \"OK=2\",\n  \"=x\",\n  \"A B=x\",\n]\n", []string{
			`pgo.toml:6: service "web": env[0]: "1BAD" is not a valid environment variable name`,
			`pgo.toml:7: service "web": env[1]: expected "NAME=VALUE"`,
			`pgo.toml:9: service "web": env[3]: OK is set twice`,
			`pgo.toml:10: service "web": env[4]: "" is not a valid environment variable name`,
			`pgo.toml:11: service "web": env[5]: "A B" is not a valid environment variable name`,
		}},
		{"urls", head + "urls = { \"example.org\" = \"frontend\", \"bad host\" = \"web:80\", \"x.org\" = \"web:70000\", \"y.org\" = 80, \"*.z.org\" = \"web:80\" }\n", []string{
			`pgo.toml:5: service "web": urls "example.org": "frontend" is not "service:port"`,
			`pgo.toml:5: service "web": urls: "bad host" is not a host name`,
			`pgo.toml:5: service "web": urls "x.org": "web:70000" is not "service:port"`,
			`pgo.toml:5: service "web": urls "y.org" must be a string, not an integer`,
		}},
		{"urls routed twice", head + "urls = { \"example.org\" = \"web:80\" }\n" + strings.Replace(head, "web", "b", 1) + "[services.urls]\n\"Example.org\" = \"web:80\"\n", []string{
			`pgo.toml:6: service "b": urls: "Example.org" is already routed by service "web" (line 1)`,
		}},
		{"networks", head + "networks = [ \"ok\", \"-bad\", \"a b\" ]\n", []string{
			`pgo.toml:5: service "web": networks[1]: "-bad" is not a valid network name`,
			`pgo.toml:5: service "web": networks[2]: "a b" is not a valid network name`,
		}},
		{"reload", head + "reload = \"localhost:caddy//restart\"\n" + strings.Replace(head, "web", "b", 1) + "reload = \"caddy//exec caddy caddy reload\"\n" + strings.Replace(head, "web", "c", 1) + "reload = \"localhost:caddy//exec caddy\"\n", []string{
			`pgo.toml:5: service "web": reload "localhost:caddy//restart": expected "host:name//exec SERVICE COMMAND..."`,
			`pgo.toml:10: service "b": reload "caddy//exec caddy caddy reload": expected "host:name//exec SERVICE COMMAND..."`,
			`pgo.toml:15: service "c": reload "localhost:caddy//exec caddy": expected "host:name//exec SERVICE COMMAND..."`,
		}},
		{"mount", head + "mount = \"smb://server/share\"\n" + strings.Replace(head, "web", "b", 1) + "mount = \"nfs://u:pw123456@server/share\"\n" + strings.Replace(head, "web", "c", 1) + "mount = \"nfs://server/a/../b\"\n" + strings.Replace(head, "web", "d", 1) + "mount = \"nfs://server\"\n", []string{
			`pgo.toml:5: service "web": mount "smb://server/share": expected "nfs://host/path"`,
			`pgo.toml:10: service "b": mount "nfs://u:***@server/share": only a host and a path are allowed (no user, port, query or fragment)`,
			`pgo.toml:15: service "c": mount "nfs://server/a/../b": needs a clean absolute path`,
			`pgo.toml:20: service "d": mount "nfs://server": needs a clean absolute path`,
		}},
		{"ports", head + "ports = [ \"80\", 443, \"0\", \"080\", \"80\", true, 65536, \"+1\" ]\n", []string{
			`pgo.toml:5: service "web": ports[2]: "0" is not a port number (1-65535)`,
			`pgo.toml:5: service "web": ports[3]: "080" is not a port number (1-65535)`,
			`pgo.toml:5: service "web": ports[4]: 80 is listed twice`,
			`pgo.toml:5: service "web": ports[5] must be a port number, not a boolean`,
			`pgo.toml:5: service "web": ports[6]: "65536" is not a port number (1-65535)`,
			`pgo.toml:5: service "web": ports[7]: "+1" is not a port number (1-65535)`,
		}},
		{"webhook secret", head + "webhook_secret = \"short\"\n", []string{
			`pgo.toml:5: service "web": webhook_secret is too short: use at least 16 characters (e.g. openssl rand -hex 32)`,
		}},
		{"NUL in a string", head + "compose = \"a\\u0000b\"\n", []string{
			`pgo.toml:5: service "web": compose must not contain a NUL character`,
		}},
		{"invalid TOML", head + "branch = \"main\"\nbranch = \"dev\"\n", []string{
			`pgo.toml:6: invalid TOML: duplicate key "branch" (first defined at line 5) at line 6, column 1`,
		}},
		{"unsupported TOML", head + "timeout = 1.5\n", []string{
			`pgo.toml:5: unsupported TOML: floating-point value at line 5, column 11`,
		}},
		{"deploy keys", head + "health_timeout = \"soon\"\nupdate_images = \"yes\"\n", []string{
			`pgo.toml:5: service "web": health_timeout "soon": expected a duration from 1s to 30m0s, as in "2m" or "30s"`,
			`pgo.toml:6: service "web": update_images must be true or false, not a string`,
		}},
		{"health_timeout out of range", head + "health_timeout = \"2h\"\n", []string{
			`pgo.toml:5: service "web": health_timeout "2h": expected a duration from 1s to 30m0s, as in "2m" or "30s"`,
		}},
		{"dotted key", head + "urls.\"example.org\" = \"web:80\"\n", []string{
			`pgo.toml:5: unsupported TOML: dotted key "urls" at line 5, column 5`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig("pgo.toml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("parseConfig accepted it: %+v", cfg.Services)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestParseConfigErrorsHideSecrets feeds configs with a secret in every place
// an error could point at; no message may show it.
func TestParseConfigErrorsHideSecrets(t *testing.T) {
	const secret = "S3CRET-t0ken-value"
	docs := []string{
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"https://oauth2:" + secret + "@gitlab.example.org:bad/x\"\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"https//oauth2:" + secret + "@gitlab.example.org/x\"\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"gopher://" + secret + "@example.org/x\"\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\nregistries = [ \"user:" + secret + "\" ]\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\nregistries = [ \"" + secret + "@bad host\" ]\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\nenv = [ \"" + secret + "\" ]\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\nwebhook_secret = 42\nwebhook_secret2 = \"" + secret + "\"\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\nmount = \"nfs://user:" + secret + "@host/x\"\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\nenv = [ \"A=" + secret + "\\q\" ]\n",
		"[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\nwebhook_secret = " + secret + "\n",
	}
	for _, doc := range docs {
		_, err := parseConfig("pgo.toml", []byte(doc))
		if err == nil {
			t.Errorf("parseConfig accepted %q", doc)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}

func TestClosestKey(t *testing.T) {
	tests := map[string]string{
		"repo": "repository", "Name": "name", "usr": "user", "branches": "branch", "url": "urls",
		"network": "networks", "port": "ports", "mnt": "", "secret": "webhook_secret", "webhook": "webhook_secret",
		"composefile": "compose", "zzz": "", "x": "", "imports": "import", "reloads": "reload", "regsitries": "registries",
	}
	for key, want := range tests {
		if got := closestKey(key, serviceKeys); got != want {
			t.Errorf("closestKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestParseRegistry(t *testing.T) {
	tests := []struct {
		in   string
		want registryLogin
		ok   bool
	}{
		{"tok@ghcr.io", registryLogin{Token: "tok", Host: "ghcr.io"}, true},
		{"user:tok@registry.example.org:5000", registryLogin{User: "user", Token: "tok", Host: "registry.example.org:5000"}, true},
		{"user:t:o@k@localhost", registryLogin{User: "user", Token: "t:o@k", Host: "localhost"}, true},
		{"tok", registryLogin{}, false},
		{"@host", registryLogin{}, false},
		{"user:@host", registryLogin{}, false},
		{":tok@host", registryLogin{}, false},
		{"tok@", registryLogin{}, false},
		{"tok@host/path", registryLogin{}, false},
		{"us er:tok@host", registryLogin{}, false},
		{"user:to\nk@host", registryLogin{}, false},
	}
	for _, tc := range tests {
		got, ok := parseRegistry(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRegistry(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestConfigRefusesPrefixNames(t *testing.T) {
	data := "[[services]]\nname = \"a\"\nuser = \"u\"\nrepository = \"/r\"\n\n[[services]]\nname = \"a_b\"\nuser = \"u\"\nrepository = \"/r\"\n\n[[services]]\nname = \"ab\"\nuser = \"u\"\nrepository = \"/r\"\n"
	_, err := parseConfig("pgo.toml", []byte(data))
	if err == nil {
		t.Fatal("a_b beside a was accepted")
	}
	want := `pgo.toml:6: service "a_b": name starts with the name of service "a" (line 1)`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if strings.Contains(err.Error(), `service "ab"`) {
		t.Fatalf("ab was refused too: %v", err)
	}
}

func TestParseConfigNotify(t *testing.T) {
	doc := `[[notify]]
name = "ops"
url = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
format = "slack"
events = [ "failed", "rolled_back" ]

[[notify]]
url = "https://ci.example.org/pgo-events"
format = "json"
secret = "0123456789abcdef0123"

[[services]]
name = "web"
user = "web"
repository = "/srv/git/web.git"
notify = [ { url = "https://ntfy.example.org/web-deploys", format = "ntfy" } ]

[[services]]
name = "api"
user = "api"
repository = "/srv/git/api.git"

[[services.notify]]
name = "api-team"
url = "https://discord.com/api/webhooks/1234/abcd"
format = "discord"
`
	cfg, err := parseConfig("pgo.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wantTop := []*NotifyEndpoint{
		{Name: "ops", URL: "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX", Format: "slack", Events: []string{"failed", "rolled_back"}, Line: 1},
		{Name: "notify-2", URL: "https://ci.example.org/pgo-events", Format: "json", Secret: "0123456789abcdef0123", Line: 7},
	}
	if !reflect.DeepEqual(cfg.Notify, wantTop) {
		t.Errorf("top-level notify:\n got %+v\nwant %+v", cfg.Notify, wantTop)
	}
	wantWeb := []*NotifyEndpoint{{Name: "web-notify-1", URL: "https://ntfy.example.org/web-deploys", Format: "ntfy", Service: "web", Line: 16}}
	if !reflect.DeepEqual(cfg.Services[0].Notify, wantWeb) {
		t.Errorf("web's notify:\n got %+v\nwant %+v", cfg.Services[0].Notify, wantWeb)
	}
	wantAPI := []*NotifyEndpoint{{Name: "api-team", URL: "https://discord.com/api/webhooks/1234/abcd", Format: "discord", Service: "api", Line: 23}}
	if !reflect.DeepEqual(cfg.Services[1].Notify, wantAPI) {
		t.Errorf("api's notify:\n got %+v\nwant %+v", cfg.Services[1].Notify, wantAPI)
	}
}

// TestParseConfigNotifyErrors checks what a user sees for a wrong notify
// table; none of it quotes a url or a secret.
func TestParseConfigNotifyErrors(t *testing.T) {
	const head = "[[services]]\nname = \"web\"\nuser = \"web\"\nrepository = \"https://example.org/web\"\n"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown top-level key", "[[notfy]]\nurl = \"https://x.org/a\"\n", []string{
			`pgo.toml:1: unknown key "notfy" at line 1; did you mean "notify"?`,
		}},
		{"not an array of tables", "notify = \"https://x.org/a\"\n" + head + "notify = { url = \"https://x.org/a\", format = \"json\" }\n", []string{
			`pgo.toml:1: notify must be an array of tables ([[notify]]), not a string`,
			`pgo.toml:6: service "web": notify must be an array of tables ([[services.notify]]), not a table`,
		}},
		{"elements not tables", "notify = [ \"https://x.org/a\" ]\n", []string{
			`pgo.toml:1: notify[0] must be a table, not a string`,
		}},
		{"required keys", "[[notify]]\nname = \"ops\"\n" + head + "[[services.notify]]\n", []string{
			`pgo.toml:1: notify "ops": url is required`,
			`pgo.toml:1: notify "ops": format is required`,
			`pgo.toml:7: service "web": notify #1: url is required`,
			`pgo.toml:7: service "web": notify #1: format is required`,
		}},
		{"unknown keys with suggestions", "[[notify]]\nurl = \"https://x.org/a\"\nformat = \"json\"\nevent = [ \"failed\" ]\nhmac = \"0123456789abcdef\"\nsecrets = \"0123456789abcdef\"\n", []string{
			`pgo.toml:4: notify #1: unknown key "event" at line 4; did you mean "events"?`,
			`pgo.toml:5: notify #1: unknown key "hmac" at line 5`,
			`pgo.toml:6: notify #1: unknown key "secrets" at line 6; did you mean "secret"?`,
		}},
		{"formats", "[[notify]]\nurl = \"https://x.org/a\"\nformat = \"slak\"\n[[notify]]\nurl = \"https://x.org/b\"\nformat = \"teams\"\n[[notify]]\nurl = \"https://x.org/c\"\nformat = 1\n", []string{
			`pgo.toml:3: notify #1: format "slak" is not supported; did you mean "slack"?`,
			`pgo.toml:6: notify #2: format "teams" is not supported: use one of slack, discord, ntfy, json`,
			`pgo.toml:9: notify #3: format must be a string, not an integer`,
		}},
		{"events", "[[notify]]\nurl = \"https://x.org/a\"\nformat = \"json\"\nevents = [ \"fialed\", \"failed\", \"failed\", \"deployed\", 3 ]\n", []string{
			`pgo.toml:4: notify #1: events[0]: "fialed" is not an event; did you mean "failed"?`,
			`pgo.toml:4: notify #1: events[2]: failed is listed twice`,
			`pgo.toml:4: notify #1: events[3]: "deployed" is not an event: use one of failed, rolled_back, unhealthy, rejected, recovered, frozen, unfrozen, started_with_errors`,
			`pgo.toml:4: notify #1: events[4] must be a string, not an integer`,
		}},
		{"secrets", "[[notify]]\nurl = \"https://x.org/a\"\nformat = \"json\"\nsecret = \"short\"\n[[notify]]\nurl = \"https://x.org/b\"\nformat = \"ntfy\"\nsecret = \"0123456789abcdef\"\n", []string{
			`pgo.toml:4: notify #1: secret is too short: use at least 16 characters (e.g. openssl rand -hex 32)`,
			`pgo.toml:8: notify #2: secret signs json payloads only; slack, discord and ntfy endpoints carry their token in the url`,
		}},
		{"urls", "notify = [\n{ url = \"\", format = \"json\" },\n{ url = \"hooks.slack.com/services/T0/B0/X\", format = \"slack\" },\n{ url = \"ftp://x.org/a\", format = \"json\" },\n{ url = \"https:///a\", format = \"json\" },\n{ url = \"https://x.org/a b\", format = \"json\" },\n{ url = \"https://x.org:port/a\", format = \"json\" },\n]\n", []string{
			`pgo.toml:2: notify #1: url must not be empty`,
			`pgo.toml:3: notify #2: url must start with https:// or http://`,
			`pgo.toml:4: notify #3: url must start with https:// or http://`,
			`pgo.toml:5: notify #4: url has no host`,
			`pgo.toml:6: notify #5: url must not contain spaces or control characters`,
			`pgo.toml:7: notify #6: url is not a valid URL`,
		}},
		{"names", "[[notify]]\nname = \"Ops Team\"\nurl = \"https://x.org/a\"\nformat = \"json\"\n[[notify]]\nname = \"ops\"\nurl = \"https://x.org/a\"\nformat = \"json\"\n" + head + "[[services.notify]]\nname = \"ops\"\nurl = \"https://x.org/b\"\nformat = \"json\"\n[[services.notify]]\nname = \"notify-1\"\nurl = \"https://x.org/c\"\nformat = \"json\"\n", []string{
			`pgo.toml:2: notify #1: name is not allowed: use at most 63 lowercase letters, digits, "-" and "_", starting with a letter or digit`,
			`pgo.toml:13: service "web": notify "ops": name is already used by the notify table at line 5`,
			`pgo.toml:17: service "web": notify "notify-1": name is already used by the notify table at line 1`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig("pgo.toml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("parseConfig accepted it: %+v", cfg.Notify)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestParseConfigNotifyErrorsHideSecrets: a notify url is a token, and so is its secret.
func TestParseConfigNotifyErrorsHideSecrets(t *testing.T) {
	const secret = "S3CRET-t0ken-value"
	docs := []string{
		"[[notify]]\nurl = \"https://hooks.slack.com:bad/services/" + secret + "\"\nformat = \"slack\"\n",
		"[[notify]]\nurl = \"hooks.slack.com/services/" + secret + "\"\nformat = \"slack\"\n",
		"[[notify]]\nurl = \"gopher://x.org/" + secret + "\"\nformat = \"slack\"\n",
		"[[notify]]\nurl = \"https://x.org/" + secret + " \"\nformat = \"slack\"\n",
		"[[notify]]\nurl = \"https://x.org/a\"\nformat = \"slack\"\nsecret = \"" + secret + "\"\n",
		"[[notify]]\nurl = \"https://x.org/a\"\nformat = \"json\"\nsecret = 42\nsecre = \"" + secret + "\"\n",
		"[[notify]]\nname = \"https://x.org/" + secret + "\"\nurl = \"https://x.org/a\"\nformat = \"json\"\n[[notify]]\nname = \"notify-1\"\nurl = \"https://x.org/a\"\nformat = \"json\"\n",
		"[[notify]]\nurl = \"https://x.org/" + secret + "\"\nformat = \"json\"\nurl = \"x\"\n",
	}
	for _, doc := range docs {
		_, err := parseConfig("pgo.toml", []byte(doc))
		if err == nil {
			t.Errorf("parseConfig accepted %q", doc)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}

func TestParseConfigDeployKeys(t *testing.T) {
	doc := "[[services]]\nname = \"web\"\nuser = \"web\"\nrepository = \"https://example.org/web\"\nhealth_timeout = \"45s\"\nupdate_images = true\n"
	cfg, err := parseConfig("pgo.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Services[0]; s.HealthTimeout != 45*time.Second || !s.UpdateImages {
		t.Errorf("health_timeout %s, update_images %v; want 45s and true", s.HealthTimeout, s.UpdateImages)
	}
}

func TestParseConfigSignedCommits(t *testing.T) {
	alice := authorizedLine(t, "", newTestKey(t).PublicKey())
	bob := authorizedLine(t, `expiry-time="20991231"`, newTestKey(t).PublicKey())
	const head = "[[services]]\nname = \"web\"\nuser = \"web\"\nrepository = \"https://example.org/web\"\n"
	doc := head + "signed_commits = true\nsigners = [\n  \"" + alice + "\",\n  '" + bob + "',\n]\n"
	cfg, err := parseConfig("pgo.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services[0]
	if !s.SignedCommits || !reflect.DeepEqual(s.Signers, []string{alice, bob}) {
		t.Fatalf("signed_commits %v, signers %q; want true and both lines", s.SignedCommits, s.Signers)
	}
	keys := s.signerKeys()
	if len(keys) != 2 || keys[0].source != "pgo.toml signers[0]" || keys[1].source != "pgo.toml signers[1]" || keys[1].expiry.IsZero() {
		t.Errorf("signerKeys: %d keys %+v", len(keys), keys)
	}

	cfg, err = parseConfig("pgo.toml", []byte(head))
	if err != nil || cfg.Services[0].SignedCommits || cfg.Services[0].Signers != nil {
		t.Errorf("by default: %v, %+v; want signed_commits off and no signers", err, cfg.Services[0])
	}

	needs := `signed_commits needs signers for the first deploy: list the public keys that may sign it, as in signers = ["ssh-ed25519 AAAA... alice@laptop"]; later commits are checked against the keys under ssh/ of the deployed commit`
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"no signers", head + "signed_commits = true\n", []string{`pgo.toml:5: service "web": ` + needs}},
		{"empty signers", head + "signed_commits = true\nsigners = []\n", []string{`pgo.toml:5: service "web": ` + needs}},
		{"wrong types", head + "signed_commits = \"yes\"\nsigners = \"" + alice + "\"\n", []string{
			`pgo.toml:5: service "web": signed_commits must be true or false, not a string`,
			`pgo.toml:6: service "web": signers must be an array of strings, not a string`,
		}},
		{"lines that are no key", head + "signed_commits = true\nsigners = [\n  \"ssh-ed25519 AAAA\",\n  '" + `command="/bin/sh" ` + alice + "',\n  \"" + alice + `\n` + alice + "\",\n]\n", []string{
			`pgo.toml:7: service "web": signers[0]: not a public key line: no valid public key (write it as in a .pub file, "ssh-ed25519 AAAA... alice@laptop")`,
			`pgo.toml:8: service "web": signers[1]: not a public key line: option command is not supported (pgod honours from=, expiry-time=, no-pty, restrict and the no-*-forwarding options) (write it as in a .pub file, "ssh-ed25519 AAAA... alice@laptop")`,
			`pgo.toml:9: service "web": signers[2]: must be one line, one key an element`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig("pgo.toml", []byte(tc.doc))
			if err == nil {
				t.Fatal("parseConfig accepted it")
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
}
