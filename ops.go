package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// An op is what a client asks for over SSH: "name//op args...", for example
// "web//logs -f --tail 10 app". The command string is split into words like
// a POSIX shell would (quotes and backslashes), so that pgoctl can quote an
// argument that holds spaces and stock OpenSSH users can do the same.

// opRequest is one parsed command.
type opRequest struct {
	service string   // the pgo service (compose project) name
	op      string   // canonical op name: "up", "git pull", "check", ...
	args    []string // the op's arguments, not yet checked against its allow-list
}

// requestError is an error the client caused or may not get past; its kind
// is the reference implementation's word for it, and each kind has its own
// exit status so scripts can tell them apart.
type requestError struct {
	kind string // "Bad Request", "Unauthorized", "Not Found"
	msg  string
}

func (e *requestError) Error() string { return e.kind + ": " + e.msg }

// Exit statuses of refused requests, from sysexits(3).
const (
	exitBadRequest   = 64 // EX_USAGE
	exitNotFound     = 69 // EX_UNAVAILABLE
	exitUnauthorized = 77 // EX_NOPERM
	exitFailure      = 1  // the op ran and failed without a status of its own
	exitBusy         = 75 // EX_TEMPFAIL: another operation holds the service; try again
)

func (e *requestError) status() int {
	switch e.kind {
	case "Unauthorized":
		return exitUnauthorized
	case "Not Found":
		return exitNotFound
	}
	return exitBadRequest
}

// result is the word counted in metrics for a refused request.
func (e *requestError) result() string {
	return strings.ToLower(strings.ReplaceAll(e.kind, " ", "_"))
}

func badRequest(format string, a ...any) error {
	return &requestError{kind: "Bad Request", msg: fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &requestError{kind: "Not Found", msg: fmt.Sprintf(format, a...)}
}

func unauthorized(format string, a ...any) error {
	return &requestError{kind: "Unauthorized", msg: fmt.Sprintf(format, a...)}
}

// maxCommandLen bounds the command string; nothing legitimate comes near it.
const maxCommandLen = 8192

// parseCommand splits an exec request's command into service, op and arguments.
func parseCommand(command string) (opRequest, error) {
	if len(command) > maxCommandLen {
		return opRequest{}, badRequest("command longer than %d bytes", maxCommandLen)
	}
	name, rest, ok := strings.Cut(strings.TrimSpace(command), "//")
	if !ok {
		return opRequest{}, badRequest("command must look like NAME//OP [ARGS...], as in %q", "web//ps")
	}
	if name == hostTarget {
		return parseHostCommand(rest)
	}
	if !serviceNameRE.MatchString(name) {
		return opRequest{}, badRequest("%q is not a valid service name", name)
	}
	words, err := splitWords(rest)
	if err != nil {
		return opRequest{}, badRequest("%v", err)
	}
	if len(words) == 0 {
		return opRequest{}, badRequest("no op after %q; ops: %s", name+"//", strings.Join(opNames(), ", "))
	}
	op, args := words[0], words[1:]
	if op == "git" {
		if len(args) == 0 {
			return opRequest{}, badRequest(`"git" needs "pull" or "hash"`)
		}
		op, args = "git "+args[0], args[1:]
	}
	if op == "load" { // the reference's name for check
		op = "check"
	}
	if _, ok := ops[op]; !ok {
		return opRequest{}, notFound("no op %q; ops: %s", op, strings.Join(opNames(), ", "))
	}
	return opRequest{service: name, op: op, args: args}, nil
}

// parseHostCommand parses what follows "*//": the host-wide op, status,
// which takes no arguments.
func parseHostCommand(rest string) (opRequest, error) {
	words, err := splitWords(rest)
	if err != nil {
		return opRequest{}, badRequest("%v", err)
	}
	if len(words) == 0 || words[0] != "status" {
		return opRequest{}, notFound("the host-wide %q has one op: %q", hostTarget+"//", hostTarget+"//status")
	}
	if len(words) > 1 {
		return opRequest{}, badRequest("%s takes no arguments, got %q", hostTarget+"//status", words[1])
	}
	return opRequest{service: hostTarget, op: "status"}, nil
}

// splitWords splits s into words as sh(1) would, without any expansion:
// blanks separate words, single quotes keep everything, double quotes keep
// everything but a backslash before " \ $ `, and a backslash elsewhere
// quotes the next character.
func splitWords(s string) ([]string, error) {
	var (
		words []string
		word  strings.Builder
		in    bool // inside a word (an empty quoted word counts)
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, word.String())
				word.Reset()
				in = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			word.WriteString(s[i+1 : i+1+end])
			i += end + 1
			in = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				word.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			in = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("backslash at the end of the command")
			}
			i++
			word.WriteByte(s[i])
			in = true
		default:
			word.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, word.String())
	}
	return words, nil
}

