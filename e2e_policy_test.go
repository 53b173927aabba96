//go:build e2e

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// policyE2ENeed skips unless the engine, Compose v2 and the test image answer.
func policyE2ENeed(t *testing.T) {
	t.Helper()
	requireCompose(t)
	if out, err := exec.Command("docker", "image", "inspect", "pgo-test-busybox:e2e").CombinedOutput(); err != nil {
		t.Skipf("E2E SKIPPED: no engine or no test image pgo-test-busybox:e2e: %v: %s", err, bytes.TrimSpace(out))
	}
}

// TestE2EPolicyDeploysWhatWasChecked renders and validates a project, deploys
// the validated JSON on stdin as the daemon does, and inspects what the engine
// runs: the mounts are the host paths the policy resolved ("$$" escapes
// included) and nothing was re-interpolated on the way.
func TestE2EPolicyDeploysWhatWasChecked(t *testing.T) {
	policyE2ENeed(t)
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkout, data := filepath.Join(base, "checkout"), filepath.Join(base, "data", "pgopolicye2e")
	for _, d := range []string{filepath.Join(checkout, "${X}"), filepath.Join(data, "out")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	compose := `services:
  web:
    image: pgo-test-busybox:e2e
    command: ["sh", "-c", "echo $$HOME > /out/home; sleep 600"]
    volumes:
      - "./$${X}:/x:ro"
      - ${DATA}/out:/out
`
	if err := os.WriteFile(filepath.Join(checkout, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(checkout, ".env"), []byte("X=/etc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := &Service{Name: "pgopolicye2e", Env: []string{"DATA=" + data}}
	r := renderRequest{Service: svc, Checkout: checkout, DataDir: data, Docker: "docker"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	project, vs, err := renderProject(ctx, r)
	if err != nil || len(vs) > 0 {
		t.Fatalf("renderProject: %v %v", err, vs)
	}
	run := func(stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "docker", append([]string{"compose", "-p", svc.Name, "-f", "-", "--project-directory", checkout}, args...)...)
		cmd.Env = renderEnv(svc)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		cmd := exec.Command("docker", "compose", "-p", svc.Name, "-f", "-", "--project-directory", checkout, "down", "-v", "-t", "0")
		cmd.Stdin = bytes.NewReader(project)
		cmd.Run()
	})
	run(project, "up", "-d")

	id := strings.TrimSpace(run(project, "ps", "-q", "web"))
	out, err := exec.Command("docker", "inspect", id).Output()
	if err != nil {
		t.Fatal(err)
	}
	var inspect []struct {
		HostConfig struct{ Privileged bool }
		Mounts     []struct{ Source, Destination string }
	}
	if err := json.Unmarshal(out, &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("docker inspect: %v", err)
	}
	if inspect[0].HostConfig.Privileged {
		t.Error("container runs privileged")
	}
	mounts := map[string]string{}
	for _, m := range inspect[0].Mounts {
		mounts[m.Destination] = m.Source
	}
	if got, want := mounts["/x"], filepath.Join(checkout, "${X}"); got != want {
		t.Errorf("/x mounted from %q; want the literal %q the policy checked (not /etc from .env)", got, want)
	}
	if got, want := mounts["/out"], filepath.Join(data, "out"); got != want {
		t.Errorf("/out mounted from %q; want %q", got, want)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		home, err := os.ReadFile(filepath.Join(data, "out", "home"))
		if err == nil && len(home) > 0 {
			if strings.TrimSpace(string(home)) == "" || strings.Contains(string(home), "$") {
				t.Errorf("container's $HOME = %q; the $$ escape did not reach the container's shell", home)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container never wrote /out/home")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// policyCheckout writes compose into a fresh checkout and returns its path.
func policyCheckout(t *testing.T, compose string, files map[string]string) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files["compose.yaml"] = compose
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// composeUp runs compose on a project (canonical JSON on stdin, as pgod
// does, or a compose file when project is nil) and downs it at cleanup.
func composeUp(t *testing.T, name, dir string, project []byte, args ...string) {
	t.Helper()
	base := []string{"compose", "-p", name, "--project-directory", dir}
	file := []string{"-f", filepath.Join(dir, "compose.yaml")}
	if project != nil {
		file = []string{"-f", "-"}
	}
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command("docker", append(append(base, file...), args...)...)
		if project != nil {
			cmd.Stdin = bytes.NewReader(project)
		}
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() { run("down", "-v", "-t", "0", "--remove-orphans") })
	if out, err := run(args...); err != nil {
		t.Fatalf("compose -p %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// sharedNetwork creates a network no compose project owns, as an operator
// would for a reverse proxy, and removes it at cleanup.
func sharedNetwork(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("docker", "network", "create", name).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "network", "rm", name).Run() })
}

// lookup resolves name from a third container on network, as Caddy would,
// and returns the addresses the engine's DNS gives.
func lookup(t *testing.T, network, name string) []string {
	t.Helper()
	out, _ := exec.Command("docker", "run", "--rm", "--network", network, testImage, "nslookup", name, "127.0.0.11").CombinedOutput()
	var addrs []string
	answer := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Name:") {
			answer = true
		}
		if a, ok := strings.CutPrefix(line, "Address:"); ok && answer {
			addrs = append(addrs, strings.TrimSpace(a))
		}
	}
	return addrs
}

// containerAddress is a container's address on network.
func containerAddress(t *testing.T, container, network string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", `{{(index .NetworkSettings.Networks "`+network+`").IPAddress}}`, container).Output()
	if err != nil {
		t.Fatalf("docker inspect %s: %v", container, err)
	}
	return strings.TrimSpace(string(out))
}

// TestE2EPolicySharedNamesStayApart: on a network several projects join,
// the name Caddy routes a service's traffic to ("<service>-web-1") answers
// with that service's container only. Another project that claims the name
// (as its compose service name, its hostname, an alias) is refused; were it
// not, a third container's lookup would show its address too.
func TestE2EPolicySharedNamesStayApart(t *testing.T) {
	policyE2ENeed(t)
	victim, network := uniqueName("pgonamesv"), uniqueName("pgonamesnet")
	sharedNetwork(t, network)
	joined := "    networks: [default, shared]\nnetworks:\n  shared:\n    external: true\n    name: " + network + "\n"
	dir := policyCheckout(t, "services:\n  web:\n    image: "+testImage+"\n    command: [sleep, \"600\"]\n"+joined, map[string]string{})
	composeUp(t, victim, dir, nil, "up", "-d")
	upstream := victim + "-web-1"
	want := containerAddress(t, upstream, network)
	// A container that may join a shared network: no NET_RAW (see
	// noForgedPacketsOnSharedNetworks), so only the names are in question.
	quiet := "    image: " + testImage + "\n    command: [sleep, \"600\"]\n    cap_drop: [NET_RAW]\n"

	for _, tt := range []struct{ name, service string }{
		{"service name", "  " + upstream + ":\n" + quiet},
		{"hostname", "  web:\n" + quiet + "    hostname: " + strings.ToUpper(upstream) + "\n"},
		{"alias", "  web:\n" + quiet + "    networks:\n      default:\n      shared:\n        aliases: [" + upstream + "]\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			intruder := uniqueName("pgonamesi")
			compose := "services:\n" + tt.service
			if strings.Contains(tt.service, "networks:") {
				compose += "networks:\n  shared:\n    external: true\n    name: " + network + "\n"
			} else {
				compose += joined
			}
			dir := policyCheckout(t, compose, map[string]string{})
			r := renderRequest{Service: &Service{Name: intruder, User: "root"}, Checkout: dir, Docker: "docker", Others: []string{victim}}
			project, vs, err := renderProject(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) > 0 {
				if !strings.Contains(fmt.Sprint(vs), `"`+upstream+`"`) && !strings.Contains(fmt.Sprint(vs), strings.ToUpper(upstream)) {
					t.Errorf("intruder refused, but not for the name it claims: %v", vs)
				}
			} else {
				composeUp(t, intruder, dir, project, "up", "-d")
			}
			if got := lookup(t, network, upstream); len(got) != 1 || got[0] != want {
				t.Errorf("%s resolves to %v on the shared network; want only %s, the victim's container", upstream, got, want)
			}
		})
	}
}

// hostEngine is the engineInspector of the tests: docker as the caller.
func hostEngine(svc *Service) engineInspector {
	return accountEngine(nil, renderEnv(svc), "docker")
}

// checkAndUp renders a project as pgod would and, when it passes, runs the
// last check against the real engine and then up; it returns the
// violations, nil when the project runs.
func checkAndUp(t *testing.T, svc *Service, dir string, others []string) []violation {
	t.Helper()
	r := renderRequest{Service: svc, Checkout: dir, Docker: "docker", Others: others}
	project, vs, err := renderProject(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) > 0 {
		return vs
	}
	if vs := checkBeforeUp(context.Background(), project, r, hostEngine(svc)); len(vs) > 0 {
		return vs
	}
	composeUp(t, svc.Name, dir, project, "up", "-d")
	return nil
}

// TestE2EPolicyForeignNetworkRefused: with no networks in pgo.toml a
// project may join external networks, but not one compose made for another
// project, by name or by the engine's label, unless pgo.toml lists it; a
// network nobody's compose made is joined.
func TestE2EPolicyForeignNetworkRefused(t *testing.T) {
	policyE2ENeed(t)
	victim, plain := uniqueName("pgonetv"), uniqueName("pgonetplain")
	shared := victim + "shared"
	// The victim's network under a name of no service's namespace, as a
	// trusted (root) service or one from before the policy may have made it.
	dir := policyCheckout(t, "services:\n  db:\n    image: "+testImage+"\n    command: [sleep, \"600\"]\n    networks: [db]\nnetworks:\n  db:\n    name: x"+shared+"\n", map[string]string{})
	composeUp(t, victim, dir, nil, "up", "-d")
	sharedNetwork(t, plain)

	join := func(network string) string {
		return "services:\n  web:\n    image: " + testImage + "\n    command: [sleep, \"600\"]\n    cap_drop: [NET_RAW]\n    networks: [default, x]\nnetworks:\n  x:\n    external: true\n    name: " + network + "\n"
	}
	for _, tt := range []struct {
		name, network string
		listed        bool
		want          string // "" when the project runs
	}{
		{"by label", "x" + shared, false, `external network "x` + shared + `" belongs to compose project "` + victim + `"`},
		{"by name", victim + "_default", false, `external network "` + victim + `_default" is not allowed: it belongs to service "` + victim + `"`},
		{"listed", "x" + shared, true, ""},
		{"nobody's", plain, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			intruder := uniqueName("pgoneti")
			svc := &Service{Name: intruder, User: "root"}
			if tt.listed {
				svc.Networks = []string{tt.network}
			}
			dir := policyCheckout(t, join(tt.network), map[string]string{})
			vs := checkAndUp(t, svc, dir, []string{victim})
			attached := strings.Contains(networksOf(t, intruder+"-web-1"), tt.network)
			switch {
			case tt.want == "" && (len(vs) > 0 || !attached):
				t.Fatalf("refused or not attached (%v): %v", attached, vs)
			case tt.want != "" && !strings.Contains(fmt.Sprint(vs), tt.want):
				t.Fatalf("violations %v; want %q", vs, tt.want)
			case tt.want != "" && attached:
				t.Fatalf("the intruder joined %s", tt.network)
			}
		})
	}
}

// networksOf lists the networks a container joined, "" when it does not exist.
func networksOf(t *testing.T, container string) string {
	out, _ := exec.Command("docker", "inspect", "-f", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`, container).Output()
	return string(out)
}

// TestE2EPolicyPlantedImageRefused: compose labels the images it builds
// with the project; an image another project built under a tag this project
// runs (pgod pulls only missing images) is refused before up, and the
// building project is refused at its check. The operator's own images
// (docker build, no label) run.
func TestE2EPolicyPlantedImageRefused(t *testing.T) {
	policyE2ENeed(t)
	attacker, victim := uniqueName("pgoimga"), uniqueName("pgoimgv")
	image := victim + "-shared:1"
	t.Cleanup(func() { exec.Command("docker", "image", "rm", "-f", image).Run() })

	plant := "services:\n  db:\n    image: " + image + "\n    build: .\n    pull_policy: build\n"
	dir := policyCheckout(t, plant, map[string]string{"Dockerfile": "FROM " + testImage + "\nRUN echo planted > /planted\n"})
	r := renderRequest{Service: &Service{Name: attacker, User: "root"}, Checkout: dir, Docker: "docker", Others: []string{victim}}
	if _, vs, err := renderProject(context.Background(), r); err != nil || !strings.Contains(fmt.Sprint(vs), `image "`+image+`" is not allowed for a service that builds`) {
		t.Fatalf("the planting project passed its check: %v, %v", vs, err)
	}
	// Planted all the same, as a trusted service or one from before the rule could.
	composeUp(t, attacker, dir, nil, "build")
	out, err := exec.Command("docker", "image", "inspect", "-f", `{{index .Config.Labels "com.docker.compose.project"}} {{len .RepoDigests}}`, image).Output()
	if err != nil || strings.TrimSpace(string(out)) != attacker+" 0" {
		t.Fatalf("compose did not label its build with the project: %q, %v", out, err)
	}

	run := "services:\n  db:\n    image: " + image + "\n    command: [sleep, \"600\"]\n"
	vs := checkAndUp(t, &Service{Name: victim, User: "root"}, policyCheckout(t, run, map[string]string{}), []string{attacker})
	if want := `image ` + image + ` on this engine was built by compose project "` + attacker + `"`; !strings.Contains(fmt.Sprint(vs), want) {
		t.Fatalf("violations %v; want %q", vs, want)
	}
	if got := projectContainers(t, victim); len(got) > 0 {
		t.Fatalf("the planted image runs: %v", got)
	}
	build := "services:\n  app:\n    build: .\n    command: [sleep, \"600\"]\n"
	vs = checkAndUp(t, &Service{Name: victim, User: "root"}, policyCheckout(t, build, map[string]string{"Dockerfile": "FROM " + image + "\n"}), []string{attacker})
	if want := `build base image ` + image + ` on this engine was built by compose project "` + attacker + `"`; !strings.Contains(fmt.Sprint(vs), want) {
		t.Fatalf("build on the planted image: violations %v; want %q", vs, want)
	}
	own := "services:\n  db:\n    image: " + testImage + "\n    command: [sleep, \"600\"]\n"
	if vs := checkAndUp(t, &Service{Name: victim, User: "root"}, policyCheckout(t, own, map[string]string{}), []string{attacker}); len(vs) > 0 {
		t.Fatalf("the operator's own image refused: %v", vs)
	}
}
