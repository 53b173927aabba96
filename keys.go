package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// The keys that may drive a service are the ssh/*.pub files of its deployed
// checkout, in OpenSSH's authorized_keys format: one key a line, with
// options before it; the keys of ssh/ro/*.pub may drive it read-only. The
// checkout is the team's to change, also while root reads it, so nothing in
// it is followed or trusted beyond its bytes.

// Bounds on what one service's ssh/ may make pgod read and hold.
const (
	maxKeyDirEntries = 1024     // entries of ssh/, .pub or not
	maxKeyFiles      = 64       // .pub files read, in name order
	maxKeyFileSize   = 64 << 10 // bytes per .pub file
	maxKeys          = 256      // keys per service
)

// authorizedKey is one line of a service's ssh/*.pub and what its options allow.
type authorizedKey struct {
	key    ssh.PublicKey
	blob   string    // key.Marshal(), to compare with
	source string    // "ssh/alice.pub:2", for logs
	from   []string  // from= patterns; nil: any address
	expiry time.Time // expiry-time=; zero: never
	noPTY  bool      // no-pty, or restrict without pty

	readOnly bool // listed under ssh/ro/: may drive the service read-only
}

// permits reports whether k lets its key in from remote at now.
func (k *authorizedKey) permits(remote net.Addr, now time.Time) bool {
	if k.expired(now) {
		return false
	}
	if k.from == nil {
		return true
	}
	ip, ok := remoteIP(remote)
	return ok && matchFrom(k.from, ip)
}

// expired reports whether k's expiry-time has passed at now.
func (k *authorizedKey) expired(now time.Time) bool {
	return !k.expiry.IsZero() && !now.Before(k.expiry)
}

// findKey returns the first of keys that is key and lets it in from remote
// at now, or nil. As in sshd, a line whose options refuse the connection
// does not hide a later line with the same key.
func findKey(keys []*authorizedKey, key ssh.PublicKey, remote net.Addr, now time.Time) *authorizedKey {
	blob := string(key.Marshal())
	for _, k := range keys {
		if k.blob == blob && k.permits(remote, now) {
			return k
		}
	}
	return nil
}

// readKeys reads the keys in dir (a checkout's ssh/) and, marked
// read-only, those in its subdirectory ro/, and says what it skipped and
// why, one problem a line, each naming the file and line. The keys of ssh/
// come first, so that a key listed in both places is read-write wherever
// its ssh/ line lets it in (findKey takes the first line that does). The
// bounds hold for the two directories together. A missing dir or ro/ holds
// no keys and is no problem.
func readKeys(dir string) (keys []*authorizedKey, problems []string) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil, nil
	case errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.ENOTDIR):
		return nil, []string{"ssh/: not a directory (a symlink is not followed); no key loaded"}
	case err != nil:
		return nil, []string{fmt.Sprintf("ssh/: %v; no key loaded", err)}
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	files, seen, err := keyFiles(d, maxKeyDirEntries)
	if err != nil {
		return nil, []string{fmt.Sprintf("ssh/: %v; no key loaded", err)}
	}
	kr := &keyReader{now: time.Now()}
	ro, roFiles := kr.readOnlyFiles(d, seen)
	if ro != nil {
		defer ro.Close()
	}
	files, roFiles = capFiles(kr, files, roFiles)
	kr.readFiles(fd, "ssh/", files, false)
	if ro != nil {
		kr.readFiles(int(ro.Fd()), "ssh/ro/", roFiles, true)
	}
	return kr.keys, kr.problems
}

// keyReader collects the keys of a service and what was skipped, within
// the bounds on a service's keys.
type keyReader struct {
	keys     []*authorizedKey
	problems []string
	now      time.Time // keys expired at now are skipped
}

func (kr *keyReader) problemf(format string, args ...any) {
	kr.problems = append(kr.problems, fmt.Sprintf(format, args...))
}

// add parses the bytes of the key file where ("ssh/alice.pub").
func (kr *keyReader) add(where string, data []byte, readOnly bool) {
	keys, problems := parseKeyFile(where, data, maxKeys-len(kr.keys), kr.now)
	for _, k := range keys {
		k.readOnly = readOnly
	}
	kr.keys = append(kr.keys, keys...)
	kr.problems = append(kr.problems, problems...)
}

// readFiles adds the key files names of the directory dirfd, which errors
// call prefix ("ssh/").
func (kr *keyReader) readFiles(dirfd int, prefix string, names []string, readOnly bool) {
	for _, name := range names {
		data, err := readRegularAt(dirfd, name, maxKeyFileSize)
		if err != nil {
			kr.problemf("%s%s: skipped, %v", prefix, name, err)
			continue
		}
		kr.add(prefix+name, data, readOnly)
	}
}