// shellQuote quotes word so that splitWords (and sh) read it back unchanged.
func shellQuote(word string) string {
	if word != "" && strings.Trim(word, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return word
	}
	return "'" + strings.ReplaceAll(word, "'", `'\''`) + "'"
}

// flagSpec is one allow-listed flag of an op.
type flagSpec struct {
	names []string           // every spelling: "-f", "--follow"
	check func(string) error // nil for a flag without a value
}

// argSpec is an op's allow-list.
type argSpec struct {
	flags    []flagSpec
	services bool // positional arguments are compose service names
	// words checks the positional arguments of an op that takes other
	// words than service names (history N, rollback COMMIT, freeze REASON).
	words func([]string) error
}

// parsedArgs is an op's checked arguments.
type parsedArgs struct {
	flags      []parsedFlag
	positional []string
}

type parsedFlag struct {
	name  string // the canonical (first) spelling
	value string
	spec  *flagSpec
}

// compose renders the checked arguments for compose: flags first, in their
// canonical spelling and with their value attached ("--since=-5m": a value
// can never pass for a flag), then "--" so no positional can either.
func (p parsedArgs) compose() []string {
	var out []string
	for _, f := range p.flags {
		if f.spec.check != nil {
			out = append(out, f.name+"="+f.value)
			continue
		}
		out = append(out, f.name)
	}
	if len(p.positional) > 0 {
		out = append(out, "--")
		out = append(out, p.positional...)
	}
	return out
}

func (p parsedArgs) has(name string) bool {
	for _, f := range p.flags {
		if f.name == name {
			return true
		}
	}
	return false
}

func (a *argSpec) lookup(name string) *flagSpec {
	for i := range a.flags {
		for _, n := range a.flags[i].names {
			if n == name {
				return &a.flags[i]
			}
		}
	}
	return nil
}

// addValued adds a flag that takes a value: the one written with it
// ("--tail=5", "-n5") when inline, or else the next argument, which *i then skips.
func (p *parsedArgs) addValued(name, value string, inline bool, spec *flagSpec, args []string, i *int) error {
	if !inline {
		if *i+1 >= len(args) {
			return badRequest("flag %q needs a value", name)
		}
		*i++
		value = args[*i]
	}
	if err := spec.check(value); err != nil {
		return badRequest("flag %q: %v", name, err)
	}
	p.flags = append(p.flags, parsedFlag{name: spec.names[0], value: value, spec: spec})
	return nil
}

// parse checks args against the allow-list. It stops at the first positional
// argument when stopAtPositional is set (exec: what follows is the command).
func (a *argSpec) parse(op string, args []string, stopAtPositional bool) (parsedArgs, error) {
	var p parsedArgs
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			p.positional = append(p.positional, args[i+1:]...)
			return p, a.checkPositional(op, p.positional, stopAtPositional)
		case strings.HasPrefix(arg, "--"):
			name, value, hasValue := strings.Cut(arg, "=")
			spec := a.lookup(name)
			if spec == nil {
				return p, badRequest("flag %q is not allowed for %s", name, op)
			}
			if spec.check == nil {
				if hasValue {
					return p, badRequest("flag %q takes no value", name)
				}
				p.flags = append(p.flags, parsedFlag{name: spec.names[0], spec: spec})
				continue
			}
			if err := p.addValued(name, value, hasValue, spec, args, &i); err != nil {
				return p, err
			}
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			// A cluster of short flags, "-ft"; a flag with a value takes the
			// rest of the cluster or the next argument ("-n10", "-n 10").
			for j := 1; j < len(arg); j++ {
				name := "-" + arg[j:j+1]
				spec := a.lookup(name)
				if spec == nil {
					return p, badRequest("flag %q is not allowed for %s", name, op)
				}
				if spec.check == nil {
					p.flags = append(p.flags, parsedFlag{name: spec.names[0], spec: spec})
					continue
				}
				if err := p.addValued(name, arg[j+1:], j+1 < len(arg), spec, args, &i); err != nil {
					return p, err
				}
				break
			}
		default:
			if stopAtPositional {
				p.positional = append(p.positional, args[i:]...)
				return p, a.checkPositional(op, p.positional, true)
			}
			p.positional = append(p.positional, arg)
		}
	}
	return p, a.checkPositional(op, p.positional, stopAtPositional)
}

