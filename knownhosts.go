package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys verifies pgod's host key for pgoctl, in one of two ways:
//
//   - pinned (PGOCTL_HOSTKEY, for CI): the server's key must be one of the
//     pinned keys, given as authorized_keys lines ("ssh-ed25519 AAAA...") or
//     as SHA256 fingerprints ("SHA256:..."), one per line; nothing is read
//     or written on disk.
//   - a known_hosts file in OpenSSH's format (hashed host names or not):
//     a host not in it is trusted on first use and appended with a one-line
//     notice; a host in it with another key is refused, loudly.
//
// A fan-out checks each host with its own hostKeys (its notices go to that
// host's prefixed stderr), all sharing one fileLock.
type hostKeys struct {
	file     string      // the known_hosts file
	pinned   string      // PGOCTL_HOSTKEY, or ""
	notice   io.Writer   // where the trust-on-first-use notice and refusals go
	fileLock *sync.Mutex // held from reading the file to appending to it, so that concurrent sessions neither garble it nor add a host twice
}

// errHostKey marks a refused host key; pgoctl has already explained it on stderr.
var errHostKey = errors.New("host key verification failed")

// callback returns the ssh.HostKeyCallback for a connection.
func (h *hostKeys) callback() (ssh.HostKeyCallback, error) {
	if h.pinned != "" {
		return h.checkPinned()
	}
	return h.checkKnownHosts, nil
}

// checkPinned parses the pins once and returns a callback comparing against them.
func (h *hostKeys) checkPinned() (ssh.HostKeyCallback, error) {
	var fingerprints []string
	for _, line := range strings.Split(h.pinned, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "SHA256:"):
			fingerprints = append(fingerprints, line)
		default:
			key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
			if err != nil {
				return nil, fmt.Errorf("PGOCTL_HOSTKEY: %q is neither an authorized_keys line nor a SHA256: fingerprint", line)
			}
			fingerprints = append(fingerprints, ssh.FingerprintSHA256(key))
		}
	}
	if len(fingerprints) == 0 {
		return nil, errors.New("PGOCTL_HOSTKEY holds no key")
	}
	return func(host string, _ net.Addr, key ssh.PublicKey) error {
		got := ssh.FingerprintSHA256(key)
		for _, fp := range fingerprints {
			if fp == got {
				return nil
			}
		}
		fmt.Fprintf(h.notice, "pgoctl: HOST KEY MISMATCH for %s: it offered %s %s, which PGOCTL_HOSTKEY does not pin.\n"+
			"pgoctl: someone may be intercepting this connection. Refusing to connect.\n",
			knownhosts.Normalize(host), key.Type(), got)
		return errHostKey
	}, nil
}

// checkKnownHosts is the known_hosts callback with trust on first use.
func (h *hostKeys) checkKnownHosts(host string, remote net.Addr, key ssh.PublicKey) error {
	h.fileLock.Lock()
	defer h.fileLock.Unlock()
	check, err := knownhosts.New(h.file)
	if errors.Is(err, fs.ErrNotExist) {
		return h.trust(host, key)
	}
	if err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	err = check(host, remote, key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && len(ke.Want) == 0:
		return h.trust(host, key)
	case errors.As(err, &ke):
		fmt.Fprintf(h.notice, "pgoctl: @@@ HOST KEY MISMATCH for %s @@@\n"+
			"pgoctl: it offered %s %s, but %s:%d holds %s %s for it.\n"+
			"pgoctl: someone may be intercepting this connection, or the host key was replaced. Refusing to connect.\n"+
			"pgoctl: if the new key is expected, delete line %d of %s and try again.\n",
			knownhosts.Normalize(host), key.Type(), ssh.FingerprintSHA256(key),
			ke.Want[0].Filename, ke.Want[0].Line, ke.Want[0].Key.Type(), ssh.FingerprintSHA256(ke.Want[0].Key),
			ke.Want[0].Line, ke.Want[0].Filename)
		return errHostKey
	case errors.As(err, &re):
		fmt.Fprintf(h.notice, "pgoctl: @@@ REVOKED HOST KEY for %s @@@ (%s:%d). Refusing to connect.\n",
			knownhosts.Normalize(host), re.Revoked.Filename, re.Revoked.Line)
		return errHostKey
	}
	return fmt.Errorf("known hosts: %w", err)
}

// trust appends a first-seen host key to the known_hosts file and says so.
func (h *hostKeys) trust(host string, key ssh.PublicKey) error {
	if err := appendKnownHost(h.file, host, key); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	fmt.Fprintf(h.notice, "pgoctl: trusting %s on first use: %s %s, added to %s\n",
		knownhosts.Normalize(host), key.Type(), ssh.FingerprintSHA256(key), h.file)
	return nil
}

// appendKnownHost adds "host key" to file in OpenSSH's known_hosts format,
// creating the file (0600) and its directory (0700) when missing.
func appendKnownHost(file, host string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{host}, key) + "\n"
	// A file edited by hand may lack its last newline; do not glue our line to it.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && !bytes.Equal(last, []byte("\n")) {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// defaultKnownHosts is ~/.config/pgo/known_hosts.
func defaultKnownHosts(home string) string {
	return filepath.Join(home, ".config", "pgo", "known_hosts")
}
