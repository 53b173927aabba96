//go:build e2e

package main

// End-to-end tests of the Debian package: build it with "make deb", install
// it on this machine with dpkg (the tests run as root on a throw-away
// machine; that is intended), check what an operator gets, then remove and
// purge it. They need no Docker Engine.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// debWantsLink is what "systemctl enable pgod" creates.
const debWantsLink = "/etc/systemd/system/multi-user.target.wants/pgod.service"

// TestE2EDebInstallRemovePurge walks the package's life on this machine:
// install, what is installed, remove (config and state stay), purge (gone).
func TestE2EDebInstallRemovePurge(t *testing.T) {
	debRequire(t, "dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze", "mandoc")
	debRequireClean(t)
	deb := debBuild(t)

	// Whatever happens below, leave the machine without the package.
	t.Cleanup(func() {
		if debStatus(t) != "" {
			if out, err := exec.Command("dpkg", "-P", "pgo").CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg -P pgo: %v\n%s", err, out)
			}
		}
	})
	// Install everything the package holds, even where the machine's dpkg
	// configuration excludes documentation (slim images do): the last
	// matching --path-include/--path-exclude wins.
	out := debRun(t, "dpkg", "--path-include=*", "-i", deb)
	if !strings.Contains(out, "systemctl enable --now pgod") {
		t.Errorf("dpkg -i output does not tell the operator how to start pgod:\n%s", out)
	}
	if got := debStatus(t); got != "install ok installed" {
		t.Fatalf("after dpkg -i: status %q", got)
	}

	t.Run("files", func(t *testing.T) {
		debWantFile(t, "/usr/bin/pgo", 0o755)
		debWantLink(t, "/usr/bin/pgod", "pgo")
		debWantLink(t, "/usr/bin/pgoctl", "pgo")
		debWantFile(t, "/lib/systemd/system/pgod.service", 0o644)
		debWantFile(t, "/etc/pgo.toml", 0o600) // it holds tokens
		debWantFile(t, "/usr/share/man/man8/pgo.8.gz", 0o644)
		debWantLink(t, "/usr/share/man/man8/pgod.8.gz", "pgo.8.gz")
		debWantLink(t, "/usr/share/man/man1/pgoctl.1.gz", "../man8/pgo.8.gz")
		debWantFile(t, "/usr/share/doc/pgo/copyright", 0o644)
		debWantFile(t, "/usr/share/doc/pgo/changelog.gz", 0o644)
		debWantFile(t, "/usr/share/doc/pgo/README.md.gz", 0o644)
		debWantFile(t, "/usr/share/doc/pgo/examples/gitlab-ci.yml", 0o644)
		debWantFile(t, "/usr/share/doc/pgo/examples/github-workflow.yml", 0o644)
		debWantDir(t, "/var/lib/pgo", 0o755)
	})

	t.Run("conffile", func(t *testing.T) {
		conffiles := debRun(t, "dpkg-query", "-W", "-f=${Conffiles}", "pgo")
		if !regexp.MustCompile(`(?m)^ /etc/pgo\.toml [0-9a-f]{32}$`).MatchString(conffiles) {
			t.Errorf("/etc/pgo.toml is not a conffile; dpkg-query says %q", conffiles)
		}
		// The example must configure nothing: pgod starts with no services.
		toml, err := os.ReadFile("/etc/pgo.toml")
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(toml), "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				t.Errorf("/etc/pgo.toml line %d is not a comment: %q", i+1, line)
			}
		}
	})

	t.Run("not enabled", func(t *testing.T) {
		// pgod must not start before the operator configured a service.
		for _, p := range []string{debWantsLink, "/etc/systemd/system/pgod.service"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s exists after install: the unit is enabled or masked", p)
			}
		}
	})

	t.Run("commands", func(t *testing.T) {
		// Through the symlinks: the binary picks its mode from its name.
		want := "pgo " + debGitVersion(t)
		out, err := exec.Command("/usr/bin/pgod", "--version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("pgod --version = %q (%v), want %q and exit 0", got, err, want)
		}
		// Usage may go to either stream; it must name -i, the key flag.
		out, err = exec.Command("/usr/bin/pgoctl", "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "-i") {
			t.Errorf("pgoctl --help: %v, want exit 0 and usage naming -i:\n%s", err, out)
		}
	})

	t.Run("unit", func(t *testing.T) {
		// Run from / so that verify cannot pick up unit files from the test's directory.
		cmd := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/pgod.service")
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("man", func(t *testing.T) {
		page, err := exec.Command("gzip", "-dc", "/usr/share/man/man8/pgo.8.gz").Output()
		if err != nil {
			t.Fatal(err)
		}
		if msgs := debMandocLint(t, page); len(msgs) > 0 {
			t.Errorf("mandoc -T lint:\n%s", strings.Join(msgs, "\n"))
		}
		if _, err := exec.LookPath("man"); err != nil {
			return
		}
		// Each name finds the one page, in its own section (man -w shows
		// where the link leads).
		for name, section := range map[string]string{"pgo": "8", "pgod": "8", "pgoctl": "1"} {
			out, err := exec.Command("man", "-w", section, name).CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != "/usr/share/man/man8/pgo.8.gz" {
				t.Errorf("man -w %s %s = %q (%v), want the pgo page", section, name, got, err)
			}
		}
	})

	// The operator enables pgod (without starting it: this machine's pgod
	// would have nothing to do); purge must not leave the link dangling.
	if _, err := exec.LookPath("systemctl"); err == nil {
		debRun(t, "systemctl", "enable", "pgod.service")
		if _, err := os.Stat(debWantsLink); err != nil {
			t.Errorf("systemctl enable pgod: %v", err)
		}
	}

	// State an operator leaves behind must survive a remove.
	const marker = "# edited by TestE2EDebInstallRemovePurge\n"
	debAppend(t, "/etc/pgo.toml", marker)
	if err := os.MkdirAll("/var/lib/pgo/.pgo", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/var/lib/pgo/.pgo/ssh_host_ed25519_key", []byte("test"), 0o600); err != nil {
		t.Fatal(err)
	}

	debRun(t, "dpkg", "-r", "pgo")
	t.Run("removed", func(t *testing.T) {
		if got := debStatus(t); got != "deinstall ok config-files" {
			t.Errorf("after dpkg -r: status %q", got)
		}
		for _, p := range []string{"/usr/bin/pgo", "/usr/bin/pgod", "/usr/bin/pgoctl",
			"/lib/systemd/system/pgod.service", "/usr/share/man/man8/pgo.8.gz"} {
			debWantGone(t, p)
		}
		toml, err := os.ReadFile("/etc/pgo.toml")
		if err != nil || !strings.HasSuffix(string(toml), marker) {
			t.Errorf("/etc/pgo.toml lost the operator's edit on remove (err %v)", err)
		}
		debWantFile(t, "/etc/pgo.toml", 0o600)
		debWantFile(t, "/var/lib/pgo/.pgo/ssh_host_ed25519_key", 0o600)
	})

	debRun(t, "dpkg", "-P", "pgo")
	t.Run("purged", func(t *testing.T) {
		if got := debStatus(t); got != "" {
			t.Errorf("after dpkg -P: status %q, want not installed", got)
		}
		for _, p := range []string{"/etc/pgo.toml", "/var/lib/pgo", "/usr/share/doc/pgo",
			"/etc/systemd/system/pgod.service", debWantsLink} {
			debWantGone(t, p)
		}
	})
}

// TestE2EDebLintian builds the package and runs lintian on it: every tag it
// reports must be explained in README.md, so a new one fails here.
func TestE2EDebLintian(t *testing.T) {
	debRequire(t, "dpkg-deb", "lintian")
	deb := debBuild(t)
	// Lintian exits non-zero when it finds errors; the tags are what counts.
	out, _ := exec.Command("lintian", "--pedantic", "-E", "-I", "--tag-display-limit", "0", deb).Output()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	tag := regexp.MustCompile(`^[EWIPXCO]: pgo(?: [a-z]+)?: (\S+)`)
	for _, line := range strings.Split(string(out), "\n") {
		m := tag.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		t.Logf("lintian: %s", line)
		if !bytes.Contains(readme, []byte("`"+m[1]+"`")) {
			t.Errorf("lintian tag %s is not explained in README.md: %s", m[1], line)
		}
	}
}

// debRequire skips the test when a tool it needs is missing.
func debRequire(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("E2E SKIPPED: %s is not installed", tool)
		}
	}
}