func (a *argSpec) checkPositional(op string, positional []string, onlyFirst bool) error {
	if a.words != nil {
		return a.words(positional)
	}
	if len(positional) > 0 && !a.services {
		return badRequest("%s takes no arguments, got %q", op, positional[0])
	}
	for i, s := range positional {
		if onlyFirst && i > 0 {
			break
		}
		if !composeNameRE.MatchString(s) {
			return badRequest("%q is not a compose service name", s)
		}
	}
	return nil
}

// Value checks for allow-listed flags.

func checkCount(s string) error {
	if n, err := strconv.Atoi(s); err != nil || n < 0 {
		return fmt.Errorf("%q is not a non-negative number", s)
	}
	return nil
}

func checkTail(s string) error {
	if s == "all" {
		return nil
	}
	return checkCount(s)
}

// checkTime allows compose's timestamps and relative durations ("2026-01-02T15:04:05Z", "42m").
func checkTime(s string) error {
	if s == "" || strings.Trim(s, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:.+-") != "" {
		return fmt.Errorf("%q is not a timestamp or duration", s)
	}
	return nil
}

func checkPSFormat(s string) error {
	if s != "table" && s != "json" {
		return fmt.Errorf(`only "table" and "json" are allowed, not %q`, s)
	}
	return nil
}

func checkPSStatus(s string) error {
	switch s {
	case "paused", "restarting", "removing", "running", "dead", "created", "exited":
		return nil
	}
	return fmt.Errorf("%q is not a container status", s)
}

var execEnvRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// checkEnv takes NAME=VALUE only: a bare NAME would have docker copy the
// variable from its own environment, which holds the service's env secrets.
func checkEnv(s string) error {
	if !execEnvRE.MatchString(s) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%q is not NAME=VALUE (a bare NAME is not passed on)", s)
	}
	return nil
}

var execUserRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)

func checkExecUser(s string) error {
	if !execUserRE.MatchString(s) {
		return fmt.Errorf("%q is not a user[:group]", s)
	}
	return nil
}

func checkWorkdir(s string) error {
	if !strings.HasPrefix(s, "/") || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%q is not an absolute path", s)
	}
	return nil
}

// opSpec describes one op.
type opSpec struct {
	mutating bool     // runs inside svc.serialize, never next to a deploy
	readOnly bool     // changes nothing: a read-only key (ssh/ro/) may run it
	args     *argSpec // nil: the op takes no arguments
	run      func(ctx context.Context, o *opRun) error
	help     string
}

// opRun is everything one running op needs.
type opRun struct {
	name   string // service name, also the compose project name
	svc    serviceControl
	args   parsedArgs
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	pty    *ptyRequest // the client's pty request, nil without one
	// winch delivers window changes of the client's terminal while a PTY op runs.
	winch     <-chan winSize
	hostname  string
	recipient string // the host key as an age recipient (secrets.go)
}

var noArgs = &argSpec{}

