package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// bench holds the set-up world and collects the figures.
type bench struct {
	o        options
	pgod     string // symlink next to the pgo binary
	pgoctl   string
	fakeDir  string // the substitute docker's directory: docker, docker.log, state/
	upstream string // bare repositories
	clones   string // working clones the bench pushes from
	key      string // ed25519 private key; key.pub is in every repository's ssh/
	coldNs   []int  // the fleet sizes cold starts are measured at; o.services is last
	fleets   map[int]*fleet
	main     *fleet   // the fleet of -n, which idle, push and ssh run against
	names    []string // main's service names
	rows     []row
	notes    []string // observations printed under the table
	pushed   map[string]int

	parallel   int    // pgod's --max-parallel, which the git floors use too
	socketFlag bool   // pgod has --docker-socket
	fakeSocket string // the substitute's Engine API socket, "" when not served
	fakePid    int    // its server's process

	exit exitHooks

	loadStart string // /proc/loadavg when the bench started: others' load skews wall times
}

// fleet is one set of services with its own pgo.toml.
type fleet struct {
	names  []string
	config string
	image  string // the image every service's compose file names
}

func (f *fleet) n() int { return len(f.names) }

func newBench(o options) (*bench, error) {
	dir := filepath.Dir(o.pgo)
	b := &bench{
		o:        o,
		pgod:     filepath.Join(dir, "pgod"),
		pgoctl:   filepath.Join(dir, "pgoctl"),
		fakeDir:  filepath.Dir(o.docker),
		upstream: filepath.Join(o.work, "upstream"),
		clones:   filepath.Join(o.work, "clones"),
		key:      filepath.Join(o.work, "id_ed25519"),
		fleets:   map[int]*fleet{},
		pushed:   map[string]int{},

		loadStart: readTrim("/proc/loadavg"),
	}
	if o.pgod != "" {
		b.pgod = o.pgod
	}
	for _, n := range o.coldNs {
		if n != o.services {
			b.coldNs = append(b.coldNs, n)
		}
	}
	// The fleet of -n comes last: its daemon stays up for the later phases.
	b.coldNs = append(b.coldNs, o.services)
	for _, n := range b.coldNs {
		b.fleets[n] = &fleet{names: serviceNames("svc", n), config: filepath.Join(o.work, fmt.Sprintf("pgo-%d.toml", n)), image: benchImage}
	}
	b.main = b.fleets[o.services]
	b.names = b.main.names
	return b, nil
}

func serviceNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%03d", prefix, i+1)
	}
	return names
}

// benchImage is the image of every bench service: the substitute never runs
// it, the real-engine phase builds it (busybox-static on scratch). Not
// "latest": compose pull --policy missing pulls a "latest" image even when
// it is present.
const benchImage = "pgo-bench-busybox:1"

// webhookSecret is a service's secret; the bench signs its hooks with it.
func webhookSecret(name string) string { return "bench-hook-secret-" + name }

