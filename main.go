// Command pgo is a GitOps daemon for Docker Compose. One binary plays three
// parts: the daemon (pgod), the client (pgoctl) and an offline checker.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const usage = `Usage:
    pgo daemon [flags]        run the daemon (also: pgod [flags])
    pgo ctl [flags] hosts:name//op [args...]
                              drive a service over SSH, on one host or several
                              (web1,web2 or @group) at once (also: pgoctl ...)
    pgo check [flags] [PATH]  validate pgo.toml and a compose project offline
    pgo status [flags]        list this host's services from pgod's saved
                              state (root)
    pgo version               print the version
    pgo help                  print this text

pgod runs as root under systemd, reads /etc/pgo.toml (or follows it in a git
repository), clones the repository of every service this host runs, checks its
compose file against the security policy and keeps the branch deployed with
"docker compose up" (or "docker stack deploy" on a swarm). Teams drive their
own service with pgoctl over pgod's SSH server (port 2222), authorised by the
public keys in the ssh/ directory of their repository; the host's operators,
by the keys in /etc/pgo/operators, drive every service. See pgo(8).

The flags of each mode follow; "pgo daemon -h", "pgo ctl -h", "pgo check -h"
and "pgo status -h" print them one mode at a time.
`

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run picks the mode from argv[0] or the first argument and returns the exit code.
func run(argv []string, stdout, stderr io.Writer) int {
	switch filepath.Base(argv[0]) {
	case "pgod":
		return runDaemon(argv[1:], stdout, stderr)
	case "pgoctl":
		return runCtl(argv[1:], stdout, stderr)
	}
	if len(argv) < 2 {
		fmt.Fprint(stderr, fullUsage())
		return 2
	}
	cmd, args := argv[1], argv[2:]
	switch cmd {
	case "daemon":
		return runDaemon(args, stdout, stderr)
	case "ctl":
		return runCtl(args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "status":
		return runStatus(args, stdout, stderr)
	case "version", "-v", "--version":
		fmt.Fprintf(stdout, "pgo %s\n", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, fullUsage())
		return 0
	}
	fmt.Fprintf(stderr, "pgo: unknown command %q\n%s", cmd, usage)
	return 2
}

// fullUsage is the overview followed by every mode's flags.
func fullUsage() string {
	return usage + "\n" + daemonUsage + "\n" + ctlUsage + "\n" + checkUsage + "\n" + statusUsage
}
