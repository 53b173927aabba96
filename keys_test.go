package main

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func authorizedLine(t *testing.T, options string, key ssh.PublicKey) string {
	t.Helper()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + " someone@laptop"
	if options != "" {
		line = options + " " + line
	}
	return line
}

func tcpAddr(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// TestReadKeysOptions: the options pgod honours are kept, those that only
// take away what pgod never offers are accepted, any other refuses its key
// with a problem naming file and line, and the file's other keys still load.
func TestReadKeysOptions(t *testing.T) {
	keys := make([]ssh.PublicKey, 12)
	for i := range keys {
		keys[i] = newTestKey(t).PublicKey()
	}
	ca := newTestKey(t)
	cert := &ssh.Certificate{Key: keys[11], CertType: ssh.UserCert, ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(48 * time.Hour).Format("20060102")
	lines := []string{
		"# the team's keys",
		authorizedLine(t, "", keys[0]),
		authorizedLine(t, `from="192.0.2.0/24,!192.0.2.7"`, keys[1]),
		"",
		authorizedLine(t, "restrict", keys[2]),
		authorizedLine(t, "restrict,pty,no-port-forwarding", keys[3]),
		authorizedLine(t, `no-pty,No-Agent-Forwarding,no-X11-forwarding,no-user-rc,expiry-time="`+later+`"`, keys[4]),
		authorizedLine(t, `command="/bin/sh"`, keys[5]),
		authorizedLine(t, "cert-authority", keys[6]),
		authorizedLine(t, `environment="A=b",tunnel="0",principals="x",permitopen="h:1"`, keys[7]),
		authorizedLine(t, `expiry-time="20200101"`, keys[8]),
		authorizedLine(t, `from="10.0.0.0/99"`, keys[9]),
		authorizedLine(t, `port-forwarding`, keys[10]),
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		"ssh-ed25519 not-base64",
	}
	dir := t.TempDir()
	writeFile(t, dir, "team.pub", strings.Join(lines, "\n")+"\n")
	got, problems := readKeys(dir)

	want := map[int]string{0: "ssh/team.pub:2", 1: "ssh/team.pub:3", 2: "ssh/team.pub:5", 3: "ssh/team.pub:6", 4: "ssh/team.pub:7"}
	if len(got) != len(want) {
		t.Fatalf("loaded %d keys, want %d; problems:\n%s", len(got), len(want), strings.Join(problems, "\n"))
	}
	for i, k := range got {
		if k.blob != string(keys[i].Marshal()) || k.source != want[i] {
			t.Errorf("key %d: %s, want key %d at %s", i, k.source, i, want[i])
		}
	}
	if got[0].noPTY || !got[2].noPTY || got[3].noPTY || !got[4].noPTY {
		t.Errorf("no-pty: plain %v, restrict %v, restrict,pty %v, no-pty %v; want false true false true",
			got[0].noPTY, got[2].noPTY, got[3].noPTY, got[4].noPTY)
	}
	if got[4].expiry.IsZero() || got[1].from == nil {
		t.Errorf("expiry-time or from= dropped: %+v %+v", got[4], got[1])
	}
	wantProblems := []string{
		`ssh/team.pub:8: key skipped, option command is not supported`,
		`ssh/team.pub:9: key skipped, option cert-authority is not supported`,
		`ssh/team.pub:10: key skipped, option environment is not supported`,
		`ssh/team.pub:11: key skipped, expired`,
		`ssh/team.pub:12: key skipped, option from: "10.0.0.0/99" is not a CIDR block`,
		`ssh/team.pub:13: key skipped, option port-forwarding is not supported`,
		`ssh/team.pub:14: key skipped, a certificate`,
		`ssh/team.pub:15: key skipped, no valid public key`,
	}
	if len(problems) != len(wantProblems) {
		t.Errorf("problems:\n%s\nwant %d", strings.Join(problems, "\n"), len(wantProblems))
	}
	for i, w := range wantProblems {
		if i >= len(problems) || !strings.HasPrefix(problems[i], w) {
			t.Errorf("problem %d = %q, want %q...", i, at(problems, i), w)
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

func TestKeyPermits(t *testing.T) {
	key := newTestKey(t).PublicKey()
	other := newTestKey(t).PublicKey()
	line := func(opts string) *authorizedKey {
		k, err := parseKeyLine([]byte(authorizedLine(t, opts, key)))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		opts   string
		remote string
		ok     bool
	}{
		{"", "203.0.113.9:50000", true},
		{`from="192.0.2.0/24"`, "192.0.2.1:1", true},
		{`from="192.0.2.0/24"`, "192.0.3.1:1", false},
		{`from="192.0.2.0/24,!192.0.2.7"`, "192.0.2.7:1", false},
		{`from="!192.0.2.7,192.0.2.0/24"`, "192.0.2.8:1", true},
		{`from="192.0.2.*"`, "192.0.2.200:1", true},
		{`from="192.0.2.?"`, "192.0.2.20:1", false},
		{`from="192.0.2.?"`, "192.0.2.2:1", true},
		{`from="*"`, "[2001:db8::1]:1", true},
		{`from="2001:DB8::/32"`, "[2001:db8::1]:1", true},
		{`from="2001:db8::*"`, "[2001:db8::1]:1", true},
		{`from="192.0.2.1"`, "[::ffff:192.0.2.1]:1", true}, // IPv4 on a dual-stack socket
		{`from="192.0.2.0/24"`, "[2001:db8::1]:1", false},
		{`from="*.example.com"`, "192.0.2.1:1", false}, // no name is looked up
		{`from="!192.0.2.1"`, "192.0.2.2:1", false},    // a negation alone lets nobody in
		{`expiry-time="20260601"`, "192.0.2.1:1", false},
		{`expiry-time="20260601120001Z"`, "192.0.2.1:1", true},
		{`expiry-time="202606011200Z"`, "192.0.2.1:1", false},
	}
	for _, tc := range tests {
		k := line(tc.opts)
		if got := k.permits(tcpAddr(tc.remote), now); got != tc.ok {
			t.Errorf("%s from %s: %v, want %v", tc.opts, tc.remote, got, tc.ok)
		}
	}
	keys := []*authorizedKey{line(`from="10.0.0.0/8"`), line("no-pty")}
	if k := findKey(keys, key, tcpAddr("192.0.2.1:1"), now); k != keys[1] {
		t.Errorf("a line refusing the address hid the next line of the key")
	}
	if k := findKey(keys, other, tcpAddr("10.0.0.1:1"), now); k != nil {
		t.Errorf("another key matched")
	}
}

func TestParseExpiry(t *testing.T) {
	for s, want := range map[string]time.Time{
		"20261231":        time.Date(2026, 12, 31, 0, 0, 0, 0, time.Local),
		"202612312359":    time.Date(2026, 12, 31, 23, 59, 0, 0, time.Local),
		"20261231235958":  time.Date(2026, 12, 31, 23, 59, 58, 0, time.Local),
		"20261231Z":       time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
		"20261231235958z": time.Date(2026, 12, 31, 23, 59, 58, 0, time.UTC),
	} {
		if got, err := parseExpiry(s); err != nil || !got.Equal(want) {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "2026123", "2026-12-31", "20261331", "+0261231", "20261231120", "Z"} {
		if _, err := parseExpiry(s); err == nil {
			t.Errorf("parseExpiry(%q) accepted", s)
		}
	}
}

func TestMatchWildcard(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		ok         bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abcd", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"*.*.*", "1.2.3", true}, {"1.2.*.4", "1.2.3.5", false},
		{"", "", true}, {"", "a", false}, {"**a", "ba", true},
	} {
		if got := matchWildcard(tc.pattern, tc.s); got != tc.ok {
			t.Errorf("matchWildcard(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

// TestReadKeysRefusesSymlinkedDir: ssh/ as a symlink to a directory of
// keys elsewhere is not followed.
func TestReadKeysRefusesSymlinkedDir(t *testing.T) {
	elsewhere := t.TempDir()
	writeFile(t, elsewhere, "root.pub", authorizedLine(t, "", newTestKey(t).PublicKey())+"\n")
	checkout := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(checkout, "ssh")); err != nil {
		t.Fatal(err)
	}
	keys, problems := readKeys(filepath.Join(checkout, "ssh"))
	if len(keys) != 0 || len(problems) != 1 || !strings.Contains(problems[0], "symlink") {
		t.Errorf("symlinked ssh/: %d keys, problems %q", len(keys), problems)
	}
	if keys, problems := readKeys(filepath.Join(checkout, "none")); keys != nil || problems != nil {
		t.Errorf("missing ssh/: %d keys, problems %q", len(keys), problems)
	}
	writeFile(t, checkout, "file", "")
	if keys, problems := readKeys(filepath.Join(checkout, "file")); len(keys) != 0 || len(problems) != 1 {
		t.Errorf("ssh as a file: %d keys, problems %q", len(keys), problems)
	}
}

func TestReadKeysBounds(t *testing.T) {
	key := authorizedLine(t, "", newTestKey(t).PublicKey())
	dir := t.TempDir()
	writeFile(t, dir, "many.pub", strings.Repeat(key+"\n", maxKeys+10))
	keys, problems := readKeys(dir)
	if len(keys) != maxKeys || len(problems) != 10 || !strings.Contains(problems[0], fmt.Sprintf("ssh/many.pub:%d: skipped, a service has at most %d keys", maxKeys+1, maxKeys)) {
		t.Errorf("%d keys in one file: loaded %d, problems %d (%q)", maxKeys+10, len(keys), len(problems), at(problems, 0))
	}

	dir = t.TempDir()
	for i := range maxKeyFiles + 6 {
		writeFile(t, dir, fmt.Sprintf("k%03d.pub", i), key+"\n")
	}
	keys, problems = readKeys(dir)
	if len(keys) != maxKeyFiles || len(problems) != 1 || !strings.Contains(problems[0], fmt.Sprintf("only the first %d", maxKeyFiles)) ||
		keys[len(keys)-1].source != fmt.Sprintf("ssh/k%03d.pub:1", maxKeyFiles-1) {
		t.Errorf("%d files: loaded %d, problems %q", maxKeyFiles+6, len(keys), problems)
	}

	for i := range maxKeyDirEntries {
		writeFile(t, dir, fmt.Sprintf("junk%04d", i), "")
	}
	keys, problems = readKeys(dir)
	if len(keys) != 0 || len(problems) != 1 || !strings.Contains(problems[0], "more than 1024 entries") {
		t.Errorf("a huge ssh/: loaded %d, problems %q", len(keys), problems)
	}

	dir = t.TempDir()
	writeFile(t, dir, "big.pub", strings.Repeat("#"+strings.Repeat("x", 1023)+"\n", 65))
	writeFile(t, dir, "ok.pub", key+"\n")
	keys, problems = readKeys(dir)
	if len(keys) != 1 || len(problems) != 1 || !strings.HasPrefix(problems[0], "ssh/big.pub: skipped, not a regular file under 64 KiB") {
		t.Errorf("a big file: loaded %d, problems %q", len(keys), problems)
	}
}

// TestReadKeysReadOnly: the keys of ssh/ro/ load marked read-only, after
// those of ssh/, so a key listed in both is read-write wherever its ssh/
// line lets it in, and read-only where only its ro/ line does.
func TestReadKeysReadOnly(t *testing.T) {
	alice, oncall, both := newTestKey(t).PublicKey(), newTestKey(t).PublicKey(), newTestKey(t).PublicKey()
	dir := t.TempDir()
	writeFile(t, dir, "team.pub", authorizedLine(t, "", alice)+"\n"+authorizedLine(t, `from="10.0.0.0/8"`, both)+"\n")
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, ro, "a-oncall.pub", authorizedLine(t, "", oncall)+"\n"+authorizedLine(t, "", both)+"\n")
	keys, problems := readKeys(dir)
	if len(problems) != 0 {
		t.Fatalf("problems: %q", problems)
	}
	want := []struct {
		source   string
		readOnly bool
	}{{"ssh/team.pub:1", false}, {"ssh/team.pub:2", false}, {"ssh/ro/a-oncall.pub:1", true}, {"ssh/ro/a-oncall.pub:2", true}}
	if len(keys) != len(want) {
		t.Fatalf("loaded %d keys, want %d", len(keys), len(want))
	}
	for i, w := range want {
		if keys[i].source != w.source || keys[i].readOnly != w.readOnly {
			t.Errorf("key %d: %s read-only %v, want %s read-only %v", i, keys[i].source, keys[i].readOnly, w.source, w.readOnly)
		}
	}
	now := time.Now()
	for _, tc := range []struct {
		key      ssh.PublicKey
		remote   string
		source   string
		readOnly bool
	}{
		{alice, "192.0.2.1:1", "ssh/team.pub:1", false},
		{oncall, "192.0.2.1:1", "ssh/ro/a-oncall.pub:1", true},
		{both, "10.1.2.3:1", "ssh/team.pub:2", false},
		{both, "192.0.2.1:1", "ssh/ro/a-oncall.pub:2", true},
	} {
		k := findKey(keys, tc.key, tcpAddr(tc.remote), now)
		if k == nil || k.source != tc.source || k.readOnly != tc.readOnly {
			t.Errorf("from %s: %+v, want %s read-only %v", tc.remote, k, tc.source, tc.readOnly)
		}
	}
}

// TestReadKeysRefusesUnsafeReadOnlyDir: an ro/ that is a symlink, a file,
// or writable by more users than ssh/ loads no read-only key, and says so;
// the keys of ssh/ still load.
func TestReadKeysRefusesUnsafeReadOnlyDir(t *testing.T) {
	key := authorizedLine(t, "", newTestKey(t).PublicKey())
	elsewhere := t.TempDir()
	writeFile(t, elsewhere, "root.pub", key+"\n")
	for _, tc := range []struct {
		name    string
		make    func(ro string) error
		problem string
	}{
		{"symlink", func(ro string) error { return os.Symlink(elsewhere, ro) }, "ssh/ro/: not a directory (a symlink is not followed); no read-only key loaded"},
		{"file", func(ro string) error { return os.WriteFile(ro, []byte(key+"\n"), 0o644) }, "ssh/ro/: not a directory (a symlink is not followed); no read-only key loaded"},
		{"writable by all", func(ro string) error {
			if err := os.Mkdir(ro, 0o755); err != nil {
				return err
			}
			writeFile(t, ro, "x.pub", key+"\n")
			return os.Chmod(ro, 0o777)
		}, "ssh/ro/: owned by uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			writeFile(t, dir, "team.pub", key+"\n")
			if err := tc.make(filepath.Join(dir, "ro")); err != nil {
				t.Fatal(err)
			}
			keys, problems := readKeys(dir)
			if len(keys) != 1 || keys[0].readOnly || len(problems) != 1 || !strings.HasPrefix(problems[0], tc.problem) {
				t.Errorf("%d keys, problems %q; want the ssh/ key and %q", len(keys), problems, tc.problem)
			}
		})
	}
}

// TestReadKeysReadOnlyBounds: ssh/ and ssh/ro/ share the bounds on files,
// keys and entries.
func TestReadKeysReadOnlyBounds(t *testing.T) {
	key := authorizedLine(t, "", newTestKey(t).PublicKey())
	setup := func(t *testing.T) (dir, ro string) {
		dir = t.TempDir()
		os.Chmod(dir, 0o755)
		ro = filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir, ro
	}

	dir, ro := setup(t)
	for i := range maxKeyFiles - 2 {
		writeFile(t, dir, fmt.Sprintf("k%03d.pub", i), key+"\n")
	}
	for i := range 5 {
		writeFile(t, ro, fmt.Sprintf("r%d.pub", i), key+"\n")
	}
	keys, problems := readKeys(dir)
	if len(keys) != maxKeyFiles || len(problems) != 1 || !strings.Contains(problems[0], fmt.Sprintf("ssh/ and ssh/ro/: %d .pub files, only the first %d", maxKeyFiles+3, maxKeyFiles)) ||
		keys[len(keys)-1].source != "ssh/ro/r1.pub:1" || !keys[len(keys)-1].readOnly {
		t.Errorf("files: loaded %d, last %s, problems %q", len(keys), keys[len(keys)-1].source, problems)
	}

	dir, ro = setup(t)
	writeFile(t, dir, "team.pub", strings.Repeat(key+"\n", maxKeys-1))
	writeFile(t, ro, "oncall.pub", key+"\n"+key+"\n")
	keys, problems = readKeys(dir)
	if len(keys) != maxKeys || len(problems) != 1 || !strings.HasPrefix(problems[0], fmt.Sprintf("ssh/ro/oncall.pub:2: skipped, a service has at most %d keys", maxKeys)) {
		t.Errorf("keys: loaded %d, problems %q", len(keys), problems)
	}

	dir, ro = setup(t)
	writeFile(t, dir, "team.pub", key+"\n")
	for i := range maxKeyDirEntries - 1 {
		writeFile(t, ro, fmt.Sprintf("junk%04d", i), "")
	}
	keys, problems = readKeys(dir)
	if len(keys) != 1 || keys[0].readOnly || len(problems) != 1 || !strings.Contains(problems[0], fmt.Sprintf("ssh/ and ssh/ro/ hold more than %d entries together", maxKeyDirEntries)) {
		t.Errorf("entries: loaded %d, problems %q", len(keys), problems)
	}
}