// debRequireClean skips unless this machine is one the test may install
// on and purge: root, no pgo package, and no /var/lib/pgo that a purge would
// delete.
func debRequireClean(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("E2E SKIPPED: installing the package needs root")
	}
	if s := debStatus(t); s != "" {
		t.Skipf("E2E SKIPPED: package pgo is on this machine already (%s); purge it first: dpkg -P pgo", s)
	}
	if _, err := os.Lstat("/var/lib/pgo"); err == nil {
		t.Skip("E2E SKIPPED: /var/lib/pgo exists without the pgo package; a purge would delete it")
	}
}

// debBuild runs "make deb" into a temporary directory and returns the package's path.
func debBuild(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("make", "deb")
	cmd.Env = append(os.Environ(), "DEB_OUT="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "pgo_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %d packages in %s, want 1\n%s", len(debs), dir, out)
	}
	// The name carries a Debian version and architecture, and matches the control file.
	name := regexp.MustCompile(`^pgo_([0-9][A-Za-z0-9.+~]*)_([a-z0-9]+)\.deb$`).FindStringSubmatch(filepath.Base(debs[0]))
	if name == nil {
		t.Fatalf("package name %s is not pgo_<version>_<arch>.deb", filepath.Base(debs[0]))
	}
	if v := debRun(t, "dpkg-deb", "-f", debs[0], "Version"); strings.TrimSpace(v) != name[1] {
		t.Errorf("control Version %q, file name says %q", strings.TrimSpace(v), name[1])
	}
	return debs[0]
}

