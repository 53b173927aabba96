package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

// pprofHook is added to a copy of pgo's sources for a profiling build: it
// serves net/http/pprof on the address in PGO_BENCH_PPROF. The product itself
// is left as it is, so that what is measured without -profile is what ships.
const pprofHook = `package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	if addr := os.Getenv("PGO_BENCH_PPROF"); addr != "" {
		go http.ListenAndServe(addr, http.DefaultServeMux)
	}
}
`

// buildProfiling builds pgod from a copy of the sources of -pgo (the
// top-level package beside the binary, where make build puts it) with
// pprofHook added, and returns the binary.
func (b *bench) buildProfiling() (string, error) {
	from := filepath.Dir(b.o.pgo)
	src := filepath.Join(b.o.work, "profbuild")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	files, err := filepath.Glob(filepath.Join(from, "*.go"))
	if err != nil {
		return "", err
	}
	files = append(files, filepath.Join(from, "go.mod"), filepath.Join(from, "go.sum"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if err := copyFile(f, filepath.Join(src, filepath.Base(f)), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(src, "zz_bench_pprof.go"), []byte(pprofHook), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(src, "pgod")
	if _, err := runCmd(src, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", bin, "."); err != nil {
		return "", fmt.Errorf("profiling build: %w", err)
	}
	log.Printf("profiling build of pgod: %s", bin)
	return bin, nil
}

// saveProfile fetches a pprof profile from pgod into bench/profiles/.
func (b *bench) saveProfile(d *daemon, path, file string) {
	if err := os.MkdirAll("bench/profiles", 0o755); err != nil {
		log.Printf("profile: %v", err)
		return
	}
	out := filepath.Join("bench/profiles", file)
	if err := d.fetchProfile(path, out); err != nil {
		log.Printf("profile %s: %v", path, err)
		return
	}
	log.Printf("profile saved: %s (go tool pprof -top %s)", out, out)
}

func (b *bench) heapProfile(d *daemon) {
	if b.o.profile {
		b.saveProfile(d, "/debug/pprof/heap", "idle.heap.pprof")
		// The text form ends with runtime.MemStats: where the RSS goes.
		b.saveProfile(d, "/debug/pprof/heap?debug=1", "idle.heap.txt")
	}
}
