//go:build e2e

package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EGitCredentialsNeverOnCommandLine runs pgod on a service whose
// repository URL holds a token, served over HTTP by a server that demands
// it, and watches every process's command line for the token through the
// clone, the first deploy, the fetch of a change and the polls after.
func TestE2EGitCredentialsNeverOnCommandLine(t *testing.T) {
	e2eNeed(t)
	e2eUser(t)
	name := uniqueName("gitcred")
	up := newUpstream(t)
	first := up.commit(t, map[string]string{"compose.yaml": webCompose("one")})
	token := randomToken()
	watch := watchCmdlines(t, token)
	srv := newGitHTTPServer(t, filepath.Dir(up.bare), "oauth2", token, watch.settle)
	url := "http://oauth2:" + token + "@" + srv.host + "/" + filepath.Base(up.bare)
	d := startDaemon(t, serviceTOML(name, url), "-t", "1s")

	pageIs(t, name, "one", 60*time.Second)
	d.logShows(t, "deployed "+short(first), 10*time.Second)
	up.commit(t, map[string]string{"compose.yaml": webCompose("two")})
	pageIs(t, name, "two", 30*time.Second)
	served := srv.refs.Load()
	waitFor(t, "three more polls", 30*time.Second, func() bool { return srv.refs.Load() >= served+3 })

	watch.check(t)
	if strings.Contains(d.logs(), token) {
		t.Fatal("pgod's log shows the token")
	}
}
