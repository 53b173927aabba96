package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// auditLines parses the audit lines of a pgod log: for each line whose
// message is msg, its key=value fields, values unquoted.
func auditLines(t *testing.T, log, msg string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, line := range strings.Split(log, "\n") {
		// 2026-01-02T03:04:05Z LEVEL msg key=value ...
		parts := strings.SplitN(line, " ", 3)
		if len(parts) < 3 || !strings.HasPrefix(parts[2], msg+" ") {
			continue
		}
		rest := strings.TrimPrefix(parts[2], msg+" ")
		if first, _, _ := strings.Cut(rest, " "); !strings.Contains(first, "=") {
			continue // a longer message, such as "audit ssh refused" for "audit ssh"
		}
		fields := map[string]string{"level": parts[1]}
		for rest != "" {
			key, after, ok := strings.Cut(rest, "=")
			if !ok {
				t.Fatalf("audit line %q: no key=value at %q", line, rest)
			}
			var value string
			if strings.HasPrefix(after, `"`) {
				q, err := strconv.QuotedPrefix(after)
				if err != nil {
					t.Fatalf("audit line %q: %v", line, err)
				}
				value, _ = strconv.Unquote(q)
				after = after[len(q):]
			} else {
				value, after, _ = strings.Cut(after, " ")
				after = " " + after
			}
			fields[key] = value
			rest = strings.TrimPrefix(after, " ")
		}
		out = append(out, fields)
	}
	return out
}

