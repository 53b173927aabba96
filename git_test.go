package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gitHTTPServer serves the bare repositories under a directory over git's
// smart HTTP protocol (git http-backend under net/http/cgi) on loopback, to
// clients that send Basic auth as user:password only.
type gitHTTPServer struct {
	host           string // 127.0.0.1:port
	user, password string
	before         func()       // runs before each request is served; may be nil
	refs           atomic.Int64 // authorized ref advertisements served: one per ls-remote, clone or fetch
}

func newGitHTTPServer(t *testing.T, root, user, password string, before func()) *gitHTTPServer {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	s := &gitHTTPServer{user: user, password: password, before: before}
	backend := &cgi.Handler{
		Path:       gitPath,
		Args:       []string{"http-backend"},
		Env:        []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
		InheritEnv: []string{"PATH"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if s.before != nil {
			s.before()
		}
		if u, p, ok := req.BasicAuth(); !ok || u != s.user || p != s.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(req.URL.Path, "/info/refs") {
			s.refs.Add(1)
		}
		backend.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	s.host = strings.TrimPrefix(srv.URL, "http://")
	return s
}

// cmdlineWatch reads the command line of every process on the machine, over
// and over, and remembers those that hold one of its secrets.
type cmdlineWatch struct {
	secrets [][]byte
	stop    chan struct{}
	mu      sync.Mutex
	sweep   chan struct{} // closed when the sweep in progress ends
	sweeps  int
	seen    map[string]bool // the command lines that held one
}

func watchCmdlines(t *testing.T, secrets ...string) *cmdlineWatch {
	w := &cmdlineWatch{stop: make(chan struct{}), sweep: make(chan struct{}), seen: map[string]bool{}}
	for _, s := range secrets {
		w.secrets = append(w.secrets, []byte(s))
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond): // leaves the CPU to the commands watched
			}
			w.scan()
		}
	}()
	t.Cleanup(func() { close(w.stop); <-finished })
	return w
}

func (w *cmdlineWatch) scan() {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if c := p.Name()[0]; c < '0' || c > '9' {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, s := range w.secrets {
			if bytes.Contains(cmdline, s) {
				w.mu.Lock()
				w.seen["pid "+p.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))] = true
				w.mu.Unlock()
			}
		}
	}
	w.mu.Lock()
	close(w.sweep)
	w.sweep, w.sweeps = make(chan struct{}), w.sweeps+1
	w.mu.Unlock()
}

// settle returns once a whole sweep ran after it was called: every process
// alive for all that time has been read. A server that settles before each
// answer so has every client process waiting on it read.
func (w *cmdlineWatch) settle() {
	for range 2 {
		w.mu.Lock()
		sweep := w.sweep
		w.mu.Unlock()
		select {
		case <-sweep:
		case <-w.stop:
			return
		}
	}
}

// check fails the test if a secret was seen on a command line, or if the
// watch never completed a sweep (it would have proved nothing).
func (w *cmdlineWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sweeps == 0 {
		t.Fatal("the command-line watch never swept /proc")
	}
	if len(w.seen) > 0 {
		t.Fatalf("a secret was on a command line, readable by every local user:\n%s", strings.Join(slices.Sorted(maps.Keys(w.seen)), "\n"))
	}
}

// testRepo is a repo on url for the test's own user, as pgod makes one for a service's.
func testRepo(t *testing.T, url string) *repo {
	acct := &account{Name: "svc", UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: t.TempDir()}
	return &repo{dir: filepath.Join(t.TempDir(), "checkout"), url: url, branch: "main", acct: acct, secrets: urlSecrets(url)}
}

func randomToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "glpat-" + hex.EncodeToString(b)
}

func wantUpstream(t *testing.T, r *repo, want string) {
	t.Helper()
	got, err := r.upstream(context.Background())
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	if got != want {
		t.Fatalf("upstream = %s, want %s", got, want)
	}
}

func wantFetched(t *testing.T, r *repo, want string) {
	t.Helper()
	if err := r.fetch(context.Background()); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if got := gitT(t, r.dir, "rev-parse", "refs/remotes/origin/main"); got != want {
		t.Fatalf("fetched main = %s, want %s", got, want)
	}
}