// readOnlyFiles opens ro/ in d, whose listing had seen entries, and lists
// its key files; nil when there is none or it is refused, with a problem
// saying why.
func (kr *keyReader) readOnlyFiles(d *os.File, seen int) (*os.File, []string) {
	ro, problem := openReadOnlyDir(d)
	if ro == nil {
		if problem != "" {
			kr.problemf("%s", problem)
		}
		return nil, nil
	}
	files, roSeen, err := keyFiles(ro, maxKeyDirEntries-seen)
	switch {
	case err != nil && seen+roSeen > maxKeyDirEntries:
		kr.problemf("ssh/ro/: ssh/ and ssh/ro/ hold more than %d entries together; no read-only key loaded", maxKeyDirEntries)
	case err != nil:
		kr.problemf("ssh/ro/: %v; no read-only key loaded", err)
	}
	return ro, files
}

// capFiles keeps the first maxKeyFiles of files and then roFiles, and
// says so when that leaves some out.
func capFiles[T any](kr *keyReader, files, roFiles []T) ([]T, []T) {
	n := len(files) + len(roFiles)
	if n <= maxKeyFiles {
		return files, roFiles
	}
	if len(roFiles) == 0 {
		kr.problemf("ssh/: %d .pub files, only the first %d by name are read", n, maxKeyFiles)
	} else {
		kr.problemf("ssh/ and ssh/ro/: %d .pub files, only the first %d are read (by name, ssh/ first)", n, maxKeyFiles)
	}
	files = files[:min(len(files), maxKeyFiles)]
	return files, roFiles[:maxKeyFiles-len(files)]
}

// openReadOnlyDir opens the ro/ subdirectory of the open directory d
// without following a symlink, or says why not ("" when there is none).
// It refuses an ro/ that someone other than d's owner owns, or that more
// users may write to than may write to d: who cannot add a key to d must
// not add one to ro/ (a root-owned operators directory, say, with an ro/
// anyone may write to).
func openReadOnlyDir(d *os.File) (*os.File, string) {
	fd, err := syscall.Openat(int(d.Fd()), "ro", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil, ""
	case errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.ENOTDIR):
		return nil, "ssh/ro/: not a directory (a symlink is not followed); no read-only key loaded"
	case err != nil:
		return nil, fmt.Sprintf("ssh/ro/: %v; no read-only key loaded", err)
	}
	ro := os.NewFile(uintptr(fd), "ro")
	var parent, sub syscall.Stat_t
	if err := syscall.Fstat(int(d.Fd()), &parent); err != nil {
		ro.Close()
		return nil, fmt.Sprintf("ssh/: %v; no read-only key loaded", err)
	}
	if err := syscall.Fstat(fd, &sub); err != nil {
		ro.Close()
		return nil, fmt.Sprintf("ssh/ro/: %v; no read-only key loaded", err)
	}
	if sub.Uid != parent.Uid || sub.Mode&0o022&^parent.Mode != 0 {
		ro.Close()
		return nil, fmt.Sprintf("ssh/ro/: owned by uid %d with mode %04o, but ssh/ by uid %d with mode %04o; no read-only key loaded (give ro/ the owner and write permissions of ssh/)",
			sub.Uid, sub.Mode&0o7777, parent.Uid, parent.Mode&0o7777)
	}
	return ro, ""
}

// parseKeyFile parses the bytes of one key file, named where as in
// "ssh/alice.pub", into its keys, at most room of them, and says what it
// skipped and why, one problem a line naming file and line. A key expired
// at now is skipped.
func parseKeyFile(where string, data []byte, room int, now time.Time) (keys []*authorizedKey, problems []string) {
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		at := fmt.Sprintf("%s:%d", where, i+1)
		if len(keys) >= room {
			problems = append(problems, fmt.Sprintf("%s: skipped, a service has at most %d keys", at, maxKeys))
			continue
		}
		k, err := parseKeyLine(line)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: key skipped, %v", at, err))
			continue
		}
		if k.expired(now) {
			problems = append(problems, fmt.Sprintf("%s: key skipped, expired at %s", at, k.expiry.Format(time.RFC3339)))
			continue
		}
		k.source = at
		keys = append(keys, k)
	}
	return keys, problems
}

// keyFiles lists the *.pub names of the open directory d, sorted, and how
// many entries it has, refusing a directory with more than limit entries
// rather than reading an unbounded listing.
func keyFiles(d *os.File, limit int) ([]string, int, error) {
	var files []string
	seen := 0
	for {
		names, err := d.Readdirnames(256)
		seen += len(names)
		if seen > limit {
			return nil, seen, fmt.Errorf("more than %d entries", limit)
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".pub") {
				files = append(files, n)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, seen, err
		}
	}
	slices.Sort(files)
	return files, seen, nil
}

