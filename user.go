package main

import (
	"context"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// account is the Unix user a service's commands run as.
type account struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // the user's own supplementary groups
	Docker []uint32 // the docker group, when the host has one: added only for commands that talk to the engine
	Home   string   // HOME for its commands; the daemon may replace an unusable one
}

// lookupAccount finds name in the user database. The docker group is kept
// apart: membership is root-equivalent, so only the commands that talk to the
// engine (compose up, pull, ps, exec) get it; git and the render of a team's
// compose file do not, and a bug in their parsing of team input stays the
// user's.
func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	a := &account{Name: name, Home: u.HomeDir}
	if a.UID, err = parseID(u.Uid); err != nil {
		return nil, fmt.Errorf("user %q: uid: %w", name, err)
	}
	if a.GID, err = parseID(u.Gid); err != nil {
		return nil, fmt.Errorf("user %q: gid: %w", name, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("user %q: groups: %w", name, err)
	}
	docker := ""
	if g, err := user.LookupGroup("docker"); err == nil {
		docker = g.Gid
	}
	seen := map[uint32]bool{}
	for _, s := range gids {
		id, err := parseID(s)
		if err != nil || seen[id] || s == docker {
			continue
		}
		seen[id] = true
		a.Groups = append(a.Groups, id)
	}
	if id, err := parseID(docker); err == nil && docker != "" {
		a.Docker = []uint32{id}
	}
	return a, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// root reports whether the account is the superuser, whose commands run without a credential switch.
func (a *account) root() bool { return a.UID == 0 }

// command prepares name with args to run as the account with its own groups
// only, with exactly env as its environment, in a process group of its own so
// that cancelling ctx ends the command and all its children. A nil account
// runs as the caller.
func (a *account) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	return a.commandWith(ctx, nil, env, name, args...)
}

// engineCommand is command with the docker group added, for the commands
// that must reach the engine's socket.
func (a *account) engineCommand(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	if a == nil {
		return a.commandWith(ctx, nil, env, name, args...)
	}
	return a.commandWith(ctx, a.Docker, env, name, args...)
}

func (a *account) commandWith(ctx context.Context, extra []uint32, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if a != nil && !a.root() {
		groups := append(append([]uint32{}, a.Groups...), extra...)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.UID, Gid: a.GID, Groups: groups}
	}
	cmd.Cancel = func() error {
		// Kill the whole group: compose and git start children of their own.
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return cmd
}

// baseEnv is the minimal environment every command pgo runs starts from; the
// daemon's own environment never leaks into a service's commands.
func (a *account) baseEnv() []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	if a != nil {
		env = append(env, "HOME="+a.Home, "USER="+a.Name, "LOGNAME="+a.Name)
	}
	return env
}