// debGitVersion is the version "make build" stamps into the binary.
func debGitVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// debStatus is dpkg's status of the pgo package, "" when dpkg does not know it.
func debStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "pgo").Output()
	if err != nil {
		return "" // no such package
	}
	if s := strings.TrimSpace(string(out)); s != "unknown ok not-installed" {
		return s
	}
	return ""
}

// debRun runs a command that must succeed and returns its standard output and error.
func debRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// debMandocLint returns mandoc's lint messages for page, without the ones
// about pages it cross-references that this machine does not have: those
// depend on what is installed, not on the page.
func debMandocLint(t *testing.T, page []byte) []string {
	t.Helper()
	cmd := exec.Command("mandoc", "-T", "lint")
	cmd.Stdin = bytes.NewReader(page)
	out, _ := cmd.CombinedOutput() // non-zero exactly when there are messages
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "mandoc.db") || strings.Contains(line, "referenced manual not found") {
			continue
		}
		msgs = append(msgs, line)
	}
	return msgs
}

func debAppend(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func debWantFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		t.Errorf("%s: %v", path, err)
	case !fi.Mode().IsRegular():
		t.Errorf("%s is %v, want a regular file", path, fi.Mode().Type())
	case fi.Mode().Perm() != mode:
		t.Errorf("%s has mode %#o, want %#o", path, fi.Mode().Perm(), mode)
	}
	debWantRootOwned(t, path, fi)
}

func debWantDir(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		t.Errorf("%s: %v", path, err)
	case !fi.IsDir():
		t.Errorf("%s is %v, want a directory", path, fi.Mode().Type())
	case fi.Mode().Perm() != mode:
		t.Errorf("%s has mode %#o, want %#o", path, fi.Mode().Perm(), mode)
	}
	debWantRootOwned(t, path, fi)
}

func debWantRootOwned(t *testing.T, path string, fi os.FileInfo) {
	t.Helper()
	if fi == nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || st.Gid != 0) {
		t.Errorf("%s is owned by %d:%d, want root:root", path, st.Uid, st.Gid)
	}
}

func debWantLink(t *testing.T, path, target string) {
	t.Helper()
	got, err := os.Readlink(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if got != target {
		t.Errorf("%s -> %s, want -> %s", path, got, target)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("%s dangles: %v", path, err)
	}
}

func debWantGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("%s still exists", path)
	}
}

