package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// nfsOptions are the reference's mount options: read-write, no set-uid
// programs from the share, and "hard" so that a server outage blocks I/O
// instead of failing it (a soft mount can silently corrupt a database).
const nfsOptions = "rw,nosuid,hard"

// mountinfoPath is where the kernel lists this process's mounts.
const mountinfoPath = "/proc/self/mountinfo"

// ensureMount mounts the service's nfs:// share at target unless it is
// mounted already. mountCmd is normally "mount"; it runs as
// "mountCmd -t nfs -o rw,nosuid,hard host:/path target". A target on which
// something else is mounted is an error: the service's data would not go
// where the config says. Retrying is the caller's business.
//
// The mount must be made in the host's mount namespace, or the Docker
// Engine will not see it: pgod's systemd unit must not use
// PrivateMounts=, ProtectSystem= or other options that give it its own.
func ensureMount(ctx context.Context, mountCmd string, share, target string) error {
	source, options, err := parseNFSURL(share)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", share, err)
	}
	resolved, err := mountPoint(target)
	if err != nil {
		return fmt.Errorf("mount %s: %w", share, err)
	}
	m, mounted, err := mountAt(mountinfoPath, resolved)
	if err != nil {
		return fmt.Errorf("mount %s: %w", share, err)
	}
	if mounted {
		if sameNFSSource(m.source, source) {
			return nil
		}
		return fmt.Errorf("mount %s: %s is already mounted from %q (%s), not from %s", share, target, m.source, m.fsType, source)
	}
	cmd := exec.CommandContext(ctx, mountCmd, "-t", "nfs", "-o", options, source, target)
	out := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mount %s at %s: %v%s", source, target, err, commandOutput([]byte(out.String())))
	}
	return nil
}

// unmount unmounts target with umountCmd (normally "umount") if it is a
// mount point; a target that is not mounted, or does not exist, is fine.
func unmount(ctx context.Context, umountCmd string, target string) error {
	resolved, err := mountPoint(target)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	_, mounted, err := mountAt(mountinfoPath, resolved)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if !mounted {
		return nil
	}
	cmd := exec.CommandContext(ctx, umountCmd, target)
	out := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("unmount %s: %v%s", target, err, commandOutput([]byte(out.String())))
	}
	return nil
}

// parseNFSURL turns nfs://host[:port]/path into mount's source "host:/path"
// ("[addr]:/path" for IPv6) and its options.
func parseNFSURL(share string) (source, options string, err error) {
	u, err := url.Parse(share)
	if err != nil {
		return "", "", fmt.Errorf("mount %q: %v", share, err)
	}
	switch {
	case u.Scheme != "nfs":
		return "", "", fmt.Errorf("mount %q: want an nfs://host/path URL", share)
	case u.Hostname() == "":
		return "", "", fmt.Errorf("mount %q: no server", share)
	case u.User != nil, u.RawQuery != "", u.Fragment != "", u.Opaque != "":
		return "", "", fmt.Errorf("mount %q: only nfs://host[:port]/path is supported", share)
	case u.Path == "" || u.Path == "/":
		return "", "", fmt.Errorf("mount %q: no path on the server", share)
	case path.Clean(u.Path) != strings.TrimSuffix(u.Path, "/") || strings.ContainsAny(u.Path, ",\n"):
		return "", "", fmt.Errorf("mount %q: path %q is not clean", share, u.Path)
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if u.Port() != "" {
		// The config refuses a port too; NFS finds its port through the portmapper.
		return "", "", fmt.Errorf("mount %q: a port is not supported", share)
	}
	return host + ":" + path.Clean(u.Path), nfsOptions, nil
}

// sameNFSSource compares mountinfo's source with ours, ignoring a trailing slash.
func sameNFSSource(mounted, want string) bool {
	trim := func(s string) string {
		if len(s) > 1 && strings.HasSuffix(s, "/") && !strings.HasSuffix(s, ":/") {
			return strings.TrimSuffix(s, "/")
		}
		return s
	}
	return trim(mounted) == trim(want)
}

// mountedAt reports whether something is mounted at dir; a dir that does not
// exist has nothing mounted.
func mountedAt(dir string) (bool, error) {
	resolved, err := mountPoint(dir)
	if err != nil {
		return false, err
	}
	_, mounted, err := mountAt(mountinfoPath, resolved)
	return mounted, err
}

// mountPoint is target as the kernel lists it in mountinfo: absolute, with
// symlinks resolved (a part that does not exist yet is kept as it is).
func mountPoint(target string) (string, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	return resolveHostPath(abs)
}

// mountEntry is one line of /proc/self/mountinfo, the parts pgo needs.
type mountEntry struct {
	mountPoint string
	fsType     string
	source     string
}

// mountAt returns the mount on top at mountPoint (the last listed one, when
// mounts are stacked) according to the mountinfo file at file.
func mountAt(file, mountPoint string) (mountEntry, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return mountEntry{}, false, err
	}
	defer f.Close()
	entries, err := parseMountinfo(f)
	if err != nil {
		return mountEntry{}, false, fmt.Errorf("%s: %w", file, err)
	}
	var top mountEntry
	found := false
	for _, e := range entries {
		if e.mountPoint == mountPoint {
			top, found = e, true
		}
	}
	return top, found, nil
}

// parseMountinfo reads the kernel's mountinfo format (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// mount ID, parent ID, major:minor, root, mount point, options, zero or
// more optional fields, "-", file system type, source, super options.
// Space, tab, newline and backslash in paths are escaped as \040, \011,
// \012 and \134.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var entries []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		e, err := parseMountinfoLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

func parseMountinfoLine(line string) (mountEntry, error) {
	fields := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if len(fields) < 6 || sep < 0 || len(fields) < sep+3 {
		return mountEntry{}, fmt.Errorf("not a mountinfo line: %q", line)
	}
	return mountEntry{
		mountPoint: unescapeMountinfo(fields[4]),
		fsType:     unescapeMountinfo(fields[sep+1]),
		source:     unescapeMountinfo(fields[sep+2]),
	}, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space, ...);
// a backslash not followed by three octal digits stays as it is.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// commandOutput formats a failed command's output for an error message: trimmed, bounded.
func commandOutput(out []byte) string {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return ""
	}
	const max = 2000
	if len(out) > max {
		out = append(out[:max:max], "..."...)
	}
	return ": " + string(out)
}
