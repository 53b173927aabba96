package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeCtl is a controller for tests: services with keys, and compose and
// docker commands that are small shell scripts.
type fakeCtl struct {
	mu        sync.Mutex
	services  map[string]*fakeService
	operators []*authorizedKey
}

func newFakeCtl(services ...*fakeService) *fakeCtl {
	f := &fakeCtl{services: map[string]*fakeService{}}
	for _, s := range services {
		f.services[s.name] = s
	}
	return f
}

func (f *fakeCtl) lookup(name string) serviceControl {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.services[name]; ok {
		return s
	}
	return nil
}

// setOperators lists keys without options, as operators/ops.pub.
func (f *fakeCtl) setOperators(keys ...ssh.PublicKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.operators = nil
	for i, k := range keys {
		ak, err := parseKeyLine(ssh.MarshalAuthorizedKey(k))
		if err != nil {
			panic(err)
		}
		ak.source = fmt.Sprintf("operators/ops.pub:%d", i+1)
		f.operators = append(f.operators, ak)
	}
}

func (f *fakeCtl) operator(key ssh.PublicKey, remote net.Addr) *authorizedKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return findKey(f.operators, key, remote, time.Now())
}

func (f *fakeCtl) statuses() []serviceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []serviceStatus
	for _, s := range f.services {
		out = append(out, s.status())
	}
	return out
}

func (f *fakeCtl) knownKey(key ssh.PublicKey, remote net.Addr) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := findKey(f.operators, key, remote, time.Now()); k != nil {
		return k.source, true
	}
	for _, s := range f.services {
		if k := s.authorized(key, remote); k != nil {
			return s.name + " " + k.source, true
		}
	}
	return "", false
}

// fakeService records what the ops asked of it.
type fakeService struct {
	name string

	mu             sync.Mutex
	keys           []*authorizedKey
	st             serviceStatus
	composeScripts map[string]string // sub-command to shell script; $@ holds all args
	dockerScripts  map[string]string // first arg to shell script
	calls          [][]string        // every compose/docker call, "compose"/"docker" first
	serial         []string          // ops that ran inside serialize
	cliEnv         []string          // more environment for compose and docker, as the worker's holds the service's env
	upErr          error
	healthErr      error // what healthy answers
	healthChecks   int   // how often healthy was asked
	checkOK        bool

	serialMu sync.Mutex // what serialize holds
}

// defaultScript echoes its arguments, so tests see what compose or docker got.
const defaultScript = `echo "$0 $*"`

func newFakeService(name string, keys ...ssh.PublicKey) *fakeService {
	s := &fakeService{name: name, st: serviceStatus{Name: name, Branch: "main"},
		composeScripts: map[string]string{}, dockerScripts: map[string]string{
			"ps": `echo 0123456789ab`, // one running container
		}}
	s.setKeys(keys...)
	return s
}

// setKeys lists keys without options, as ssh/test.pub.
func (s *fakeService) setKeys(keys ...ssh.PublicKey) {
	var lines []string
	for _, k := range keys {
		lines = append(lines, string(ssh.MarshalAuthorizedKey(k)))
	}
	s.setKeyLines(lines...)
}

// setKeyLines lists keys as authorized_keys lines, options and all.
func (s *fakeService) setKeyLines(lines ...string) {
	var keys []*authorizedKey
	for i, l := range lines {
		k, err := parseKeyLine([]byte(l))
		if err != nil {
			panic(fmt.Sprintf("key line %q: %v", l, err))
		}
		k.source = fmt.Sprintf("ssh/test.pub:%d", i+1)
		keys = append(keys, k)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func (s *fakeService) authorized(key ssh.PublicKey, remote net.Addr) *authorizedKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return findKey(s.keys, key, remote, time.Now())
}

func (s *fakeService) up(ctx context.Context, stdout, stderr io.Writer) error {
	s.record("up")
	fmt.Fprintln(stdout, "up: deployed")
	return s.upErr
}

func (s *fakeService) healthy(ctx context.Context, stdout io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.healthChecks++
	return s.healthErr
}

func (s *fakeService) down(ctx context.Context, stdout, stderr io.Writer) error {
	s.record("down")
	fmt.Fprintln(stdout, "down: stopped, marker set")
	return nil
}

func (s *fakeService) gitPull(ctx context.Context, stdout, stderr io.Writer) error {
	s.record("git pull")
	fmt.Fprintln(stdout, "git pull: already up to date")
	return nil
}

func (s *fakeService) check(ctx context.Context, stdout io.Writer) (bool, error) {
	s.record("check")
	if s.checkOK {
		fmt.Fprintln(stdout, "compose.yaml: ok")
	} else {
		fmt.Fprintln(stdout, `compose.yaml:3: service "web": privileged is not allowed`)
	}
	return s.checkOK, nil
}

func (s *fakeService) history(n int, stdout io.Writer) error {
	s.record(fmt.Sprintf("history %d", n))
	fmt.Fprintln(stdout, "history: nothing yet")
	return nil
}

func (s *fakeService) diff(ctx context.Context, stdout io.Writer) error {
	s.record("diff")
	fmt.Fprintln(stdout, "no change to what runs")
	return nil
}

func (s *fakeService) rollback(ctx context.Context, stdout io.Writer, prefix string) error {
	s.record("rollback " + prefix + " by " + callerOf(ctx).KeyFile)
	return nil
}

func (s *fakeService) freeze(ctx context.Context, stdout io.Writer, reason string) error {
	s.record("freeze " + reason + " by " + callerOf(ctx).KeyFile)
	return nil
}

func (s *fakeService) unfreeze(ctx context.Context, stdout io.Writer) error {
	s.record("unfreeze")
	return nil
}

func (s *fakeService) status() serviceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *fakeService) compose(ctx context.Context, args ...string) (*exec.Cmd, error) {
	return s.script(ctx, "compose", s.composeScripts, args), nil
}

func (s *fakeService) docker(ctx context.Context, args ...string) (*exec.Cmd, error) {
	return s.script(ctx, "docker", s.dockerScripts, args), nil
}

func (s *fakeService) script(ctx context.Context, what string, scripts map[string]string, args []string) *exec.Cmd {
	s.mu.Lock()
	s.calls = append(s.calls, append([]string{what}, args...))
	script, ok := scripts[args[0]]
	env := append([]string{"PATH=" + os.Getenv("PATH")}, s.cliEnv...)
	s.mu.Unlock()
	if !ok {
		script = defaultScript
	}
	return (*account)(nil).command(ctx, env, "sh", append([]string{"-c", script, what}, args...)...)
}

func (s *fakeService) serialize(ctx context.Context, f func(context.Context) error) error {
	s.serialMu.Lock()
	defer s.serialMu.Unlock()
	s.mu.Lock()
	s.serial = append(s.serial, "serialized")
	s.mu.Unlock()
	return f(ctx)
}

func (s *fakeService) record(call string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, []string{call})
}

func (s *fakeService) recorded() (calls [][]string, serialized int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.calls...), len(s.serial)
}

// newTestKey makes an ed25519 key pair.
func newTestKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}