// ops is every op, by canonical name. Argument allow-lists follow compose's
// own flag names; anything else, and above all the flags that choose another
// project or file (-f, -p, --project-directory, --env-file, --profile), is refused.
var ops = map[string]*opSpec{
	"up": {mutating: true, args: noArgs, help: "deploy the last validated project and clear the stop marker",
		run: func(ctx context.Context, o *opRun) error { return o.svc.up(ctx, o.stdout, o.stderr) }},
	"down": {mutating: true, args: noArgs, help: "bring the project down and keep it down (sets the stop marker)",
		run: func(ctx context.Context, o *opRun) error { return o.svc.down(ctx, o.stdout, o.stderr) }},
	"stop": {mutating: true, help: "compose stop [-t N] [SERVICE...]",
		args: &argSpec{services: true, flags: []flagSpec{{names: []string{"--timeout", "-t"}, check: checkCount}}},
		run:  runCompose("stop")},
	"start": {mutating: true, help: "compose start [SERVICE...]",
		args: &argSpec{services: true},
		run:  runCompose("start")},
	"restart": {mutating: true, help: "compose restart [-t N] [--no-deps] [SERVICE...]",
		args: &argSpec{services: true, flags: []flagSpec{
			{names: []string{"--timeout", "-t"}, check: checkCount},
			{names: []string{"--no-deps"}},
		}},
		run: func(ctx context.Context, o *opRun) error {
			if err := runCompose("restart")(ctx, o); err != nil {
				return err
			}
			return o.svc.healthy(ctx, o.stdout)
		}},
	"pull": {mutating: true, help: "compose pull [-q] [--ignore-pull-failures] [SERVICE...]",
		args: &argSpec{services: true, flags: []flagSpec{
			{names: []string{"--quiet", "-q"}},
			{names: []string{"--ignore-pull-failures"}},
		}},
		run: runCompose("pull")},
	"ps": {readOnly: true, help: "compose ps [-a] [-q] [--services] [--status S] [--format table|json] [SERVICE...]",
		args: &argSpec{services: true, flags: []flagSpec{
			{names: []string{"--all", "-a"}},
			{names: []string{"--quiet", "-q"}},
			{names: []string{"--services"}},
			{names: []string{"--status"}, check: checkPSStatus},
			{names: []string{"--format"}, check: checkPSFormat},
		}},
		run: runCompose("ps")},
	"logs": {readOnly: true, help: "compose logs [-f] [--tail N] [--since T] [--until T] [-t] [--no-color] [SERVICE...]",
		args: &argSpec{services: true, flags: []flagSpec{
			{names: []string{"--follow", "-f"}},
			{names: []string{"--tail", "-n"}, check: checkTail},
			{names: []string{"--since"}, check: checkTime},
			{names: []string{"--until"}, check: checkTime},
			{names: []string{"--timestamps", "-t"}},
			{names: []string{"--no-color"}},
		}},
		run: runCompose("logs")},
	"exec": {help: "exec [-i] [-t] [-T] [-u USER] [-w DIR] [-e NAME=VALUE] SERVICE COMMAND...",
		args: &argSpec{services: true, flags: []flagSpec{
			{names: []string{"-i", "--interactive"}},
			{names: []string{"-t", "--tty"}},
			{names: []string{"-T", "--no-TTY"}},
			{names: []string{"--user", "-u"}, check: checkExecUser},
			{names: []string{"--workdir", "-w"}, check: checkWorkdir},
			{names: []string{"--env", "-e"}, check: checkEnv},
		}},
		run: runExec},
	"check": {readOnly: true, args: noArgs, help: "check the deployed checkout, and a rejected upstream head, against the policy (alias: load)",
		run: func(ctx context.Context, o *opRun) error {
			ok, err := o.svc.check(ctx, o.stdout)
			if err != nil {
				return err
			}
			if !ok {
				return exitStatus(1)
			}
			return nil
		}},
	"git pull": {mutating: true, args: noArgs, help: "fetch the branch and deploy now; exit 0 only when it runs and is healthy",
		run: func(ctx context.Context, o *opRun) error { return o.svc.gitPull(ctx, o.stdout, o.stderr) }},
	"git hash": {readOnly: true, args: noArgs, help: "print the deployed commit",
		run: func(ctx context.Context, o *opRun) error {
			st := o.svc.status()
			if st.Deployed == "" {
				return notFound("service %q has no deployed commit yet", o.name)
			}
			_, err := fmt.Fprintln(o.stdout, st.Deployed)
			return err
		}},
	"status": {readOnly: true, args: noArgs, help: "branch, commits, last sync and deploy, containers",
		run: func(ctx context.Context, o *opRun) error {
			_, err := io.WriteString(o.stdout, formatStatus(o.svc.status(), time.Now()))
			return err
		}},
	"history": {readOnly: true, help: "history [N]: the last N deploy attempts (default 20), newest first",
		args: &argSpec{words: checkHistoryArgs},
		run: func(ctx context.Context, o *opRun) error {
			n := defaultHistoryLines
			if len(o.args.positional) == 1 {
				n, _ = strconv.Atoi(o.args.positional[0])
			}
			return o.svc.history(n, o.stdout)
		}},
	"diff": {readOnly: true, mutating: true, args: noArgs, help: "what deploying the upstream head would change, and the policy's verdict; deploys nothing",
		run: func(ctx context.Context, o *opRun) error { return o.svc.diff(ctx, o.stdout) }},
	"rollback": {mutating: true, help: "rollback COMMIT: deploy a commit that deployed before (a hash prefix), health-gated, and freeze there",
		args: &argSpec{words: checkRollbackArgs},
		run: func(ctx context.Context, o *opRun) error {
			return o.svc.rollback(ctx, o.stdout, o.args.positional[0])
		}},
	"freeze": {mutating: true, help: "freeze [REASON]: stop following the branch; what runs stays, the head is still judged",
		args: &argSpec{words: checkFreezeArgs},
		run: func(ctx context.Context, o *opRun) error {
			return o.svc.freeze(ctx, o.stdout, strings.Join(o.args.positional, " "))
		}},
	"unfreeze": {mutating: true, args: noArgs, help: "follow the branch again; the head deploys at once",
		run: func(ctx context.Context, o *opRun) error { return o.svc.unfreeze(ctx, o.stdout) }},
	"recipient": {readOnly: true, args: noArgs, help: "print the host's SSH key line, the age recipient secrets.env.age is encrypted to",
		run: func(ctx context.Context, o *opRun) error {
			_, err := fmt.Fprintln(o.stdout, o.recipient)
			return err
		}},
	"ping": {readOnly: true, args: noArgs, help: "answer pong",
		run: func(ctx context.Context, o *opRun) error {
			_, err := fmt.Fprintf(o.stdout, "pong! - %s\n", o.hostname)
			return err
		}},
}

