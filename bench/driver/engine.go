package main

import (
	"bufio"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// The real-engine phase: -engine-n services deployed by pgod with the real
// docker compose and the real Docker Engine, each project one busybox
// container without a network. It measures what the substitute hides: the
// engine's CPU for pgod's drift check, the compose processes per deploy and
// per poll, and how soon a removed container comes back. Everything it
// makes on the engine goes at the end, also when it fails or is interrupted.

// engineSocket is where the Docker Engine listens on Debian.
const engineSocket = "/var/run/docker.sock"

// engineRun is the state of one real-engine phase.
type engineRun struct {
	b       *bench
	down    sync.Once // teardown, from the phase's end or an interrupt
	fleet   *fleet
	api     *engineClient
	d       *daemon
	calls   *cliLog
	figure  string
	cold    coldEngine
	idle    cycles
	floor   []float64
	compose []float64 // compose processes per idle cycle, all services
	cli     []float64 // other docker CLI processes per idle cycle
}

type coldEngine struct {
	wall, cpu, engine float64
	calls             map[string]int
}

func (b *bench) engine() {
	n := b.o.engineN
	e := &engineRun{b: b, api: newEngineClient(engineSocket),
		fleet:  &fleet{names: serviceNames("pgobench", n), config: filepath.Join(b.o.work, "pgo-engine.toml"), image: benchImage},
		figure: fmt.Sprintf("real engine N=%d", n)}
	if err := e.api.ping(5 * time.Second); err != nil {
		b.fail(e.figure, err)
		return
	}
	e.noteOthers()
	// Set before anything is made, so that a failure half-way, or an
	// interrupt, still takes down what was made.
	defer e.teardown()
	b.onExit(e.teardown)
	if err := e.prepare(); err != nil {
		b.fail(e.figure, err)
		return
	}
	if err := e.coldStart(); err != nil {
		b.fail(e.figure+": cold start", err)
		return
	}
	time.Sleep(2 * time.Second) // a measurement gap: the tail of the cold start passes
	if err := e.idleCycles(); err != nil {
		b.fail(e.figure+": idle", err)
		return
	}
	e.removals()
	e.deploys()
	e.d.stop()
	e.rows(e.baseline())
}

// noteOthers says when someone else uses the engine: their load is in the
// engine's CPU figures.
func (e *engineRun) noteOthers() {
	all, err := e.api.containers()
	if err != nil {
		return
	}
	if len(all) > 0 {
		e.b.note("real engine: %d containers of others on the engine at the start; their activity is in the engine's CPU", len(all))
	}
	if others := e2eRunning(); others != "" {
		e.b.note("real engine: an end-to-end test run was seen (%s); the engine figures are noisy", others)
	}
}

// e2eRunning names a running end-to-end test process, if any.
func e2eRunning() string {
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(data), "\x00"), "\x00", " ")
		if strings.Contains(cmd, "-tags e2e") || strings.Contains(cmd, ".test -test.") && strings.Contains(cmd, "E2E") {
			return firstLines(cmd, 1)
		}
	}
	return ""
}

// prepare builds the image, makes the upstreams and the pgo.toml, and writes
// the docker wrapper that counts pgod's docker processes.
func (e *engineRun) prepare() error {
	if err := buildBenchImage(e.b.o.work); err != nil {
		return err
	}
	if err := e.b.makeUpstreams(e.fleet); err != nil {
		return err
	}
	if err := os.WriteFile(e.fleet.config, []byte(e.b.pgoToml(e.fleet)), 0o600); err != nil {
		return err
	}
	var err error
	e.calls, err = newCLILog(filepath.Join(e.b.o.work, "engine-docker"))
	return err
}

// buildBenchImage builds benchImage as the e2e tests build theirs:
// Debian's busybox-static on scratch, since no registry is reachable.
func buildBenchImage(work string) error {
	bb := "/bin/busybox"
	if out, err := exec.Command("file", "-L", bb).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		return fmt.Errorf("%s is not static; install busybox-static", bb)
	}
	dir := filepath.Join(work, "image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), data, 0o755); err != nil {
		return err
	}
	dockerfile := "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	_, err = runCmd("", []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "-q", "-t", benchImage, dir)
	return err
}

