package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// The floors are what git alone costs for what pgod must do with it: a clone
// of every repository (cold start) and an ls-remote of every branch (one poll
// cycle), with the arguments pgod gives git (git.go), the same URLs and as
// many at once as pgod's --max-parallel. No daemon that shells out to git can
// do with less. They are measured in the same run, taking turns with pgod,
// so that the ratios hold whatever else the machine is doing.

// floorRun is what one pass of git over a fleet cost.
type floorRun struct {
	wall, cpu time.Duration
}

// cloneFloor clones every repository of f into a directory made for this
// pass alone: a tree that was deleted en masse makes ext4's next inode
// allocations slower, so no pass reuses one.
func (b *bench) cloneFloor(f *fleet, dst string) (floorRun, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return floorRun{}, err
	}
	var runs [][]string
	for i, name := range f.names {
		runs = append(runs, []string{"clone", "--quiet", "--no-tags", "--single-branch", "--branch", "main", "--",
			b.repository(name), filepath.Join(dst, strconv.Itoa(i))})
	}
	return b.gitRuns(runs)
}

// lsRemoteFloor asks every repository of f for its branch, as one poll cycle does.
func (b *bench) lsRemoteFloor(f *fleet) (floorRun, error) {
	var runs [][]string
	for _, name := range f.names {
		runs = append(runs, []string{"ls-remote", "--heads", "--", b.repository(name), "refs/heads/main"})
	}
	return b.gitRuns(runs)
}

// gitRuns runs git once per argument list, b.parallel at a time, and returns
// the wall time of them all and the sum of their CPU (rusage of each git,
// which holds the processes it waited for).
func (b *bench) gitRuns(runs [][]string) (floorRun, error) {
	jobs := make(chan []string)
	var mu sync.Mutex
	var cpu time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < b.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for args := range jobs {
				cmd := exec.Command("git", args...)
				cmd.Env = append(os.Environ(), gitEnv...)
				out, err := cmd.CombinedOutput()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("git %s: %v: %s", args[0], err, firstLines(string(out), 3))
				}
				if cmd.ProcessState != nil {
					cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				mu.Unlock()
			}
		}()
	}
	for _, args := range runs {
		jobs <- args
	}
	close(jobs)
	wg.Wait()
	return floorRun{wall: time.Since(start), cpu: cpu}, firstErr
}

// maxParallelDefault reads pgod's default --max-parallel from its usage
// text, so the floors run as many gits at once as pgod runs jobs.
var maxParallelDefault = regexp.MustCompile(`--max-parallel N[^\n]*\(default ([0-9]+)\)`)

// pgodFeatures asks pgod for its default --max-parallel and whether it has
// --docker-socket (the flag parses before -h, so an unknown one fails).
func (b *bench) pgodFeatures() {
	b.parallel = b.o.maxParallel
	if b.parallel == 0 {
		b.parallel = 4 // pgod's default in daemon.go when this was written
		if out, err := exec.Command(b.pgod, "-h").Output(); err == nil {
			if m := maxParallelDefault.FindSubmatch(out); m != nil {
				b.parallel, _ = strconv.Atoi(string(m[1]))
			}
		}
	}
	b.socketFlag = exec.Command(b.pgod, "--docker-socket", "", "-h").Run() == nil
}
