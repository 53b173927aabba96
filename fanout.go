package main

// pgoctl's fan-out: one command on several hosts at once, each host's
// output lines prefixed with its name.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

// hostRun runs the command on one host with c, whose output is that host's
// prefixed writers, and returns the host's exit status.
type hostRun func(c *ctlClient, t ctlTarget) int

// fanOutProblem says why a command cannot go to several hosts, or nil.
func fanOutProblem(command, pinned string, hosts int) error {
	if interactive(command) {
		return errors.New("exec -i or -t needs one host's terminal, and stdin cannot go to several hosts: name one host, not a list or @group")
	}
	if pinned != "" && hosts > 1 {
		return fmt.Errorf("PGOCTL_HOSTKEY pins the key of one host and cannot be right for %d: unset it and "+
			"give the hosts' keys in a known_hosts file (--known-hosts FILE, lines \"[address]:port ssh-ed25519 AAAA...\")", hosts)
	}
	return nil
}

// interactive reports whether command is an exec with -i or -t, which wants
// our stdin or terminal.
func interactive(command string) bool {
	req, err := parseCommand(command)
	if err != nil || req.op != "exec" {
		return false
	}
	args, err := ops["exec"].args.parse("exec", req.args, true)
	return err == nil && (args.has("-i") || args.has("-t"))
}

// fanOut runs runHost for every target, at most parallel at once, started
// in the order given (so --parallel 1 goes host by host), and returns the
// worst exit status. A signal on interrupt starts no more hosts: those
// running get it from their own sessions. At the end, when some of several
// hosts failed, one line on stderr names them.
func (c *ctlClient) fanOut(targets []ctlTarget, parallel int, interrupt <-chan os.Signal, runHost hostRun) int {
	var lock sync.Mutex // one line at a time, of every host, on stdout and stderr alike
	codes := make([]int, len(targets))
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		if sig := c.waitForSlot(slots, interrupt); sig != nil {
			for j := i; j < len(targets); j++ {
				codes[j] = c.notStarted(targets[j], &lock, sig)
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			codes[i] = c.runPrefixed(t, &lock, runHost)
		}()
	}
	wg.Wait()
	if len(targets) > 1 {
		c.summarize(targets, codes)
	}
	return worstExit(codes)
}

// waitForSlot takes a slot of slots, or returns the signal that came first.
func (c *ctlClient) waitForSlot(slots chan struct{}, interrupt <-chan os.Signal) os.Signal {
	select { // a signal already there wins over a free slot
	case sig := <-interrupt:
		return sig
	default:
	}
	select {
	case slots <- struct{}{}:
		return nil
	case sig := <-interrupt:
		return sig
	}
}

// notStarted reports a host left out after sig and returns its status, 128 + the signal's number as a shell's.
func (c *ctlClient) notStarted(t ctlTarget, lock *sync.Mutex, sig os.Signal) int {
	errOut := &linePrefixer{w: c.stderr, prefix: t.name + ": ", lock: lock}
	fmt.Fprintf(errOut, "pgoctl: not started: %v\n", sig)
	if n, ok := sig.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return exitSSH
}

// runPrefixed runs the command on one host with its output prefixed by the host's name.
func (c *ctlClient) runPrefixed(t ctlTarget, lock *sync.Mutex, runHost hostRun) int {
	out := &linePrefixer{w: c.stdout, prefix: t.name + ": ", lock: lock}
	errOut := &linePrefixer{w: c.stderr, prefix: t.name + ": ", lock: lock}
	hc := &ctlClient{stdout: out, stderr: errOut, getenv: c.getenv, home: c.home, fanned: true}
	code := runHost(hc, t)
	_ = out.flush()
	_ = errOut.flush()
	return code
}

// summarize writes "pgoctl: 1 of 3 hosts failed: web2 (255)" when some failed.
func (c *ctlClient) summarize(targets []ctlTarget, codes []int) {
	var failed []string
	for i, t := range targets {
		if codes[i] != 0 {
			failed = append(failed, fmt.Sprintf("%s (%d)", t.name, codes[i]))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(c.stderr, "pgoctl: %d of %d hosts failed: %s\n", len(failed), len(targets), strings.Join(failed, ", "))
	}
}

// worstExit is the exit status of a fan-out: 0 only when every host gave 0,
// else the highest status, so that 255 (a host unreachable) outranks the ops'
// own statuses, and those outrank 1.
func worstExit(codes []int) int {
	worst := 0
	for _, code := range codes {
		worst = max(worst, code)
	}
	return worst
}
