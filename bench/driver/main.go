// Command driver is "make bench": it sets up local service repositories and a
// pgo.toml per fleet size, runs pgod against a substitute docker that records
// each call (bench/fakedocker), and measures cold starts at several fleet
// sizes against the git clone floor, idle cost against the git ls-remote
// floor, push-to-deploy latency, the SSH control plane against Debian's
// OpenSSH, a fleet on the real Compose and Engine, the policy check and the
// binary size. Every comparison is with something measured in the same run.
// It writes the tables to BENCH.md.
//
// Everything runs on loopback and under the scratch directory, every wait has
// a deadline, and the whole run is sized to stay under fifteen minutes on a
// 2-core machine.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// options are the driver's flags; scripts/bench passes the paths.
type options struct {
	pgo           string        // the pgo binary; pgod and pgoctl symlinks sit next to it
	pgod          string        // daemon to run, if not the pgod next to pgo (another build)
	docker        string        // the substitute docker, built by scripts/bench
	work          string        // scratch directory, removed by scripts/bench
	out           string        // BENCH.md
	notes         string        // hand-written analysis appended to BENCH.md
	services      int           // N of idle, push and ssh
	coldNs        []int         // N of the cold starts
	interval      time.Duration // pgod -t
	coldInterval  time.Duration // pgod -t of the measured cold starts
	repeats       int           // cold starts per N up to 200
	largeRepeats  int           // cold starts per N above 200
	engineN       int           // services on the real engine
	removals      int           // containers removed on the real engine
	engineDeploys int           // unchanged-image commits deployed on the real engine
	cycles        int           // quiet poll cycles
	changeCycles  int           // poll cycles with one change each (also the poll latency samples)
	hooks         int           // webhook pushes
	pings         int           // sequential pings per target
	clients       int           // concurrent clients
	perClient     int           // pings per concurrent client
	maxParallel   int           // pgod --max-parallel; 0 keeps pgod's default
	checkRuns     int           // pgo check repeats
	composeSvcs   int           // services in the pgo check compose file
	deadline      time.Duration // longest wait for any one event
	phases        string        // comma-separated subset to run
	repoURL       string        // "file" (file:// URLs) or "path"
	profile       bool          // measure a profiling build of pgod and save pprof profiles
	profileSecs   int           // length of the cold start CPU profile
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	var o options
	flag.StringVar(&o.pgo, "pgo", "./pgo", "pgo binary (pgod and pgoctl symlinks next to it)")
	flag.StringVar(&o.pgod, "pgod", "", "daemon to measure (default: pgod next to -pgo)")
	flag.StringVar(&o.docker, "docker", "", "substitute docker binary (bench/fakedocker)")
	flag.StringVar(&o.work, "work", "", "scratch directory")
	flag.StringVar(&o.out, "out", "BENCH.md", "report file to write")
	flag.StringVar(&o.notes, "notes", "bench/notes.md", "analysis appended to the report")
	flag.IntVar(&o.services, "n", 200, "services for idle, push and ssh (its fleet's cold start runs last and stays up)")
	coldNs := flag.String("cold-n", "50,200,800", "fleet sizes of the cold starts; -n without -cold-n measures -n alone")
	flag.DurationVar(&o.interval, "t", 10*time.Second, "pgod poll interval (-t) of the idle, push, ssh and engine phases")
	flag.DurationVar(&o.coldInterval, "cold-t", 5*time.Minute, "pgod poll interval (-t) of the measured cold starts: pgod's default, so that no service polls again before the last is up")
	flag.IntVar(&o.repeats, "repeats", 3, "cold starts per fleet size up to 200, each after a git clone floor")
	flag.IntVar(&o.largeRepeats, "large-repeats", 2, "cold starts per fleet size above 200")
	flag.IntVar(&o.engineN, "engine-n", 50, "services deployed on the real engine")
	flag.IntVar(&o.removals, "removals", 3, "containers removed with docker rm -f on the real engine")
	flag.IntVar(&o.engineDeploys, "engine-deploys", 3, "unchanged-image commits deployed on the real engine")
	flag.IntVar(&o.cycles, "cycles", 3, "quiet poll cycles (RSS is read after them)")
	flag.IntVar(&o.changeCycles, "change-cycles", 6, "poll cycles with one service changing in each")
	flag.IntVar(&o.hooks, "hooks", 10, "pushes announced by webhook")
	flag.IntVar(&o.pings, "pings", 100, "sequential pings per target")
	flag.IntVar(&o.clients, "clients", 32, "concurrent ping clients")
	flag.IntVar(&o.perClient, "per-client", 8, "rounds of concurrent pings")
	flag.IntVar(&o.maxParallel, "max-parallel", 0, "pgod --max-parallel (0: pgod's default)")
	flag.IntVar(&o.checkRuns, "check-runs", 7, "pgo check repeats")
	flag.IntVar(&o.composeSvcs, "compose-services", 50, "services in the pgo check compose file")
	flag.DurationVar(&o.deadline, "deadline", 120*time.Second, "longest wait for one event")
	flag.StringVar(&o.phases, "phases", strings.Join(allPhases, ","), "phases to run: "+strings.Join(allPhases, ", ")+" (idle, push and ssh start one cold start of -n if cold is not run)")
	flag.StringVar(&o.repoURL, "repo-url", "file", `repository form in pgo.toml: "file" (file:// URL) or "path"`)
	flag.BoolVar(&o.profile, "profile", false, "measure a profiling build of pgod (pprof added) and save profiles in bench/profiles/")
	flag.IntVar(&o.profileSecs, "profile-seconds", 5, "length of the cold start CPU profile")
	flag.Parse()
	if o.docker == "" || o.work == "" {
		log.Fatal("-docker and -work are required (run it through scripts/bench)")
	}
	var err error
	if o.coldNs, err = parseInts(*coldNs); err != nil {
		log.Fatalf("-cold-n: %v", err)
	}
	if flagGiven("n") && !flagGiven("cold-n") {
		o.coldNs = []int{o.services}
	}
	for _, p := range strings.Split(o.phases, ",") {
		if !slices.Contains(allPhases, strings.TrimSpace(p)) {
			log.Fatalf("-phases: unknown phase %q; the phases are %s", p, strings.Join(allPhases, ", "))
		}
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

// allPhases are the parts of a run, in the order they run.
var allPhases = []string{"cold", "idle", "push", "ssh", "engine", "policy", "size"}

func parseInts(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func run(o options) error {
	var err error
	if o.pgo, err = filepath.Abs(o.pgo); err != nil {
		return err
	}
	b, err := newBench(o)
	if err != nil {
		return err
	}
	b.exitOnSignal()
	defer b.runExitHooks()
	if o.profile {
		if b.pgod, err = b.buildProfiling(); err != nil {
			return err
		}
	}
	b.pgodFeatures()
	started := time.Now()
	log.Printf("setting up fleets of %s services in %s", joinInts(b.coldNs), o.work)
	if err := b.setup(); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	b.runPhases()
	log.Printf("done in %s", time.Since(started).Round(time.Second))
	r := b.report(started)
	fmt.Print(r.text())
	return os.WriteFile(o.out, []byte(r.markdown(o.notes)), 0o644)
}

// runPhases runs what -phases asks for; a phase that fails records why in
// the table and the others still run.
func (b *bench) runPhases() {
	want := map[string]bool{}
	for _, p := range strings.Split(b.o.phases, ",") {
		want[strings.TrimSpace(p)] = true
	}
	if want["cold"] || want["idle"] || want["push"] || want["ssh"] {
		if b.socketFlag {
			if err := b.startFakeEngine(); err != nil {
				b.fail("substitute Engine API", err)
				return
			}
		} else {
			b.note("pgod has no --docker-socket: it reads the substitute's containers through its CLI")
		}
		// The last cold start's daemon stays up for the phases that need one.
		d := b.coldStarts(want["cold"])
		if d != nil && want["idle"] {
			b.idle(d)
		}
		if d != nil && want["push"] {
			b.pushWebhook(d)
		}
		if want["ssh"] {
			b.controlPlane(d) // without a daemon: the OpenSSH reference alone
		}
		if d != nil {
			b.heapProfile(d)
			d.stop()
		}
	}
	if want["engine"] {
		b.engine()
	}
	if want["policy"] {
		b.policy()
		b.realComposeCost()
	}
	if want["size"] {
		b.binarySize()
	}
}