// TestRepoCredentialsNeverOnCommandLine clones, polls and fetches from a
// server that demands the URL's credentials, while every process's command
// line on the machine is watched for them.
func TestRepoCredentialsNeverOnCommandLine(t *testing.T) {
	token := randomToken()
	for _, tc := range []struct {
		name, userinfo, user, password string
	}{
		{"user and token", "oauth2:" + token, "oauth2", token},
		{"lone token", token, token, ""},
		{"percent-encoded", "oauth2:" + token + "%2B%2F", "oauth2", token + "+/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGitRepo(t)
			first := g.push(t, goodCompose)
			watch := watchCmdlines(t, token)
			srv := newGitHTTPServer(t, filepath.Dir(g.bare), tc.user, tc.password, watch.settle)
			r := testRepo(t, "http://"+tc.userinfo+"@"+srv.host+"/up.git")

			if err := r.clone(context.Background()); err != nil {
				t.Fatalf("clone: %v", err)
			}
			wantUpstream(t, r, first)
			next := g.push(t, strings.Replace(goodCompose, "1000", "2000", 1))
			wantUpstream(t, r, next)
			wantFetched(t, r, next)
			watch.check(t)

			config, err := os.ReadFile(filepath.Join(r.dir, ".git", "config"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(config), token) || strings.Contains(string(config), srv.host) {
				t.Fatalf(".git/config names the upstream:\n%s", config)
			}
		})
	}
}

// TestRepoCredentialsErrorsAreScrubbed: a refused token shows in no error.
func TestRepoCredentialsErrorsAreScrubbed(t *testing.T) {
	g := newGitRepo(t)
	g.push(t, goodCompose)
	srv := newGitHTTPServer(t, filepath.Dir(g.bare), "oauth2", "the-right-one", nil)
	token := randomToken()
	r := testRepo(t, "http://oauth2:"+token+"@"+srv.host+"/up.git")
	errs := map[string]error{}
	errs["clone"] = r.clone(context.Background())
	_, errs["upstream"] = r.upstream(context.Background())
	for name, err := range errs {
		if err == nil {
			t.Fatalf("%s with a wrong token succeeded", name)
		}
		if strings.Contains(err.Error(), token) {
			t.Fatalf("%s: the error shows the token: %v", name, err)
		}
	}
}

// TestRepoCredentialsStayWithTheirHost: an upstream that redirects to
// another server does not hand that server the credentials.
func TestRepoCredentialsStayWithTheirHost(t *testing.T) {
	g := newGitRepo(t)
	g.push(t, goodCompose)
	token := randomToken()
	other := newGitHTTPServer(t, filepath.Dir(g.bare), "oauth2", token, nil)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "http://"+other.host+req.URL.RequestURI(), http.StatusFound)
	}))
	defer front.Close()
	r := testRepo(t, "http://oauth2:"+token+"@"+strings.TrimPrefix(front.URL, "http://")+"/up.git")
	if _, err := r.upstream(context.Background()); err == nil {
		t.Fatal("upstream answered through a redirect to a host the credentials are not for")
	}
	if n := other.refs.Load(); n > 0 {
		t.Fatalf("the server a redirect named got the credentials (%d requests)", n)
	}
}

// TestUpstreamTakesTheBranchByItsFullName: ls-remote's pattern matches the
// end of a ref name, so branches named a/refs/heads/main or refs/heads/main
// also match refs/heads/main. Neither may stand in for main, whether it
// points at an older commit of main or at one main never had.
func TestUpstreamTakesTheBranchByItsFullName(t *testing.T) {
	for _, onMain := range []bool{true, false} {
		t.Run(fmt.Sprintf("side branch on main %v", onMain), func(t *testing.T) {
			g := newGitRepo(t)
			side := g.push(t, goodCompose)
			main := g.push(t, strings.Replace(goodCompose, "1000", "2000", 1))
			if !onMain {
				gitT(t, g.work, "checkout", "-q", "--orphan", "side")
				gitT(t, g.work, "commit", "-q", "--allow-empty", "-m", "not on main")
				side = gitT(t, g.work, "rev-parse", "HEAD")
			}
			gitT(t, g.work, "push", "-q", g.bare, side+":refs/heads/a/refs/heads/main", side+":refs/heads/refs/heads/main")
			r := testRepo(t, g.bare)
			if err := r.clone(context.Background()); err != nil {
				t.Fatal(err)
			}
			wantUpstream(t, r, main)
			wantFetched(t, r, main)

			gitT(t, g.bare, "update-ref", "-d", "refs/heads/main")
			if _, err := r.upstream(context.Background()); err == nil || !strings.Contains(err.Error(), "not found upstream") {
				t.Fatalf("upstream without main: %v, want branch not found", err)
			}
		})
	}
}

// TestUpstreamSilentServerTimesOut: a server that accepts the connection
// and never answers ends a poll at the ls-remote deadline, not the sync's.
func TestUpstreamSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // open, and never a byte written
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	g := newGitRepo(t)
	g.push(t, goodCompose)
	r := testRepo(t, g.bare)
	if err := r.clone(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.url = "http://oauth2:" + randomToken() + "@" + ln.Addr().String() + "/up.git"
	r.lsRemoteTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // the sync's deadline
	defer cancel()
	_, err = r.upstream(ctx)
	if err == nil || !strings.Contains(err.Error(), "timed out after 1s") {
		t.Fatalf("upstream from a silent server: %v, want a timeout", err)
	}
}

