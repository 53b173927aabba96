package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		command string
		want    opRequest
		err     string
	}{
		{command: "web//ps", want: opRequest{service: "web", op: "ps", args: []string{}}},
		{command: "  web//logs -f   --tail 10 app ", want: opRequest{service: "web", op: "logs", args: []string{"-f", "--tail", "10", "app"}}},
		{command: "web//git pull", want: opRequest{service: "web", op: "git pull", args: []string{}}},
		{command: "web//load", want: opRequest{service: "web", op: "check", args: []string{}}},
		{command: `web//exec app sh -c 'echo "$HOME" it'\''s' "a\"b" c\ d ''`,
			want: opRequest{service: "web", op: "exec", args: []string{"app", "sh", "-c", `echo "$HOME" it's`, `a"b`, "c d", ""}}},
		{command: "web//", err: "Bad Request: no op"},
		{command: "web//git", err: `Bad Request: "git" needs "pull" or "hash"`},
		{command: "web//git clone", err: `Not Found: no op "git clone"`},
		{command: "//ps", err: `Bad Request: "" is not a valid service name`},
		{command: "a/b//ps", err: `Bad Request: "a/b" is not a valid service name`},
		{command: "web ps", err: "Bad Request: command must look like NAME//OP"},
		{command: `web//logs "open`, err: "Bad Request: unterminated double quote"},
		{command: `web//logs \`, err: "Bad Request: backslash at the end"},
		{command: "web//ps " + strings.Repeat("x", maxCommandLen), err: "Bad Request: command longer than"},
	}
	for _, tc := range tests {
		got, err := parseCommand(tc.command)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("parseCommand(%q) error = %v, want %q", tc.command, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseCommand(%q): %v", tc.command, err)
			continue
		}
		if got.args == nil {
			got.args = []string{}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseCommand(%q) = %#v, want %#v", tc.command, got, tc.want)
		}
	}
}

func TestShellQuoteRoundTrip(t *testing.T) {
	words := []string{"", "plain", "two words", "it's", `"dq"`, `back\slash`, "$HOME", "tab\there", "new\nline", "-f", "ünïcode"}
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, shellQuote(w))
	}
	got, err := splitWords(strings.Join(quoted, " "))
	if err != nil || !reflect.DeepEqual(got, words) {
		t.Errorf("splitWords(quoted) = %q, %v; want %q", got, err, words)
	}
}

// TestRefusedComposeFlags: every flag that would point compose at another
// project or file is refused, by name, for every op that passes arguments on.
func TestRefusedComposeFlags(t *testing.T) {
	for name, spec := range ops {
		for _, flag := range []string{"-f", "-p", "--file", "--project-name", "--project-directory", "--env-file", "--profile", "--parallel", "-c"} {
			_, err := spec.args.parse(name, []string{flag, "x"}, name == "exec")
			want := `flag "` + flag + `" is not allowed for ` + name
			if name == "logs" && flag == "-f" { // --follow
				continue
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s %s x: %v, want %q", name, flag, err, want)
			}
		}
	}
}

func TestExitOf(t *testing.T) {
	tests := []struct {
		err    error
		status int
		result string
	}{
		{nil, 0, "ok"},
		{badRequest("x"), exitBadRequest, "bad_request"},
		{notFound("x"), exitNotFound, "not_found"},
		{unauthorized("x"), exitUnauthorized, "unauthorized"},
		{exitStatus(3), 3, "error"},
		{errors.New("boom"), exitFailure, "error"},
		{deployFailure(resultRejected, "rejected"), exitRejected, resultRejected},
		{deployFailure(resultFailed, "failed"), exitFailed, resultFailed},
		{deployFailure(resultRolledBack, "rolled back"), exitFailed, resultRolledBack},
		{deployFailure(resultUnhealthy, "unhealthy"), exitUnhealthy, resultUnhealthy},
		{deployFailure(resultTimeout, "timeout"), exitTimeout, resultTimeout},
		{fmt.Errorf("git: %w", context.DeadlineExceeded), exitTimeout, resultTimeout},
	}
	for _, tc := range tests {
		status, result := exitOf(tc.err)
		if status != tc.status || result != tc.result {
			t.Errorf("exitOf(%v) = %d, %q; want %d, %q", tc.err, status, result, tc.status, tc.result)
		}
	}
}

func TestFormatStatusEmpty(t *testing.T) {
	got := formatStatus(serviceStatus{Name: "web", Branch: "main"}, time.Now())
	for _, want := range []string{"deployed:    -", "last sync:   never", "stopped:     no", "containers:  0 running of 0 desired"} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "rejected") || strings.Contains(got, "error") || strings.Contains(got, "attempt") {
		t.Errorf("empty status shows a rejection, an error or an attempt:\n%s", got)
	}
}

// Status names what runs and since when, each container, the attempt that
// failed, and a rejection only while it is the upstream head.
func TestFormatStatusTellsTheTruth(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	st := serviceStatus{Name: "web", Branch: "main", Deployed: "aaaa", DeployedAt: now.Add(-time.Hour), Upstream: "cccc",
		Attempt: attempt{Commit: "cccc", Trigger: "git pull", Result: resultUnhealthy, Reason: "deploy of cccc failed, rolled back to aaaa: unhealthy: web-app-1 exited with status 1",
			Logs: []string{"boom"}, At: now.Add(-time.Minute)},
		LastError: "deploy of cccc failed, rolled back to aaaa: unhealthy: web-app-1 exited with status 1",
		Rejected:  "bbbb", Rejection: []string{"privileged is not allowed"},
		Running: 1, Desired: 1,
		Containers: []psEntry{{Name: "web-app-1", Service: "app", State: "running", Image: "busybox:1", Health: "healthy"}}}
	got := formatStatus(st, now)
	for _, want := range []string{
		"deployed:    aaaa since 2026-12-02T09:00:00Z (1h0m0s ago)",
		"last attempt: cccc by git pull at 2026-12-02T09:59:00Z (1m0s ago): unhealthy",
		"reason:      deploy of cccc failed, rolled back to aaaa",
		"  | boom",
		"  web-app-1  busybox:1  running  healthy",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "bbbb") || strings.Contains(got, "privileged") {
		t.Errorf("status shows a rejection that is no longer the upstream head:\n%s", got)
	}
	if strings.Count(got, "rolled back to aaaa") != 1 {
		t.Errorf("status repeats the attempt's reason as an error:\n%s", got)
	}
	st.Attempt = attempt{Commit: "aaaa", Trigger: "poll", Result: resultOK}
	if got := formatStatus(st, now); strings.Contains(got, "last attempt") {
		t.Errorf("status shows an attempt that is what runs:\n%s", got)
	}
}

// forbidden are compose's global flags that choose the project or its files.
var forbidden = map[string]bool{"-f": true, "--file": true, "-p": true, "--project-name": true,
	"--project-directory": true, "--env-file": true, "--profile": true}

// FuzzOpParse: parsing never panics; what parses survives quoting and
// parsing again unchanged; what an op accepts never hands compose a flag
// outside the op's allow-list, and never one that picks another project.
func FuzzOpParse(f *testing.F) {
	for _, s := range []string{
		"web//ps", "web//logs -f --tail 10 app", "web//logs -ft -n5 --since=2026-01-01T00:00:00Z",
		"web//exec -it -u 0:0 -e A=b app sh -c 'echo hi'", "web//git pull", "web//git hash",
		`web//stop -t 3 "a b"`, "web//ps -p x", "web//logs --project-directory=/", "web//restart -- -p",
		`web//exec app sh -c "a\"b" \x`, "x//up --env-file /etc/shadow",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, command string) {
		req, err := parseCommand(command)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) {
				t.Fatalf("parseCommand(%q): error %v is not a request error", command, err)
			}
			return
		}
		again := req.service + "//" + req.op
		for _, a := range req.args {
			again += " " + shellQuote(a)
		}
		req2, err := parseCommand(again)
		if err != nil {
			t.Fatalf("re-parsing %q (from %q): %v", again, command, err)
		}
		if req2.service != req.service || req2.op != req.op || strings.Join(req2.args, "\x00") != strings.Join(req.args, "\x00") {
			t.Fatalf("round trip changed %q into %q", command, again)
		}
		spec := ops[req.op]
		args, err := spec.args.parse(req.op, req.args, req.op == "exec")
		if err != nil {
			return
		}
		out := args.compose()
		for i, a := range out {
			if a == "--" {
				for _, p := range out[i+1:] {
					if req.op != "exec" && !composeNameRE.MatchString(p) {
						t.Fatalf("%q: positional %q is not a service name", command, p)
					}
				}
				break
			}
			name, _, hasValue := strings.Cut(a, "=")
			fs := spec.args.lookup(name)
			if fs == nil || fs.names[0] != name || forbidden[name] || hasValue != (fs.check != nil) {
				t.Fatalf("%q: compose got flag %q outside the allow-list of %s", command, a, req.op)
			}
		}
	})
}