// defaultHistoryLines is how many attempts history shows without N.
const defaultHistoryLines = 20

func checkHistoryArgs(words []string) error {
	switch {
	case len(words) > 1:
		return badRequest("history takes one number, got %q", strings.Join(words, " "))
	case len(words) == 0:
		return nil
	}
	if n, err := strconv.Atoi(words[0]); err != nil || n < 1 || n > maxHistory {
		return badRequest("history N: %q is not a number from 1 to %d", words[0], maxHistory)
	}
	return nil
}

var commitPrefixRE = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

func checkRollbackArgs(words []string) error {
	if len(words) != 1 || !commitPrefixRE.MatchString(words[0]) {
		return badRequest("rollback takes one commit, 4 to 40 lowercase hex digits of its hash; history lists those that deployed")
	}
	return nil
}

// maxFreezeReason bounds the reason a freeze records.
const maxFreezeReason = 200

func checkFreezeArgs(words []string) error {
	reason := strings.Join(words, " ")
	if len(reason) > maxFreezeReason {
		return badRequest("freeze: the reason is longer than %d bytes", maxFreezeReason)
	}
	if escapeControl(reason) != reason || !utf8.ValidString(reason) {
		return badRequest("freeze: the reason holds control characters")
	}
	return nil
}

// orDash is s, or "-" for nothing, as status shows an empty field.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// opNames lists the ops for error messages, sorted.
func opNames() []string { return slices.Sorted(maps.Keys(ops)) }

// exitStatus is an op's own non-zero exit status, passed to the client as is.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// runCompose runs "docker compose SUB args..." on the deployed project.
func runCompose(sub string) func(ctx context.Context, o *opRun) error {
	return func(ctx context.Context, o *opRun) error {
		if sw, ok := o.svc.(swarmControl); ok && sw.onSwarm() {
			return sw.swarmOp(ctx, sub, o.args, o.stdout, o.stderr)
		}
		cmd, err := o.svc.compose(ctx, append([]string{sub}, o.args.compose()...)...)
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = o.stdout, o.stderr
		return runCmd(cmd)
	}
}

// waitDelay bounds how long a finished or cancelled command's output pipes
// may stay open (held by a child it left behind) before Wait gives up.
const waitDelay = 3 * time.Second

// runCmd runs cmd and turns its exit into an exitStatus.
func runCmd(cmd *exec.Cmd) error {
	cmd.WaitDelay = waitDelay
	return commandStatus(cmd.Run())
}

func commandStatus(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitStatus(128 + int(ws.Signal()))
		}
		return exitStatus(ee.ExitCode())
	}
	return err
}

