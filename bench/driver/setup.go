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
	config   string // pgo.toml
	names    []string
	rows     []row
	notes    []string // observations printed under the table
	pushed   map[string]int

	loadStart string // /proc/loadavg when the bench started: others' load skews wall times

	idleCPU         float64 // median CPU s per quiet cycle, for the projection with real compose
	idleDockerCalls float64 // docker calls per quiet cycle
	coldCPU         float64 // median CPU s of a cold start
	coldDockerCalls float64 // docker calls in the last cold start
}

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
		config:   filepath.Join(o.work, "pgo.toml"),
		pushed:   map[string]int{},

		loadStart: readTrim("/proc/loadavg"),
	}
	if o.pgod != "" {
		b.pgod = o.pgod
	}
	for i := 1; i <= o.services; i++ {
		b.names = append(b.names, fmt.Sprintf("svc%03d", i))
	}
	return b, nil
}

// webhookSecret is a service's secret; the bench signs its hooks with it.
func webhookSecret(name string) string { return "bench-hook-secret-" + name }

// setup makes the key, one template repository copied N times as bare
// upstreams, and the pgo.toml listing them.
func (b *bench) setup() error {
	for _, d := range []string{b.upstream, b.clones} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if _, err := runCmd("", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pgo-bench", "-f", b.key); err != nil {
		return err
	}
	template, err := b.templateRepo()
	if err != nil {
		return err
	}
	for _, name := range b.names {
		if err := copyTree(template, filepath.Join(b.upstream, name+".git")); err != nil {
			return err
		}
	}
	return os.WriteFile(b.config, []byte(b.pgoToml()), 0o600)
}

// composeFile is the service's compose.yaml; REV is what a bench commit changes.
func composeFile(rev int) string {
	return fmt.Sprintf(`services:
  web:
    image: pgo-test-busybox:latest
    command: ["httpd", "-f"]
    environment:
      REV: "%d"
`, rev)
}

// templateRepo makes a bare repository with one commit on main: compose.yaml
// and ssh/key.pub.
func (b *bench) templateRepo() (string, error) {
	seed := filepath.Join(b.o.work, "seed")
	pub, err := os.ReadFile(b.key + ".pub")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(seed, "ssh"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(seed, "compose.yaml"), []byte(composeFile(0)), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(seed, "ssh", "key.pub"), pub, 0o644); err != nil {
		return "", err
	}
	bare := filepath.Join(b.o.work, "template.git")
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

func (b *bench) pgoToml() string {
	var s strings.Builder
	fmt.Fprintf(&s, "# %d bench services, written by bench/driver\n", len(b.names))
	for _, name := range b.names {
		fmt.Fprintf(&s, "\n[[services]]\nname = %q\nuser = \"root\"\nrepository = %q\nbranch = \"main\"\nwebhook_secret = %q\n",
			name, b.repository(name), webhookSecret(name))
	}
	return s.String()
}

// commitChange prepares (but does not push) a commit to name's compose.yaml
// that changes the rendered project, so that pgod must deploy it.
func (b *bench) commitChange(name string) error {
	clone := filepath.Join(b.clones, name)
	if _, err := os.Stat(clone); err != nil {
		if _, err := git(b.clones, "clone", "-q", filepath.Join(b.upstream, name+".git"), clone); err != nil {
			return err
		}
	}
	b.pushed[name]++
	if err := os.WriteFile(filepath.Join(clone, "compose.yaml"), []byte(composeFile(b.pushed[name])), 0o644); err != nil {
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
	b.rows = append(b.rows, row{figure: figure, failed: err.Error()})
}

func (b *bench) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	log.Print(s)
	b.notes = append(b.notes, s)
}