// TestExecEnvNeedsAValue: "exec -e NAME" would have docker copy NAME from
// its own environment, which holds the service's env secrets; it is
// refused, and a value given with the name is all that reaches the container.
func TestExecEnvNeedsAValue(t *testing.T) {
	key := newTestKey(t)
	svc := newFakeService("web", key.PublicKey())
	svc.cliEnv = []string{"DB_PASSWORD=s3cret"}
	// docker exec as docker runs it: --env=NAME takes NAME from docker's own environment.
	svc.dockerScripts["exec"] = `shift; for a; do case "$a" in --env=*=*) echo "${a#--env=}";; --env=*) n=${a#--env=}; eval "echo $n=\$$n";; esac; done`
	ts := startSSH(t, newFakeCtl(svc), nil)
	c := ts.mustDial(t, key)
	for _, cmd := range []string{"web//exec -e DB_PASSWORD app env", "web//exec --env DB_PASSWORD app env", "web//exec -eDB_PASSWORD app env"} {
		stdout, stderr, status := runSSH(t, c, cmd)
		if status != exitBadRequest || !strings.Contains(stderr, `"DB_PASSWORD" is not NAME=VALUE`) || strings.Contains(stdout, "s3cret") {
			t.Errorf("%s: stdout %q, stderr %q, status %d; want a Bad Request", cmd, stdout, stderr, status)
		}
	}
	if calls, _ := svc.recorded(); len(calls) != 0 {
		t.Errorf("refused exec still ran %q", calls)
	}
	stdout, _, status := runSSH(t, c, "web//exec -e DB_PASSWORD=mine -e EMPTY= app env")
	if status != 0 || stdout != "DB_PASSWORD=mine\nEMPTY=\n" {
		t.Errorf("exec -e NAME=VALUE: %q, status %d", stdout, status)
	}
}

func TestOpNamesAreTheOps(t *testing.T) {
	names := opNames()
	if len(names) != len(ops) || !slices.IsSorted(names) {
		t.Fatalf("opNames() = %q, want the %d ops sorted", names, len(ops))
	}
	for _, n := range names {
		if ops[n] == nil {
			t.Errorf("opNames() has %q, which is no op", n)
		}
	}
}