// runExec runs a command in the service's container with docker exec; with
// -i -t and a client pty, interactively through a PTY of our own.
func runExec(ctx context.Context, o *opRun) error {
	if len(o.args.positional) < 2 {
		return badRequest("exec needs a service and a command, as in %q", "exec web sh")
	}
	service, command := o.args.positional[0], o.args.positional[1:]
	var id string
	var err error
	if sw, ok := o.svc.(swarmControl); ok && sw.onSwarm() {
		id, err = sw.swarmContainer(ctx, service)
	} else {
		id, err = findContainer(ctx, o.svc, o.name, service)
	}
	if err != nil {
		return err
	}
	interactive := o.args.has("-i")
	tty := o.args.has("-t") && o.pty != nil
	args := []string{"exec"}
	if interactive {
		args = append(args, "-i")
	}
	if tty {
		args = append(args, "-t", "-e", "TERM="+o.pty.term)
	}
	for _, f := range o.args.flags {
		switch f.name {
		case "--user", "--workdir", "--env":
			args = append(args, f.name+"="+f.value)
		}
	}
	args = append(args, id)
	args = append(args, command...)
	cmd, err := o.svc.docker(ctx, args...)
	if err != nil {
		return err
	}
	if tty {
		return runInPTY(cmd, o)
	}
	if interactive {
		cmd.Stdin = o.stdin
	}
	cmd.Stdout, cmd.Stderr = o.stdout, o.stderr
	return runCmd(cmd)
}

// findContainer returns the ID of a running container of the compose service in project.
func findContainer(ctx context.Context, svc serviceControl, project, service string) (string, error) {
	cmd, err := svc.docker(ctx, "ps", "-q",
		"--filter", "label=com.docker.compose.project="+project,
		"--filter", "label=com.docker.compose.service="+service)
	if err != nil {
		return "", err
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = waitDelay
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("finding the container of %q: %v: %s", service, err, strings.TrimSpace(errOut.String()))
	}
	id, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	id = strings.TrimSpace(id)
	if id == "" {
		return "", notFound("service %q has no running container", service)
	}
	if strings.Trim(id, "0123456789abcdef") != "" {
		return "", fmt.Errorf("docker ps gave %q, not a container ID", id)
	}
	return id, nil
}

// formatStatus renders a serviceStatus for people: what runs and since
// when, each container, the last attempt when it is not what runs, and the
// last rejection while it is the upstream head.
func formatStatus(st serviceStatus, now time.Time) string {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-12s %s\n", k+":", v) }
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Truncate(time.Second))
	}
	line("service", st.Name)
	line("branch", st.Branch)
	deployed := orDash(st.Deployed)
	if st.Deployed != "" && !st.DeployedAt.IsZero() {
		deployed += " since " + when(st.DeployedAt)
	}
	line("deployed", deployed)
	line("upstream", orDash(st.Upstream))
	line("last sync", when(st.LastSync))
	if a := st.Attempt; a.Commit != "" && (a.Commit != st.Deployed || a.Result != resultOK) {
		line("last attempt", fmt.Sprintf("%s by %s at %s: %s", a.Commit, orDash(a.Trigger), when(a.At), a.Result))
		if a.Reason != "" {
			line("reason", a.Reason)
		}
		for _, l := range a.Logs {
			fmt.Fprintf(&b, "  | %s\n", l)
		}
	}
	if st.LastError != "" && st.LastError != st.Attempt.Reason {
		line("error", st.LastError)
	}
	if st.Rejected != "" && st.Rejected == st.Upstream {
		line("rejected", st.Rejected)
		for _, r := range st.Rejection {
			fmt.Fprintf(&b, "  - %s\n", r)
		}
	}
	stopped := "no"
	if st.Stopped {
		stopped = "yes (bring it back with up)"
	}
	line("stopped", stopped)
	if f := st.Frozen; f != nil {
		line("frozen", fmt.Sprintf("at %s by %s since %s: %s", orDash(short(f.Commit)), f.By, when(f.At), orDash(f.Reason)))
		if st.Waiting.Commit != "" {
			line("waiting", fmt.Sprintf("%s %s; it deploys after unfreeze", st.Waiting.Commit, st.Waiting.Verdict))
		}
	}
	units := "containers"
	if st.Swarm {
		units = "tasks"
	}
	line(units, fmt.Sprintf("%d running of %d desired", st.Running, st.Desired))
	for _, c := range st.Containers {
		fmt.Fprintf(&b, "  %s  %s  %s  %s\n", c.Name, orDash(c.Image), c.State, orDash(c.Health))
	}
	if st.ReloadErr != "" {
		line("reload error", st.ReloadErr)
	}
	if st.Config != "" {
		line("config", st.Config+" (the config repository's commit)")
	}
	return b.String()
}