// coldStart starts pgod on the fleet and waits until every project's
// container runs.
func (e *engineRun) coldStart() error {
	spec := daemonSpec{fleet: e.fleet, root: filepath.Join(e.b.o.work, "engine-pgo"), docker: e.calls.wrapper, poll: e.b.o.interval}
	if e.b.socketFlag {
		spec.extra = []string{"--docker-socket", engineSocket}
	}
	mark := e.calls.count()
	engine0 := engineCPU()
	d, err := e.b.startDaemon(spec)
	if err != nil {
		return err
	}
	e.d = d
	deadline := max(e.b.o.deadline, time.Duration(e.fleet.n())*3*time.Second)
	if err := d.waitEvery(deadline, 500*time.Millisecond, e.allRunning); err != nil {
		return fmt.Errorf("not every container runs: %w", err)
	}
	wall := time.Since(d.started)
	p, err := d.stat()
	if err != nil {
		return err
	}
	e.cold = coldEngine{wall: wall.Seconds(), cpu: p.cpu().Seconds(), engine: (engineCPU() - engine0).Seconds(), calls: e.calls.since(mark).bySub()}
	log.Printf("%s: all running after %.1fs, %.2f CPU s (pgod+children), engine %.2f CPU s", e.figure, e.cold.wall, e.cold.cpu, e.cold.engine)
	return nil
}

// allRunning reports whether every project of the fleet has its container
// running. It is asked twice a second: each look costs the engine too.
func (e *engineRun) allRunning() bool {
	list, err := e.api.containers("com.docker.compose.project")
	if err != nil {
		return false
	}
	running := map[string]bool{}
	for _, c := range list {
		if c.State == "running" {
			running[c.Labels["com.docker.compose.project"]] = true
		}
	}
	for _, name := range e.fleet.names {
		if !running[name] {
			return false
		}
	}
	return true
}

// idleCycles measures -cycles poll intervals with nothing new upstream, each
// after an ls-remote floor pass over the same repositories.
func (e *engineRun) idleCycles() error {
	// The engine's CPU is read at the start and at the end of each window:
	// the docker processes logged then bound the window's too.
	var marks []int
	probe := func() time.Duration {
		marks = append(marks, e.calls.count())
		return engineCPU()
	}
	var err error
	e.idle, err = e.b.cycleCPU(e.d, e.b.o.cycles, func(int) error {
		fl, err := e.b.lsRemoteFloor(e.fleet)
		e.floor = append(e.floor, fl.cpu.Seconds())
		return err
	}, nil, probe)
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(marks); i += 2 {
		calls := e.calls.between(marks[i], marks[i+1])
		e.compose = append(e.compose, float64(calls.compose()))
		e.cli = append(e.cli, float64(len(calls)-calls.compose()))
	}
	return nil
}

// removals removes a container with docker rm -f, -removals times on
// different services, and times how soon it runs again.
func (e *engineRun) removals() {
	var secs []float64
	for i := 0; i < min(e.b.o.removals, e.fleet.n()); i++ {
		name := e.fleet.names[i] + "-web-1"
		old, found, err := e.api.inspect(name)
		if err != nil || !found {
			e.b.fail(e.figure+": container removed", fmt.Errorf("%s before removal: found %v, %v", name, found, err))
			return
		}
		if _, err := runCmd("", nil, "docker", "rm", "-f", name); err != nil {
			e.b.fail(e.figure+": container removed", err)
			return
		}
		removed := time.Now()
		err = e.d.waitEvery(3*e.b.o.interval, 100*time.Millisecond, func() bool {
			c, found, err := e.api.inspect(name)
			return err == nil && found && c.ID != old.ID && c.State.Running
		})
		if err != nil {
			e.b.fail(e.figure+": container removed", fmt.Errorf("%s does not run again: %w", name, err))
			return
		}
		secs = append(secs, time.Since(removed).Seconds())
	}
	var frac []float64
	for _, s := range secs {
		frac = append(frac, s/e.b.o.interval.Seconds())
	}
	e.b.add(
		ratioRow(fmt.Sprintf("%s: container removed (docker rm -f) to running again, fraction of -t %s", e.figure, e.b.o.interval), frac).within(1),
		samplesRow(e.figure+": container removed to running again", "s", secs),
	)
}

