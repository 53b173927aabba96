package main

import (
	"context"
	"io"
	"net"
	"os/exec"
	"time"

	"golang.org/x/crypto/ssh"
)

// This file is the contract between the SSH control plane (sshd.go, ops.go)
// and the daemon (daemon.go): the daemon implements these interfaces, the
// control plane only uses them, so each side can be tested without the other.

// controller is the daemon as the SSH server sees it.
type controller interface {
	// lookup returns the service called name, or nil.
	lookup(name string) serviceControl
	// knownKey reports whether some service lets key in from remote (see
	// authorized), and where it is listed, as "web ssh/alice.pub:2", for logs.
	knownKey(key ssh.PublicKey, remote net.Addr) (where string, ok bool)
	// operator returns the line of the operator keys (operators.go) that
	// lets key in from remote now, or nil: such a key drives every service.
	operator(key ssh.PublicKey, remote net.Addr) *authorizedKey
	// statuses snapshots every service, for the host-wide view.
	statuses() []serviceStatus
}

// serviceControl is one managed service as the SSH ops see it.
type serviceControl interface {
	// authorized returns the line of the keys loaded from the checkout's
	// ssh/*.pub (those of the validated commit) that lets key in from
	// remote now, or nil: its from= and expiry-time= options decide.
	authorized(key ssh.PublicKey, remote net.Addr) *authorizedKey
	// up clears the stop marker and deploys the last validated project.
	up(ctx context.Context, stdout, stderr io.Writer) error
	// down sets the stop marker and brings the project down.
	down(ctx context.Context, stdout, stderr io.Writer) error
	// healthy waits, as a deploy's health gate does, until the project's
	// containers are ready; a *deployError says why they are not.
	healthy(ctx context.Context, stdout io.Writer) error
	// gitPull fetches the branch, validates and deploys now, and says what happened.
	gitPull(ctx context.Context, stdout, stderr io.Writer) error
	// check renders and validates the deployed checkout and prints the violations.
	check(ctx context.Context, stdout io.Writer) (ok bool, err error)
	// status is a snapshot of the service's state.
	status() serviceStatus
	// history prints the last n deploy attempts, newest first.
	history(n int, stdout io.Writer) error
	// diff prints what deploying the upstream head would change against
	// what runs, and the policy's verdict on it; it deploys nothing.
	diff(ctx context.Context, stdout io.Writer) error
	// rollback deploys a commit that deployed before, named by a prefix of
	// its hash, and freezes the service there.
	rollback(ctx context.Context, stdout io.Writer, prefix string) error
	// freeze stops the service following its branch; unfreeze resumes it.
	freeze(ctx context.Context, stdout io.Writer, reason string) error
	unfreeze(ctx context.Context, stdout io.Writer) error
	// compose prepares "docker compose" on the deployed project as the
	// service's user, args appended. The project arrives on stdin; the caller
	// sets Stdout and Stderr and must not touch Stdin.
	compose(ctx context.Context, args ...string) (*exec.Cmd, error)
	// docker prepares a plain "docker" command as the service's user (used
	// for exec, which needs stdin for itself).
	docker(ctx context.Context, args ...string) (*exec.Cmd, error)
	// serialize runs f while no deploy and no other mutating op runs on the
	// service, with a context bounded as a poll is; it answers a *busyError
	// when the service stays busy too long.
	serialize(ctx context.Context, f func(context.Context) error) error
}

// swarmControl is a service that may run on Docker Swarm (swarm = true):
// the ops that would run docker compose run swarmOp instead, and exec
// finds its container with swarmContainer.
type swarmControl interface {
	// onSwarm reports whether the service runs on Swarm.
	onSwarm() bool
	// swarmOp runs op (ps, logs, restart, stop, start, pull) on the stack.
	swarmOp(ctx context.Context, op string, args parsedArgs, stdout, stderr io.Writer) error
	// swarmContainer returns the ID of a running container of the
	// compose service's tasks on this node, or says where its tasks run.
	swarmContainer(ctx context.Context, service string) (string, error)
}

// serviceStatus is what the daemon knows of one service.
type serviceStatus struct {
	Name       string
	Branch     string
	Deployed   string      // commit of the running deployment, "" before the first
	DeployedAt time.Time   // since when it runs
	Upstream   string      // last commit seen on the branch upstream
	LastSync   time.Time   // last successful contact with upstream
	LastDeploy time.Time   // last deploy attempt
	LastResult string      // "ok", "rejected", "failed", "rolled_back", "unhealthy", "timeout", "" before the first
	LastError  string      // why the last sync or deploy failed, secrets redacted
	Attempt    attempt     // the last deploy attempt
	Rejection  []string    // policy violations of the last rejected commit
	Rejected   string      // that commit
	Stopped    bool        // the stop marker is set
	Running    int         // containers running
	Desired    int         // containers that should run
	Containers []psEntry   // the project's containers at the last look
	ReloadErr  string      // last Caddy reload failure
	Frozen     *freezeMark // set while the service does not follow its branch
	Waiting    waiting     // frozen: the upstream head as judged, waiting for unfreeze
	Config     string      // the config repository's commit that runs; "" for a config file
	Swarm      bool        // it runs on Docker Swarm: Running and Desired count tasks
}

// freezeMark says who froze a service, when, why and where.
type freezeMark struct {
	By     string // the key's file and fingerprint, or "rollback by ..."
	At     time.Time
	Reason string
	Commit string // the commit deployed when it was frozen
}

// waiting is the upstream head of a frozen service as pgod judged it.
type waiting struct {
	Commit  string
	Verdict string // "passes the policy" or why not
}

// caller is who runs an op: the key's fingerprint and the line that let it in.
type caller struct {
	Fingerprint string
	KeyFile     string // "ssh/alice.pub:1", "operators/ops.pub:1"
}

func (c caller) String() string {
	if c.Fingerprint == "" {
		return "-"
	}
	return c.KeyFile + " (" + c.Fingerprint + ")"
}

type callerKey struct{}

// withCaller passes the op's caller to the service, for its history.
func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// attempt is one try to deploy a commit, and how it ended.
type attempt struct {
	Commit  string
	Trigger string // what started it: "poll", "git pull", "up", "restart", "config change", "image update"
	Result  string // a deploy result
	Reason  string // why it did not deploy, one line; "" when it did
	Logs    []string
	At      time.Time
}

// deploy results, as counted in metrics and shown in status.
const (
	resultOK         = "ok"
	resultRejected   = "rejected"
	resultFailed     = "failed"
	resultRolledBack = "rolled_back"
)
