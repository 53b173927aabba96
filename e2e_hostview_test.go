//go:build e2e

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EHostView drives two services with an operator key through the real
// pgod and pgoctl, lists them with *//status, which a team's key may not,
// and reads the same table from the saved state with pgo status.
func TestE2EHostView(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	keys := openTempDir(t)
	team, operator := newKey(t, keys, "team"), newKey(t, keys, "operator")
	operators := filepath.Join(openTempDir(t), "operators")
	if err := os.Mkdir(operators, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(operators, "oncall.pub"), []byte(readFile(t, operator+".pub")), 0o644)

	a, b := uniqueName("hostviewa"), uniqueName("hostviewb")
	upA, upB := newUpstream(t), newUpstream(t)
	first := upA.commit(t, map[string]string{"compose.yaml": webCompose("a"), "ssh/team.pub": readFile(t, team+".pub")})
	deployedB := upB.commit(t, map[string]string{"compose.yaml": webCompose("b")})
	d := startDaemon(t, serviceTOML(a, upA.bare)+serviceTOML(b, upB.bare), "--operators", operators)
	pageIs(t, a, "a", 60*time.Second)
	pageIs(t, b, "b", 60*time.Second)

	for _, target := range []string{a + "//ps", b + "//ps", a + "//status", b + "//status"} {
		if out, errOut, code := d.ctl(t, operator, target); code != 0 || out == "" {
			t.Errorf("operator %s: code %d, out %q, err %q", target, code, out, errOut)
		}
	}
	d.logShows(t, "key_file=operators/oncall.pub:1 service="+b+" op=ps", 10*time.Second)

	rejected := upB.commit(t, map[string]string{"compose.yaml": webCompose("b") + "    privileged: true\n"})
	row := func(out, name string) string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == name {
				return strings.Join(f, " ")
			}
		}
		return ""
	}
	var out string
	waitFor(t, "the rejected commit in *//status", 30*time.Second, func() bool {
		var code int
		out, _, code = d.ctl(t, operator, "*//status")
		return code == 0 && strings.HasPrefix(row(out, b), b+" rejected "+short(deployedB))
	})
	if got := row(out, a); !strings.HasPrefix(got, a+" deployed "+short(first)) || !strings.HasSuffix(got, " ok 1/1") {
		t.Errorf("*//status row of %s: %q\n%s", a, got, out)
	}
	if !strings.HasSuffix(row(out, b), " rejected 1/1") {
		t.Errorf("*//status row of %s: %q (rejected %s)", b, row(out, b), short(rejected))
	}

	if _, errOut, code := d.ctl(t, team, "*//status"); code != exitUnauthorized || !strings.Contains(errOut, "not an operator key") {
		t.Errorf("team key *//status: code %d, err %q", code, errOut)
	}
	if _, _, code := d.ctl(t, team, b+"//ps"); code != exitUnauthorized {
		t.Errorf("team key on the other service: code %d", code)
	}

	var stdout, stderr bytes.Buffer
	if code := run([]string{"pgo", "status", "-c", d.config, "-d", d.dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("pgo status: exit %d, %s", code, stderr.String())
	}
	if got := row(stdout.String(), a); !strings.HasPrefix(got, a+" deployed "+short(first)) || !strings.HasSuffix(got, " ok -") {
		t.Errorf("pgo status row of %s: %q\n%s", a, got, stdout.String())
	}
	if got := row(stdout.String(), b); !strings.HasPrefix(got, b+" rejected "+short(deployedB)) {
		t.Errorf("pgo status row of %s: %q\n%s", b, got, stdout.String())
	}
}