// deploys pushes -engine-deploys commits that change only an environment
// value (the image stays), announces each by webhook, and counts the compose
// processes pgod ran for the service until the container runs with it.
func (e *engineRun) deploys() {
	var perDeploy, secs []float64
	subs := map[string]int{}
	for i := 0; i < min(e.b.o.engineDeploys, e.fleet.n()); i++ {
		name := e.fleet.names[e.fleet.n()-1-i]
		if err := e.deployOnce(name, &perDeploy, &secs, subs); err != nil {
			e.b.fail(e.figure+": deploy of an unchanged-image commit", err)
			return
		}
	}
	e.b.add(
		samplesRow(e.figure+": compose processes per deploy of an unchanged-image commit", "", perDeploy).within(composePerDeploy),
		samplesRow(e.figure+": push to running with the new env, by webhook", "s", secs),
	)
	e.b.note("%s: compose processes per unchanged-image deploy by subcommand: %s", e.figure, perRunCounts(subs, len(perDeploy)))
}

func (e *engineRun) deployOnce(name string, perDeploy, secs *[]float64, subs map[string]int) error {
	if err := e.b.commitChange(name, e.fleet.image); err != nil {
		return err
	}
	head, err := git(filepath.Join(e.b.clones, name), "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	mark := e.calls.count()
	t0 := time.Now()
	if err := e.b.push(name); err != nil {
		return err
	}
	if err := postGitHubHook(e.d.metrics, name, strings.TrimSpace(string(head))); err != nil {
		return err
	}
	want := fmt.Sprintf("REV=%d", e.b.pushed[name])
	container := name + "-web-1"
	err = e.d.waitEvery(e.b.o.deadline, 100*time.Millisecond, func() bool {
		c, found, err := e.api.inspect(container)
		return err == nil && found && c.State.Running && contains(c.Config.Env, want)
	})
	if err != nil {
		return fmt.Errorf("%s does not run with %s: %w", container, want, err)
	}
	*secs = append(*secs, time.Since(t0).Seconds())
	// pgod may still be finishing the deploy (a last look at the
	// containers): count until its docker processes for the service stop.
	quiet := time.Now()
	seen := 0
	err = e.d.waitEvery(30*time.Second, 100*time.Millisecond, func() bool {
		if now := len(e.calls.since(mark).of(name)); now != seen {
			seen, quiet = now, time.Now()
		}
		return time.Since(quiet) > time.Second
	})
	if err != nil {
		return fmt.Errorf("%s: pgod's docker calls do not stop: %w", name, err)
	}
	calls := e.calls.since(mark).of(name)
	*perDeploy = append(*perDeploy, float64(calls.compose()))
	for sub, k := range calls.bySub() {
		if strings.HasPrefix(sub, "compose") {
			subs[sub] += k
		}
	}
	return nil
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

// baseline is the engine's CPU over one interval with pgod stopped and the
// containers still up: what the engine costs without pgod.
func (e *engineRun) baseline() float64 {
	start := engineCPU()
	time.Sleep(e.b.o.interval)
	return (engineCPU() - start).Seconds()
}

// rows adds the idle figures, the engine's share net of its baseline.
func (e *engineRun) rows(baseline float64) {
	t := e.b.o.interval
	n := e.fleet.n()
	var withEngine []float64
	for i := range e.idle.total {
		withEngine = append(withEngine, e.idle.total[i]+max(0, e.idle.engine[i]-baseline))
	}
	idle := fmt.Sprintf("%s idle -t %s", e.figure, t)
	l := e.idle.load
	e.b.add(
		ratioRow(idle+": CPU per cycle, (pgo + engine above its baseline) / git ls-remote floor", ratios(withEngine, e.floor)).within(idleWithin).withLoad(l),
		ratioRow(idle+": CPU per cycle, pgod+children alone / git ls-remote floor", ratios(e.idle.total, e.floor)).withLoad(l),
		samplesRow(idle+": compose processes per cycle, nothing new", "", e.compose).within(0).withLoad(l),
		samplesRow(idle+": other docker CLI processes per cycle", "", e.cli).withLoad(l),
		samplesRow(idle+": CPU per cycle, pgod+children", "CPU s", e.idle.total).withLoad(l),
		samplesRow(idle+": CPU per cycle, engine (dockerd, containerd, shims)", "CPU s", e.idle.engine).withLoad(l),
		valueRow(fmt.Sprintf("  engine's baseline: one -t %s with pgod stopped, containers up", t), "CPU s", baseline, ""),
		samplesRow(fmt.Sprintf("  floor N=%d: git ls-remote ×%d, %d at once (CPU)", n, n, e.b.parallel), "CPU s", e.floor).withLoad(l),
		valueRow(e.figure+": cold start, all containers running (wall)", "s", e.cold.wall, ""),
		valueRow(e.figure+": cold start, CPU (pgod+children)", "CPU s", e.cold.cpu, ""),
		valueRow(e.figure+": cold start, CPU of the engine", "CPU s", e.cold.engine, ""),
	)
	e.b.note("%s: docker processes per service in the cold start: %s", e.figure, perRunCounts(e.cold.calls, n))
}

// teardown stops pgod, then takes every project down as pgod would
// (docker compose -p NAME down), removes what is left of them and the image.
func (e *engineRun) teardown() { e.down.Do(e.takeDown) }

func (e *engineRun) takeDown() {
	if e.d != nil {
		e.d.stop()
	}
	names := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				if _, err := runCmd("", composeEnv, "docker", "compose", "-p", name, "down", "--remove-orphans", "-t", "1"); err != nil {
					log.Printf("teardown: %v", err)
				}
			}
		}()
	}
	for _, name := range e.fleet.names {
		names <- name
	}
	close(names)
	wg.Wait()
	// Anything compose down missed: containers of the bench's projects.
	ours := map[string]bool{}
	for _, name := range e.fleet.names {
		ours[name] = true
	}
	if list, err := e.api.containers("com.docker.compose.project"); err == nil {
		for _, c := range list {
			if ours[c.Labels["com.docker.compose.project"]] {
				runCmd("", nil, "docker", "rm", "-f", c.ID)
			}
		}
	}
	if _, err := runCmd("", nil, "docker", "image", "rm", "-f", benchImage); err != nil {
		log.Printf("teardown: %v", err)
	}
	log.Printf("real engine: %d projects taken down, %s removed", e.fleet.n(), benchImage)
}

