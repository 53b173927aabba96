package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestReadOperatorKeys(t *testing.T) {
	alice, bob := newTestKey(t), newTestKey(t)
	dir := filepath.Join(t.TempDir(), "operators")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "alice.pub"), append([]byte("# alice, on call\n"), ssh.MarshalAuthorizedKey(alice.PublicKey())...), 0o644)
	elsewhere := filepath.Join(t.TempDir(), "bob.pub")
	os.WriteFile(elsewhere, ssh.MarshalAuthorizedKey(bob.PublicKey()), 0o644)
	os.Symlink(elsewhere, filepath.Join(dir, "bob.pub"))

	keys, problems := readOperatorKeys(dir)
	if len(keys) != 1 || keys[0].source != "operators/alice.pub:2" || keys[0].blob != string(alice.PublicKey().Marshal()) {
		t.Errorf("keys: %v", keys)
	}
	if len(problems) != 1 || !strings.HasPrefix(problems[0], "operators/bob.pub: skipped") {
		t.Errorf("problems: %q, want the symlink skipped", problems)
	}

	// Whoever may write to the directory could add a key for every service.
	os.Chmod(dir, 0o777)
	keys, problems = readOperatorKeys(dir)
	if len(keys) != 0 || len(problems) != 1 || !strings.Contains(problems[0], "no operator key loaded (chown root and chmod go-w it)") {
		t.Errorf("a directory others may write to: keys %v, problems %q", keys, problems)
	}

	if keys, problems := readOperatorKeys(filepath.Join(dir, "missing")); keys != nil || problems != nil {
		t.Errorf("missing directory: keys %v, problems %q", keys, problems)
	}
}

// TestSSHOperatorKeys proves that an operator key drives every service as its
// team does, and alone may list them all; a team key may do neither.
func TestSSHOperatorKeys(t *testing.T) {
	opKey, webKey, dbKey := newTestKey(t), newTestKey(t), newTestKey(t)
	web, db := newFakeService("web", webKey.PublicKey()), newFakeService("db", dbKey.PublicKey())
	web.st = serviceStatus{Name: "web", Branch: "main", Deployed: "0123456789abcdef", LastResult: resultOK, Running: 2, Desired: 2}
	db.st = serviceStatus{Name: "db", Branch: "main", Deployed: "fedcba9876543210", Upstream: "1111111111", Rejected: "1111111111",
		LastResult: resultRejected, Running: 1, Desired: 1}
	ctl := newFakeCtl(web, db)
	ctl.setOperators(opKey.PublicKey())
	logs := &syncBuffer{}
	ts := startSSHWith(t, ctl, nil, logs, newLogger(logs, false), nil)

	op := ts.mustDial(t, opKey)
	for _, cmd := range []string{"web//status", "db//status", "web//ps", "db//ps"} {
		if out, stderr, status := runSSH(t, op, cmd); status != 0 || out == "" {
			t.Errorf("operator %s: status %d, stdout %q, stderr %q", cmd, status, out, stderr)
		}
	}
	for _, svc := range []*fakeService{web, db} {
		if calls, _ := svc.recorded(); len(calls) != 1 || calls[0][0] != "compose" || calls[0][1] != "ps" {
			t.Errorf("%s ran %q for the operator, want one compose ps", svc.name, calls)
		}
	}
	// The op's own rules still hold for an operator.
	if _, stderr, status := runSSH(t, op, "web//logs -p other"); status != exitBadRequest || !strings.HasPrefix(stderr, "Bad Request: ") {
		t.Errorf("operator, refused flag: %q, status %d", stderr, status)
	}
	out, stderr, status := runSSH(t, op, "*//status")
	if status != 0 {
		t.Fatalf("operator *//status: status %d, stderr %q", status, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SERVICE") ||
		strings.Join(strings.Fields(lines[1]), " ") != "db rejected fedcba9 - rejected 1/1" ||
		strings.Join(strings.Fields(lines[2]), " ") != "web deployed 0123456 - ok 2/2" {
		t.Errorf("*//status:\n%s", out)
	}

	team := ts.mustDial(t, webKey)
	_, stderr, status = runSSH(t, team, "*//status")
	if status != exitUnauthorized || !strings.Contains(stderr, "is not an operator key") {
		t.Errorf("team key, *//status: %q, status %d", stderr, status)
	}
	if _, stderr, status := runSSH(t, team, "db//status"); status != exitUnauthorized {
		t.Errorf("web's key on db: %q, status %d", stderr, status)
	}

	var audited []map[string]string
	waitUntil(t, "audit lines", func() bool {
		audited = auditLines(t, logs.String(), "audit ssh")
		return len(audited) == 6
	})
	host := audited[5]
	if host["key_file"] != "operators/ops.pub:1" || host["service"] != "*" || host["op"] != "status" || host["exit"] != "0" {
		t.Errorf("audit of *//status: %v", host)
	}
	if ps := audited[2]; ps["key_file"] != "operators/ops.pub:1" || ps["service"] != "web" || ps["op"] != "ps" {
		t.Errorf("audit of the operator's web//ps: %v", ps)
	}
}

func TestParseHostCommand(t *testing.T) {
	if req, err := parseCommand("*//status"); err != nil || req.service != hostTarget || req.op != "status" {
		t.Errorf("*//status: %+v, %v", req, err)
	}
	for cmd, want := range map[string]string{
		"*//ps":          `Not Found: the host-wide "*//" has one op: "*//status"`,
		"*//":            `Not Found: the host-wide "*//" has one op: "*//status"`,
		"*//status -a":   `Bad Request: *//status takes no arguments, got "-a"`,
		"web*//status":   `Bad Request: "web*" is not a valid service name`,
		"*//status 'abc": "Bad Request: unterminated single quote",
	} {
		if _, err := parseCommand(cmd); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", cmd, err, want)
		}
	}
}

func TestDaemonOperatorKeys(t *testing.T) {
	alice := newTestKey(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "alice.pub")
	os.WriteFile(file, ssh.MarshalAuthorizedKey(alice.PublicKey()), 0o644)
	logs := &syncBuffer{}
	d := &Daemon{flags: &daemonFlags{operators: dir}, log: newLogger(logs, false), workers: map[string]*worker{}}
	if where, ok := d.knownKey(alice.PublicKey(), nil); ok {
		t.Fatalf("known before the operator keys are read: %s", where)
	}
	d.loadOperators()
	if where, ok := d.knownKey(alice.PublicKey(), nil); !ok || where != "operators/alice.pub:1" {
		t.Errorf("knownKey: %q, %v", where, ok)
	}
	if k := d.operator(alice.PublicKey(), nil); k == nil || k.source != "operators/alice.pub:1" {
		t.Errorf("operator: %v", k)
	}
	// Removed from the directory: gone at the next reading.
	os.Remove(file)
	d.loadOperators()
	if _, ok := d.knownKey(alice.PublicKey(), nil); ok {
		t.Errorf("a removed operator key is still known")
	}
}
