package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Operator keys are the host's, not a team's: the *.pub files of a
// directory root owns (pgod --operators, default /etc/pgo/operators), in
// the authorized_keys format and read by the same reader as a service's
// ssh/ (readKeys: no symlink followed, the same options honoured). A key
// listed there may run every op on every service, as that service's team
// may, and the host-wide "*//status".

// defaultOperatorsDir is where pgod looks for operator keys without --operators.
const defaultOperatorsDir = "/etc/pgo/operators"

// operatorKeys holds the operator keys read last.
type operatorKeys struct {
	mu   sync.Mutex
	keys []*authorizedKey
}

// load reads dir again and replaces the keys, returning what it skipped
// and why. A directory that is missing holds no operator key.
func (o *operatorKeys) load(dir string) (problems []string) {
	keys, problems := readOperatorKeys(dir)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.keys = keys
	return problems
}

// authorized returns the operator key line that lets key in from remote now, or nil.
func (o *operatorKeys) authorized(key ssh.PublicKey, remote net.Addr) *authorizedKey {
	o.mu.Lock()
	defer o.mu.Unlock()
	return findKey(o.keys, key, remote, time.Now())
}

// readOperatorKeys reads the keys of dir, refusing all of them unless root
// owns dir and only root may write to it: whoever can add a file there
// drives every service. Keys and problems name their files as
// "operators/NAME.pub:LINE", so an audit line tells them from a team's.
func readOperatorKeys(dir string) ([]*authorizedKey, []string) {
	fi, err := os.Lstat(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, []string{fmt.Sprintf("operators %s: %v; no operator key loaded", dir, err)}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); fi.IsDir() && ok && (st.Uid != 0 || fi.Mode().Perm()&0o022 != 0) {
		return nil, []string{fmt.Sprintf("operators %s: owned by uid %d with mode %04o; no operator key loaded (chown root and chmod go-w it)",
			dir, st.Uid, fi.Mode().Perm())}
	}
	keys, problems := readKeys(dir)
	for _, k := range keys {
		k.source = operatorSource(k.source)
	}
	for i, p := range problems {
		problems[i] = operatorSource(p)
	}
	return keys, problems
}

// operatorSource renames readKeys' "ssh/..." (the name of a service's key
// directory) to "operators/...".
func operatorSource(s string) string {
	if rest, ok := strings.CutPrefix(s, "ssh/"); ok {
		return "operators/" + rest
	}
	return s
}