// cliLog is what a docker wrapper first on pgod's --docker recorded: one
// line of arguments per process pgod started. The wrapper execs the real
// docker at once; a dash printf to a file costs well under a millisecond.
type cliLog struct {
	wrapper, log string
}

func newCLILog(dir string) (*cliLog, error) {
	real, err := exec.LookPath("docker")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &cliLog{wrapper: filepath.Join(dir, "docker"), log: filepath.Join(dir, "calls.log")}
	script := fmt.Sprintf("#!/bin/sh\n# Records each docker process pgod starts (bench/driver), then is the real docker.\nprintf '%%s\\n' \"$*\" >>%q\nexec %q \"$@\"\n", c.log, real)
	return c, os.WriteFile(c.wrapper, []byte(script), 0o755)
}

// cliCalls are logged docker command lines.
type cliCalls [][]string

func (c *cliLog) all() cliCalls {
	f, err := os.Open(c.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var calls cliCalls
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		calls = append(calls, strings.Fields(sc.Text()))
	}
	return calls
}

func (c *cliLog) count() int { return len(c.all()) }

func (c *cliLog) since(mark int) cliCalls { return c.between(mark, -1) }

// between is the calls from mark to end (-1: to the last).
func (c *cliLog) between(mark, end int) cliCalls {
	all := c.all()
	if end < 0 || end > len(all) {
		end = len(all)
	}
	if mark > end {
		return nil
	}
	return all[mark:end]
}

// of is the calls for one project: compose's -p, docker ps's label filter.
func (cs cliCalls) of(project string) cliCalls {
	var out cliCalls
	for _, args := range cs {
		if callProject(args) == project {
			out = append(out, args)
		}
	}
	return out
}

func callProject(args []string) string {
	for i, a := range args {
		if (a == "-p" || a == "--project-name") && i+1 < len(args) {
			return args[i+1]
		}
		if name, ok := strings.CutPrefix(a, "label=com.docker.compose.project="); ok {
			return name
		}
	}
	return ""
}

func (cs cliCalls) compose() int {
	n := 0
	for _, args := range cs {
		if len(args) > 0 && args[0] == "compose" {
			n++
		}
	}
	return n
}

func (cs cliCalls) bySub() map[string]int {
	subs := map[string]int{}
	for _, args := range cs {
		subs[subcommand(args)]++
	}
	return subs
}

// perRunCounts formats counts divided by runs, by name.
func perRunCounts(counts map[string]int, runs int) string {
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(counts[k])/float64(max(runs, 1))))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