// setup makes the key, one template repository copied as the bare upstream
// of each service of the largest fleet (smaller fleets use the first of
// them), and a pgo.toml per fleet.
func (b *bench) setup() error {
	for _, d := range []string{b.upstream, b.clones} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if _, err := runCmd("", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pgo-bench", "-f", b.key); err != nil {
		return err
	}
	largest := b.main
	for _, f := range b.fleets {
		if f.n() > largest.n() {
			largest = f
		}
	}
	if err := b.makeUpstreams(largest); err != nil {
		return err
	}
	for _, f := range b.fleets {
		if err := os.WriteFile(f.config, []byte(b.pgoToml(f)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// makeUpstreams makes a bare upstream repository for each service of f.
func (b *bench) makeUpstreams(f *fleet) error {
	template, err := b.templateRepo(f.image)
	if err != nil {
		return err
	}
	for _, name := range f.names {
		if err := copyTree(template, filepath.Join(b.upstream, name+".git")); err != nil {
			return err
		}
	}
	return nil
}

// composeFile is the service's compose.yaml; REV is what a bench commit
// changes. The container has no network (a project network each would
// exhaust the engine's address pools at 50 projects) and stops at once.
func composeFile(image string, rev int) string {
	return fmt.Sprintf(`services:
  web:
    image: %s
    command: ["httpd", "-f", "-p", "8080"]
    network_mode: none
    stop_signal: SIGKILL
    environment:
      REV: "%d"
`, image, rev)
}

// templateRepo makes a bare repository with one commit on main: compose.yaml
// and ssh/key.pub.
func (b *bench) templateRepo(image string) (string, error) {
	seed := filepath.Join(b.o.work, "seed-"+strings.NewReplacer(":", "-", "/", "-").Replace(image))
	bare := seed + ".git"
	if _, err := os.Stat(bare); err == nil {
		return bare, nil // made for an earlier fleet
	}
	pub, err := os.ReadFile(b.key + ".pub")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(seed, "ssh"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(seed, "compose.yaml"), []byte(composeFile(image, 0)), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(seed, "ssh", "key.pub"), pub, 0o644); err != nil {
		return "", err
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"commit", "-q", "-m", "bench service"},
		{"clone", "-q", "--bare", seed, bare},
	} {
		if _, err := git(seed, args...); err != nil {
			return "", err
		}
	}
	return bare, nil
}

func (b *bench) repository(name string) string {
	p := filepath.Join(b.upstream, name+".git")
	if b.o.repoURL == "file" {
		return "file://" + p
	}
	return p
}

func (b *bench) pgoToml(f *fleet) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# %d bench services, written by bench/driver\n", f.n())
	for _, name := range f.names {
		fmt.Fprintf(&s, "\n[[services]]\nname = %q\nuser = \"root\"\nrepository = %q\nbranch = \"main\"\nwebhook_secret = %q\n",
			name, b.repository(name), webhookSecret(name))
	}
	return s.String()
}

// commitChange prepares (but does not push) a commit to name's compose.yaml
// that changes the rendered project, so that pgod must deploy it.
func (b *bench) commitChange(name, image string) error {
	clone := filepath.Join(b.clones, name)
	if _, err := os.Stat(clone); err != nil {
		if _, err := git(b.clones, "clone", "-q", filepath.Join(b.upstream, name+".git"), clone); err != nil {
			return err
		}
	}
	b.pushed[name]++
	if err := os.WriteFile(filepath.Join(clone, "compose.yaml"), []byte(composeFile(image, b.pushed[name])), 0o644); err != nil {
		return err
	}
	_, err := git(clone, "commit", "-q", "-am", fmt.Sprintf("bench change %d", b.pushed[name]))
	return err
}

func (b *bench) push(name string) error {
	_, err := git(filepath.Join(b.clones, name), "push", "-q", "origin", "main")
	return err
}

// gitEnv keeps the user's and the system's git configuration out of the bench.
var gitEnv = []string{
	"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
	"GIT_AUTHOR_NAME=pgo bench", "GIT_AUTHOR_EMAIL=bench@localhost",
	"GIT_COMMITTER_NAME=pgo bench", "GIT_COMMITTER_EMAIL=bench@localhost",
}

func git(dir string, args ...string) ([]byte, error) {
	return runCmd(dir, gitEnv, "git", args...)
}

// runCmd runs a command to completion and returns its stdout; the error
// carries stderr.
func runCmd(dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// copyTree copies a small directory tree (a bare repository), keeping modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		}
		return copyFile(path, target, info.Mode().Perm())
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// fail records a phase that could not produce its figures.
func (b *bench) fail(figure string, err error) {
	log.Printf("%s: %v", figure, err)
	b.add(row{figure: figure, failed: err.Error()})
}

func (b *bench) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	log.Print(s)
	b.notes = append(b.notes, s)
}