// TestFetchFromStalledServerEnds: a server that sends its headers and then
// nothing is cut off once the transfer stalled for the stall timeout.
func TestFetchFromStalledServerEnds(t *testing.T) {
	g := newGitRepo(t)
	g.push(t, goodCompose)
	r := testRepo(t, g.bare)
	if err := r.clone(context.Background()); err != nil {
		t.Fatal(err)
	}
	stalled := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-req.Context().Done()
	}))
	stalled.Start()
	defer stalled.Close()
	defer stalled.CloseClientConnections()
	r.url = stalled.URL + "/up.git"
	r.stallTimeout = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the sync's deadline
	defer cancel()
	err := r.fetch(ctx)
	if err == nil || !strings.Contains(err.Error(), "too slow") {
		t.Fatalf("fetch from a stalled server: %v, want git's low-speed cut-off", err)
	}
}

// TestUpstreamRefusesAnEndlessAnswer: pgod reads at most maxGitOutput of an
// answer, however many refs a server sends that end in the branch's name.
func TestUpstreamRefusesAnEndlessAnswer(t *testing.T) {
	g := newGitRepo(t)
	commit := g.push(t, goodCompose)
	r := testRepo(t, g.bare)
	if err := r.clone(context.Background()); err != nil {
		t.Fatal(err)
	}
	var refs strings.Builder
	for i := range maxGitOutput/60 + 1 {
		fmt.Fprintf(&refs, "%s refs/heads/f%06d/refs/heads/main\n", commit, i)
	}
	if err := os.WriteFile(filepath.Join(g.bare, "packed-refs"), []byte(refs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := r.upstream(context.Background())
	if err == nil || !strings.Contains(err.Error(), "output exceeds") {
		t.Fatalf("upstream with %d matching refs: %v, want the output bound", maxGitOutput/60, err)
	}
}

// TestRepoIgnoresCommandsInTheCheckoutsConfig: a .git/config that someone
// wrote in the checkout runs none of its commands when pgod polls and fetches.
func TestRepoIgnoresCommandsInTheCheckoutsConfig(t *testing.T) {
	token := randomToken()
	for _, tc := range []struct {
		name   string
		config func(r *repo, ran string) string
		fails  bool // the fetch fails: its URL was rewritten to a command
		local  bool // the upstream is a file:// URL, not the HTTP server
	}{
		{"credential helper", func(r *repo, ran string) string {
			return "[credential]\n\thelper = !touch " + ran + "\n"
		}, false, false},
		{"ext transport", func(r *repo, ran string) string {
			s := "[protocol \"ext\"]\n\tallow = always\n"
			for _, u := range []string{r.url, r.plainURL()} {
				s += "[url \"ext::sh -c touch% " + ran + "\"]\n\tinsteadOf = " + u + "\n"
			}
			return s
		}, true, false},
		{"upload-pack of a remote named as the URL", func(r *repo, ran string) string {
			return "[remote \"" + r.url + "\"]\n\tuploadpack = touch " + ran + "; git-upload-pack\n"
		}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGitRepo(t)
			g.push(t, goodCompose)
			url := "file://" + g.bare
			if !tc.local {
				srv := newGitHTTPServer(t, filepath.Dir(g.bare), "oauth2", token, nil)
				url = "http://oauth2:" + token + "@" + srv.host + "/up.git"
			}
			r := testRepo(t, url)
			if err := r.clone(context.Background()); err != nil {
				t.Fatal(err)
			}
			ran := filepath.Join(t.TempDir(), "ran")
			f, err := os.OpenFile(filepath.Join(r.dir, ".git", "config"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(tc.config(r, ran))
			f.Close()

			next := g.push(t, strings.Replace(goodCompose, "1000", "2000", 1))
			wantUpstream(t, r, next)
			if err := r.fetch(context.Background()); (err != nil) != tc.fails {
				t.Errorf("fetch: %v", err)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Fatal("git ran a command the checkout's .git/config named")
			}
		})
	}
}

func TestSplitCredentials(t *testing.T) {
	for in, want := range map[string][4]string{ // plain URL, user, password, scope
		"https://oauth2:glpat-x@gitlab.example.org/g/r.git": {"https://gitlab.example.org/g/r.git", "oauth2", "glpat-x", "https://gitlab.example.org"},
		"HTTPS://ghp_x@github.com:8443/o/r":                 {"HTTPS://github.com:8443/o/r", "ghp_x", "", "https://github.com:8443"},
		"http://u:p%40ss@[::1]:3000/r.git":                  {"http://[::1]:3000/r.git", "u", "p@ss", "http://[::1]:3000"},
		"https://u:to/ken@host/r.git":                       {"https://host/r.git", "u", "to/ken", "https://host"},
		"https://gitlab.example.org/g/r.git":                {"https://gitlab.example.org/g/r.git"},
		"ssh://git@host/r.git":                              {"ssh://git@host/r.git"},
		"git@host:r.git":                                    {"git@host:r.git"},
		"/srv/git/r.git":                                    {"/srv/git/r.git"},
	} {
		plain, cred := splitCredentials(in)
		got := [4]string{plain}
		if cred != nil {
			got = [4]string{plain, cred.username, cred.password, cred.scope}
		}
		if got != want {
			t.Errorf("splitCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTransportOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://host/r.git":      "https",
		"HTTP://host/r.git":       "http",
		"ssh://git@host/r.git":    "ssh",
		"git+ssh://host/r.git":    "ssh",
		"git@host:r.git":          "ssh",
		"host:r.git":              "ssh",
		"git://host/r.git":        "git",
		"file:///srv/r.git":       "file",
		"/srv/r.git":              "file",
		"./a:b/r.git":             "file",
		"ext::sh -c foo":          "ext",
		"persistent-https://host": "persistent-https",
	} {
		if got := transportOf(in); got != want {
			t.Errorf("transportOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCloneForgetsTheRemote: the clone's config names no remote and no
// tracking, and its head is read from .git's files as rev-parse says.
func TestCloneForgetsTheRemote(t *testing.T) {
	g := newGitRepo(t)
	first := g.push(t, goodCompose)
	r := testRepo(t, "file://"+g.bare)
	ctx := context.Background()
	if err := r.clone(ctx); err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(r.dir, ".git", "config"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(config), "[remote") || strings.Contains(string(config), "[branch") || strings.Contains(string(config), g.bare) {
		t.Errorf(".git/config keeps the remote:\n%s", config)
	}
	if !strings.Contains(string(config), "[core]") {
		t.Errorf(".git/config lost its core section:\n%s", config)
	}
	out, err := r.git(ctx, "-C", r.dir, "remote")
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("git remote = %q, %v; want none", out, err)
	}
	wantHead := func(want string) {
		t.Helper()
		got, ok := r.headFromFiles()
		if !ok || got != want {
			t.Errorf("headFromFiles = %q, %v; want %s", got, ok, want)
		}
		if got, err := r.head(ctx); err != nil || got != want {
			t.Errorf("head = %q, %v; want %s", got, err, want)
		}
	}
	wantHead(first) // on the branch, its ref loose or packed
	if _, err := r.git(ctx, "-C", r.dir, "pack-refs", "--all"); err != nil {
		t.Fatal(err)
	}
	wantHead(first)
	next := g.push(t, strings.Replace(goodCompose, "1000", "2000", 1))
	if err := r.fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.checkout(ctx, next); err != nil {
		t.Fatal(err)
	}
	wantHead(next) // detached
}

func TestHeadFromFilesFallsBack(t *testing.T) {
	for name, head := range map[string]string{
		"symbolic ref outside refs/heads": "ref: refs/remotes/origin/main\n",
		"ref climbing out":                "ref: refs/heads/../../../etc/passwd\n",
		"garbage":                         "nonsense\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, ".git", "refs", "remotes", "origin"), 0o755)
			os.WriteFile(filepath.Join(dir, ".git", "refs", "remotes", "origin", "main"), []byte(strings.Repeat("a", 40)+"\n"), 0o644)
			os.WriteFile(filepath.Join(dir, ".git", "HEAD"), []byte(head), 0o644)
			if got, ok := (&repo{dir: dir}).headFromFiles(); ok {
				t.Errorf("headFromFiles = %q; want it to leave this to rev-parse", got)
			}
		})
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".git"), 0o755)
	os.Symlink("/etc/hostname", filepath.Join(dir, ".git", "HEAD"))
	if _, ok := (&repo{dir: dir}).headFromFiles(); ok {
		t.Error("headFromFiles followed a symlinked HEAD")
	}
}

func TestWithoutSections(t *testing.T) {
	in := "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = /srv/x.git\n\tfetch = +refs/heads/main:refs/remotes/origin/main\n[branch \"main\"]\n\tremote = origin\n[branch \"other\"]\n\tremote = x\n"
	want := "[core]\n\tbare = false\n[branch \"other\"]\n\tremote = x\n"
	if got := withoutSections(in, `[remote "origin"]`, `[branch "main"]`); got != want {
		t.Errorf("withoutSections =\n%s\nwant\n%s", got, want)
	}
}
