package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireCompose skips, loudly, when Compose v2 cannot run here.
func requireCompose(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("docker", "compose", "version", "--short").CombinedOutput(); err != nil {
		t.Skipf("POLICY TESTS SKIPPED: docker compose version failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
}

// corpusOptions reads a case's optional "options" file: "key = value" lines
// for the pgo.toml keys the policy looks at (name, ports, networks, env,
// compose) and "others", the other configured services. {datadir} in a value
// stands for the case's data directory.
func corpusOptions(t *testing.T, dir, datadir string) (svc *Service, others []string) {
	svc = &Service{Name: "team", User: "team"}
	f, err := os.Open(filepath.Join(dir, "options"))
	if os.IsNotExist(err) {
		return svc, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("options: bad line %q", line)
		}
		k, v = strings.TrimSpace(k), strings.ReplaceAll(strings.TrimSpace(v), "{datadir}", datadir)
		switch k {
		case "name":
			svc.Name = v
		case "ports":
			svc.Ports = strings.Split(v, ",")
		case "networks":
			svc.Networks = strings.Split(v, ",")
		case "env":
			svc.Env = append(svc.Env, v)
		case "compose":
			svc.Compose = v
		case "others":
			others = strings.Split(v, ",")
		default:
			t.Fatalf("options: unknown key %q", k)
		}
	}
	return svc, others
}

// corpusExpect reads a case's "expect" file: "accept", or "reject" followed by
// lines that must each be a substring of some violation.
func corpusExpect(t *testing.T, dir string) (accept bool, want []string) {
	data, err := os.ReadFile(filepath.Join(dir, "expect"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	switch strings.TrimSpace(lines[0]) {
	case "accept":
		return true, nil
	case "reject":
		for _, l := range lines[1:] {
			if l = strings.TrimSpace(l); l != "" {
				want = append(want, l)
			}
		}
		if len(want) == 0 {
			t.Fatal("expect: reject without the violations expected")
		}
		return false, want
	}
	t.Fatalf("expect: first line must be accept or reject, not %q", lines[0])
	return
}

// TestPolicyCorpus renders and validates every project under testdata/policy
// with the real compose, as the daemon would, and compares the verdict.
func TestPolicyCorpus(t *testing.T) {
	requireCompose(t)
	dirs, err := filepath.Glob("testdata/policy/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	accepts, rejects := 0, 0
	for _, dir := range dirs {
		accept, _ := corpusExpect(t, dir)
		if accept {
			accepts++
		} else {
			rejects++
		}
	}
	if accepts < 35 || rejects < 120 {
		t.Errorf("corpus has %d benign and %d adversarial projects; want >= 35 and >= 120", accepts, rejects)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			checkout, err := filepath.Abs(dir)
			if err != nil {
				t.Fatal(err)
			}
			datadir := filepath.Join(t.TempDir(), "data")
			svc, others := corpusOptions(t, dir, datadir)
			datadir = filepath.Join(datadir, svc.Name)
			accept, want := corpusExpect(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, vs, err := renderProject(ctx, renderRequest{Service: svc, Checkout: checkout, DataDir: datadir, Docker: "docker", Others: others})
			if err != nil {
				t.Fatalf("renderProject: %v", err)
			}
			var got []string
			for _, v := range vs {
				got = append(got, v.String())
			}
			all := strings.Join(got, "\n")
			if accept {
				if len(vs) > 0 {
					t.Errorf("benign project rejected:\n%s", all)
				}
				return
			}
			if len(vs) == 0 {
				t.Fatalf("adversarial project accepted; want violations %q", want)
			}
			for _, w := range want {
				if !strings.Contains(all, w) {
					t.Errorf("no violation contains %q; got:\n%s", w, all)
				}
			}
		})
	}
}