// readRegularAt reads the regular file name in the directory dirfd, of at
// most limit bytes, without following a symlink and without blocking on a
// FIFO: the directory is the service user's to change, also while root reads it.
func readRegularAt(dirfd int, name string, limit int64) ([]byte, error) {
	fd, err := syscall.Openat(dirfd, name, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, errors.New("not a regular file")
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > limit {
		return nil, fmt.Errorf("not a regular file under %d KiB", limit>>10)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// parseKeyLine parses one authorized_keys line. Options that pgod honours
// are kept; options that only take away what pgod never offers are
// accepted; any other option, and a certificate, refuses the key, since
// ignoring them would let in a key on terms its owner did not write.
func parseKeyLine(line []byte) (*authorizedKey, error) {
	key, _, options, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, errors.New("no valid public key")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, errors.New("a certificate; pgod takes plain public keys only")
	}
	k := &authorizedKey{key: key, blob: string(key.Marshal())}
	for _, opt := range options {
		name, value, hasValue := strings.Cut(opt, "=")
		name = strings.ToLower(name)
		if hasValue {
			value, err = unquoteOption(value)
			if err != nil {
				return nil, fmt.Errorf("option %s: %v", name, err)
			}
		}
		if err := k.apply(name, value, hasValue); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// apply adds one option to k.
func (k *authorizedKey) apply(name, value string, hasValue bool) error {
	flag := func(set func()) error {
		if hasValue {
			return fmt.Errorf("option %s takes no value", name)
		}
		set()
		return nil
	}
	switch name {
	case "no-port-forwarding", "no-agent-forwarding", "no-x11-forwarding", "no-user-rc":
		return flag(func() {}) // pgod never offers these
	case "restrict":
		return flag(func() { k.noPTY = true }) // and everything pgod never offers
	case "no-pty":
		return flag(func() { k.noPTY = true })
	case "pty":
		return flag(func() { k.noPTY = false }) // after restrict, as in sshd
	case "from":
		if !hasValue {
			return errors.New(`option from needs a value, as in from="192.0.2.0/24"`)
		}
		if k.from != nil {
			return errors.New("option from given twice")
		}
		from, err := parseFrom(value)
		if err != nil {
			return fmt.Errorf("option from: %v", err)
		}
		k.from = from
		return nil
	case "expiry-time":
		t, err := parseExpiry(value)
		if err != nil {
			return fmt.Errorf("option expiry-time: %v", err)
		}
		if k.expiry.IsZero() || t.Before(k.expiry) { // the earliest counts, as in sshd
			k.expiry = t
		}
		return nil
	}
	return fmt.Errorf("option %s is not supported (pgod honours from=, expiry-time=, no-pty, restrict and the no-*-forwarding options)", name)
}

// unquoteOption takes the value of an option as written, `"a,b"`, and
// returns a,b; a \" inside stands for a quote, as sshd reads it.
func unquoteOption(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errors.New("the value must be in double quotes")
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`), nil
}

// parseFrom checks a from= pattern list: comma-separated address patterns
// with * and ?, or CIDR blocks, each negated by a leading !.
func parseFrom(list string) ([]string, error) {
	var from []string
	for _, e := range strings.Split(list, ",") {
		p := strings.TrimPrefix(e, "!")
		if p == "" {
			return nil, fmt.Errorf("empty pattern in %q", list)
		}
		if strings.Contains(p, "/") {
			if _, err := netip.ParsePrefix(p); err != nil {
				return nil, fmt.Errorf("%q is not a CIDR block", p)
			}
		}
		from = append(from, strings.ToLower(e))
	}
	return from, nil
}

// matchFrom reports whether ip matches the from= patterns as sshd matches
// them with UseDNS off (its default): a negated match refuses whatever else
// matches, and a name pattern is matched against the address, as no name is
// looked up.
func matchFrom(from []string, ip netip.Addr) bool {
	addr := ip.String()
	ok := false
	for _, e := range from {
		p, negated := strings.CutPrefix(e, "!")
		var match bool
		if prefix, err := netip.ParsePrefix(p); err == nil {
			match = prefix.Masked().Contains(ip)
		} else {
			match = matchWildcard(p, addr)
		}
		if match && negated {
			return false
		}
		ok = ok || match
	}
	return ok
}

// matchWildcard matches s against pattern, where * is any run of
// characters and ? any one, as OpenSSH's match_pattern.
func matchWildcard(pattern, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := 0, 0 // where to resume after the last *
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if 0 < nextSx && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// parseExpiry reads sshd's expiry-time: YYYYMMDD, YYYYMMDDHHMM or
// YYYYMMDDHHMMSS in the host's local time, or in UTC with a trailing Z.
func parseExpiry(s string) (time.Time, error) {
	loc := time.Local
	if v, ok := strings.CutSuffix(strings.ToUpper(s), "Z"); ok {
		s, loc = v, time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(s)]
	if ok && strings.Trim(s, "0123456789") == "" {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", s)
}

// remoteIP is the address of a client, IPv4 unmapped and without a zone.
func remoteIP(a net.Addr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}