// TestE2EDebExampleConfig checks the example /etc/pgo.toml with the real
// parser: as shipped (all comments: no services), and with its example
// service uncommented, which must use every key correctly and never print the
// credentials it holds.
func TestE2EDebExampleConfig(t *testing.T) {
	debRun(t, "make", "build")
	example, err := os.ReadFile("debian/pgo.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	check := func(name string, config []byte) (string, bool) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, config, 0o600); err != nil {
			t.Fatal(err)
		}
		// The examples' users live on hosts, not here.
		out, err := exec.Command("./pgo", "check", "-c", path, "--no-users").CombinedOutput()
		if err != nil {
			t.Errorf("pgo check -c %s (%s): %v\n%s", path, name, err, out)
		}
		return string(out), err == nil
	}
	check("shipped.toml", example)

	out, ok := check("uncommented.toml", debUncomment(example))
	if ok && !strings.Contains(out, "shop") {
		t.Errorf("pgo check does not list the example service:\n%s", out)
	}
	if strings.Contains(out, "TOKEN") || ok && !strings.Contains(out, "***") {
		t.Errorf("pgo check shows the repository's credentials instead of ***:\n%s", out)
	}

	// The README's configuration examples, together as one file.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, m := range regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(readme, -1) {
		// pgoctl's client config is a file of its own.
		if bytes.HasPrefix(m[1], []byte("# ~/.config/pgo/pgoctl.toml\n")) {
			if _, err := parseCtlConfig("README.md's pgoctl.toml", m[1]); err != nil {
				t.Error(err)
			}
			continue
		}
		all = append(all, m[1]...)
	}
	if len(all) == 0 {
		t.Fatal("README.md has no toml examples")
	}
	check("readme.toml", all)
}

// debUncomment turns the commented example service of pgo.toml into a live
// one: from "# [[services]]" on, "# key = value" becomes "key = value" and
// "# # prose" stays a comment.
func debUncomment(example []byte) []byte {
	var b strings.Builder
	live := false
	for _, line := range strings.SplitAfter(string(example), "\n") {
		if strings.HasPrefix(line, "# [[services]]") {
			live = true
		}
		if live {
			line = strings.TrimPrefix(line, "# ")
			if line == "#\n" {
				line = "\n"
			}
		}
		b.WriteString(line)
	}
	return []byte(b.String())
}

// TestE2EDebVersion checks how build-deb turns git describe output into a
// Debian version: valid, and ordered as the releases are.
func TestE2EDebVersion(t *testing.T) {
	debRequire(t, "bash", "dpkg")
	// An untagged build is the 42nd commit, unless its name says otherwise.
	of := func(describe string) string {
		t.Helper()
		commits := "42"
		if before, after, ok := strings.Cut(describe, "@"); ok {
			describe, commits = before, after
		}
		return strings.TrimSpace(debRun(t, "./debian/build-deb", "--debian-version", describe, commits))
	}
	for describe, want := range map[string]string{
		"v1.2.3":                    "1.2.3",
		"1.2.3":                     "1.2.3",
		"v1.2.3-4-gabc1234":         "1.2.3+4+gabc1234",
		"v1.2.3-4-gabc1234-dirty":   "1.2.3+4+gabc1234+dirty",
		"v1.0-rc1":                  "1.0~rc1",
		"v1.0-rc1-2-gabc1234":       "1.0~rc1+2+gabc1234",
		"abc1234":                   "0~git42.abc1234",
		"abc1234-dirty":             "0~git42.abc1234+dirty",
		"devel":                     "0~devel",
		"v2.0.0-beta.2-7-g0123abcd": "2.0.0~beta.2+7+g0123abcd",
	} {
		if got := of(describe); got != want {
			t.Errorf("debian version of %q = %q, want %q", describe, got, want)
		}
	}
	// Each is older than the next, as the builds happened.
	// Untagged builds sort by their commit count, never by their hash.
	history := []string{"fff9999@9", "abc1234@10", "abc1234-dirty@10", "a001234@11", "v0.9.0", "v1.0-rc1", "v1.0-rc1-2-gabc1234", "v1.0", "v1.0-1-gdef5678", "v1.0.1"}
	for i := 1; i < len(history); i++ {
		older, newer := of(history[i-1]), of(history[i])
		if err := exec.Command("dpkg", "--compare-versions", older, "lt", newer).Run(); err != nil {
			t.Errorf("%s (%s) does not sort before %s (%s)", older, history[i-1], newer, history[i])
		}
	}
	if out, err := exec.Command("./debian/build-deb", "--debian-version", "v1 2").CombinedOutput(); err == nil {
		t.Errorf("build-deb accepted %q as a version: %s", "v1 2", out)
	}
}
