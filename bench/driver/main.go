// Command driver is "make bench": it sets up N local service repositories and
// a pgo.toml for them, runs pgod against a substitute docker that records each
// call (bench/fakedocker), measures cold start, idle cost, push-to-deploy
// latency, the SSH control plane against Debian's OpenSSH, the policy check
// and the binary size, and writes the table to BENCH.md.
//
// Everything runs on loopback, every wait has a deadline, and the whole run
// is sized to stay under ten minutes on a 2-core machine.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// options are the driver's flags; scripts/bench passes the paths.
type options struct {
	pgo          string        // the pgo binary; pgod and pgoctl symlinks sit next to it
	pgod         string        // daemon to run, if not the pgod next to pgo (another build)
	docker       string        // the substitute docker, built by scripts/bench
	work         string        // scratch directory, removed by scripts/bench
	out          string        // BENCH.md
	notes        string        // hand-written analysis appended to BENCH.md
	services     int           // N
	interval     time.Duration // pgod -t
	repeats      int           // cold starts
	cycles       int           // quiet poll cycles
	changeCycles int           // poll cycles with one change each (also the poll latency samples)
	hooks        int           // webhook pushes
	pings        int           // sequential pings per target
	clients      int           // concurrent clients
	perClient    int           // pings per concurrent client
	maxParallel  int           // pgod --max-parallel; 0 keeps pgod's default
	checkRuns    int           // pgo check repeats
	composeSvcs  int           // services in the pgo check compose file
	deadline     time.Duration // longest wait for any one event
	phases       string        // comma-separated subset to run
	repoURL      string        // "file" (file:// URLs) or "path"
	profile      bool          // measure a profiling build of pgod and save pprof profiles
	profileSecs  int           // length of the cold start CPU profile
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
	flag.IntVar(&o.services, "n", 200, "services in pgo.toml")
	flag.DurationVar(&o.interval, "t", 10*time.Second, "pgod poll interval (-t)")
	flag.IntVar(&o.repeats, "repeats", 3, "cold starts")
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
	flag.StringVar(&o.phases, "phases", "floor,cold,idle,push,ssh,policy,size", "phases to run")
	flag.StringVar(&o.repoURL, "repo-url", "file", `repository form in pgo.toml: "file" (file:// URL) or "path"`)
	flag.BoolVar(&o.profile, "profile", false, "measure a profiling build of pgod (pprof added) and save profiles in bench/profiles/")
	flag.IntVar(&o.profileSecs, "profile-seconds", 5, "length of the cold start CPU profile")
	flag.Parse()
	if o.docker == "" || o.work == "" {
		log.Fatal("-docker and -work are required (run it through scripts/bench)")
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
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
	if o.profile {
		if b.pgod, err = b.buildProfiling(); err != nil {
			return err
		}
	}
	started := time.Now()
	log.Printf("setting up %d services in %s", o.services, o.work)
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
	if want["floor"] {
		b.gitFloor()
	}
	if want["cold"] || want["idle"] || want["push"] || want["ssh"] {
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
	if want["policy"] {
		b.policy()
		b.realComposeCost()
	}
	if want["size"] {
		b.binarySize()
	}
}