func TestAuditSSHOps(t *testing.T) {
	webKey, dbKey, strangerKey := newTestKey(t), newTestKey(t), newTestKey(t)
	web, db := newFakeService("web", webKey.PublicKey()), newFakeService("db", dbKey.PublicKey())
	logs := &syncBuffer{}
	m := newMetrics(nil)
	ts := startSSHWith(t, newFakeCtl(web, db), nil, logs, newLogger(logs, false), m)

	c := ts.mustDial(t, webKey)
	runSSH(t, c, "web//logs --tail 5 app")
	runSSH(t, c, "web//exec -e TOKEN=hunter2 --env=PASS=swordfish app sh -c 'echo $TOKEN'")
	runSSH(t, ts.mustDial(t, dbKey), "web//ps")
	if _, err := ts.dial(t, strangerKey); err == nil {
		t.Fatal("a stranger's key got in")
	}

	var ops, refused []map[string]string
	waitUntil(t, "audit lines", func() bool {
		ops, refused = auditLines(t, logs.String(), "audit ssh"), auditLines(t, logs.String(), "audit ssh refused")
		return len(ops) == 2 && len(refused) == 2
	})
	if strings.Contains(logs.String(), "hunter2") || strings.Contains(logs.String(), "swordfish") {
		t.Errorf("an exec -e value reached the log:\n%s", logs)
	}
	want := []map[string]string{
		{"level": "INFO", "key": ssh.FingerprintSHA256(webKey.PublicKey()), "key_file": "ssh/test.pub:1", "service": "web",
			"op": "logs", "args": "--tail 5 app", "exit": "0", "result": "ok"},
		{"level": "INFO", "key": ssh.FingerprintSHA256(webKey.PublicKey()), "key_file": "ssh/test.pub:1", "service": "web",
			"op": "exec", "args": `-e 'TOKEN=***' '--env=PASS=***' app sh -c 'echo $TOKEN'`, "exit": "0", "result": "ok"},
	}
	for i, w := range want {
		for k, v := range w {
			if ops[i][k] != v {
				t.Errorf("op line %d: %s=%q, want %q (line %v)", i, k, ops[i][k], v, ops[i])
			}
		}
		if !strings.HasPrefix(ops[i]["from"], "127.0.0.1:") || ops[i]["duration"] == "" {
			t.Errorf("op line %d: from %q, duration %q", i, ops[i]["from"], ops[i]["duration"])
		}
	}
	// db's key on web: refused for the service; the stranger: at the handshake.
	byKey := map[string]map[string]string{}
	for _, r := range refused {
		byKey[r["key"]] = r
	}
	if r := byKey[ssh.FingerprintSHA256(dbKey.PublicKey())]; r["level"] != "WARN" || r["service"] != "web" || r["op"] != "ps" || r["reason"] != refusedForService {
		t.Errorf("db key on web: %v", r)
	}
	if r := byKey[ssh.FingerprintSHA256(strangerKey.PublicKey())]; r["reason"] != refusedUnknownKey || !strings.HasPrefix(r["from"], "127.0.0.1:") {
		t.Errorf("stranger's key: %v", r)
	}

	metrics := scrape(t, m)
	for _, want := range []string{
		`pgo_ssh_ops_total{service="web",op="logs",result="ok"} 1`,
		`pgo_ssh_ops_total{service="web",op="exec",result="ok"} 1`,
		`pgo_ssh_refused_total{reason="` + refusedForService + `"} 1`,
		`pgo_ssh_refused_total{reason="` + refusedUnknownKey + `"} 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
}

func TestAuditArgsRedactExecEnv(t *testing.T) {
	for _, c := range []struct{ op, args, want string }{
		{"exec", "-e A=1 app env", "-e 'A=***' app env"},
		{"exec", "-eA=1 -ie B=2 -iteC=3 app", "'-eA=***' -ie 'B=***' '-iteC=***' app"},
		{"exec", "--env A=1 --env=B=2 --env hunter2 app", "--env 'A=***' '--env=B=***' --env '***' app"},
		{"exec", "-u root -w /tmp -e A=1 app", "-u root -w /tmp -e 'A=***' app"},
		{"exec", "-ue app -e X=1", "-ue app -e X=1"}, // -u takes "e"; app ends the flags
		{"exec", "app sh -c 'A=1 env' -e B=2", "app sh -c 'A=1 env' -e B=2"},
		{"logs", "-e A=1", "-e A=1"}, // not exec: nothing to hide (and refused anyway)
	} {
		args, err := splitWords(c.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := auditArgs(c.op, args); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.op, c.args, got, c.want)
		}
	}
}

func TestAuditRefusalsRateLimited(t *testing.T) {
	var logs syncBuffer
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := newAuditTrail(newLogger(&logs, false), newMetrics(nil))
	a.refusals.now = func() time.Time { return now }
	for range 1000 {
		a.refused("SHA256:x", "", "", refusedUnknownKey, "192.0.2.7:4000", "192.0.2.7")
	}
	a.refused("SHA256:y", "", "", refusedUnknownKey, "198.51.100.1:4000", "198.51.100.1")
	count := func(from string) int {
		n := 0
		for _, l := range auditLines(t, logs.String(), "audit ssh refused") {
			if strings.HasPrefix(l["from"], from) {
				n++
			}
		}
		return n
	}
	if n := count("192.0.2.7:"); n != refusalsPerWindow {
		t.Fatalf("a flood of 1000 refusals logged %d lines, want %d", n, refusalsPerWindow)
	}
	if n := count("198.51.100.1:"); n != 1 {
		t.Errorf("another source's refusal logged %d lines during the flood, want 1", n)
	}
	now = now.Add(refusalWindow)
	a.refused("SHA256:x", "", "", refusedUnknownKey, "192.0.2.7:4001", "192.0.2.7")
	s := auditLines(t, logs.String(), "audit ssh suppressed")
	if len(s) != 1 || s[0]["from"] != "192.0.2.7" || s[0]["lines"] != "990" {
		t.Fatalf("suppressed lines: %v, want one for 192.0.2.7 with lines=990", s)
	}
	if n := count("192.0.2.7:"); n != refusalsPerWindow+1 {
		t.Errorf("after the window, %d lines, want %d", n, refusalsPerWindow+1)
	}
	if strings.Count(logs.String(), "\n") != refusalsPerWindow+3 {
		t.Errorf("log has %d lines:\n%s", strings.Count(logs.String(), "\n"), logs.String())
	}
}

func TestAuditReload(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "pgo.toml")
	os.WriteFile(config, []byte("[[services]]\nname = \"web\"\n"), 0o600)
	var logs syncBuffer
	d := &Daemon{flags: &daemonFlags{config: config}, log: newLogger(&logs, false)}
	d.metrics = newMetrics(d.statuses)
	d.audit = newAuditTrail(d.log, d.metrics)
	d.reload(context.Background())
	lines := auditLines(t, logs.String(), "audit reload")
	if len(lines) != 1 || lines[0]["result"] != "error" || !strings.Contains(lines[0]["error"], "pgo.toml:") {
		t.Fatalf("reload of an invalid config: %v\n%s", lines, logs.String())
	}
	if m := scrape(t, d.metrics); !strings.Contains(m, `pgo_config_reloads_total{result="error"} 1`+"\n") {
		t.Errorf("metrics:\n%s", m)
	}

	web := &Service{Name: "web", User: "svc", Branch: "main", Line: 1}
	db := &Service{Name: "db", User: "svc", Branch: "main", Line: 5}
	d.cfg = &Config{Services: []*Service{web, db}}
	web2 := *web
	web2.Line, web2.Branch = 9, "prod"
	r := d.changes(&Config{Services: []*Service{&web2, {Name: "cache", User: "svc", Line: 1}}})
	if r.added != 1 || r.removed != 1 || r.changed != 1 {
		t.Errorf("changes: %+v, want one added, removed and changed", r)
	}
	logs.Reset()
	d.audit.reload(r)
	lines = auditLines(t, logs.String(), "audit reload")
	if len(lines) != 1 || fmt.Sprint(lines[0]) != fmt.Sprint(map[string]string{"level": "INFO", "result": "ok", "added": "1", "removed": "1", "changed": "1"}) {
		t.Errorf("reload line: %v", lines)
	}
}
