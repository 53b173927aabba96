package main

import (
	"cmp"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// auditTrail writes pgod's audit trail to its log (the journal), one line an
// event, in a format scripts may parse and pgo(8) documents field by field:
//
//	INFO audit ssh key=SHA256:… key_file=ssh/alice.pub:1 service=web op="git pull" args="" exit=0 result=ok duration=1.2s from=192.0.2.7:50122
//	WARN audit ssh refused key=SHA256:… service=web op=ps reason="key not allowed for this service" from=192.0.2.7:50122
//	WARN audit ssh suppressed from=192.0.2.7 lines=990 window=1m0s
//	INFO audit reload result=ok added=1 removed=0 changed=2
//	ERROR audit reload result=error error="…"
//
// and counts the same events in the metrics. Refusals come from anyone who
// can reach the SSH port, so they are rate-limited per source (sourceOf):
// a flood of them cannot fill the disk.
type auditTrail struct {
	log      *slog.Logger
	metrics  *metrics // nil in tests that do not look
	refusals *refusalLimit
}

// Refusals logged per source and window; the rest are counted, and said in
// one "suppressed" line once the window is over.
const (
	refusalsPerWindow = 10
	refusalWindow     = time.Minute
	// refusalSources caps the sources remembered at once; past it, new
	// sources share one budget, so many sources cannot grow the map either.
	refusalSources = 4096
)

// Why an SSH attempt was refused: the reasons the log and the metrics give.
// A key refused by its from= or expiry-time= options is, to the client,
// a key not listed for its address: the reason says no more than that.
const (
	refusedUnknownKey = "key not listed by any service for this address"
	refusedForService = "key not allowed for this service"
	refusedReadOnly   = "read-only key"
)

func newAuditTrail(log *slog.Logger, m *metrics) *auditTrail {
	return &auditTrail{log: log, metrics: m, refusals: newRefusalLimit(refusalsPerWindow, refusalWindow, time.Now)}
}

// sshOp is one op an authorized key ran (or tried to, with bad arguments).
type sshOp struct {
	key, keyFile, service, op string
	args                      []string // as the client gave them; redacted here
	exit                      int
	result                    string // exitOf's metrics result
	duration                  time.Duration
	from                      string
}

// op logs and counts one op a key was allowed to ask for.
func (a *auditTrail) op(o sshOp) {
	a.log.Info("audit ssh", "key", o.key, "key_file", o.keyFile, "service", o.service, "op", o.op,
		"args", auditArgs(o.op, o.args), "exit", o.exit, "result", o.result,
		"duration", o.duration.Round(time.Millisecond), "from", o.from)
	if a.metrics != nil {
		a.metrics.sshOp(o.service, o.op, o.result)
	}
}

// refused logs (rate-limited) and counts an attempt pgod turned away.
// reason is one of a few fixed phrases: it is also a metrics label.
// service and op are "" unless they name a configured service and a known op.
func (a *auditTrail) refused(key, service, op, reason string, from string, source string) {
	if a.metrics != nil {
		a.metrics.sshRefused(reason)
	}
	logIt, flushed := a.refusals.allow(source)
	for _, s := range flushed {
		a.log.Warn("audit ssh suppressed", "from", s.source, "lines", s.count, "window", refusalWindow)
	}
	if logIt {
		a.log.Warn("audit ssh refused", "key", key, "service", service, "op", op, "reason", reason, "from", from)
	}
}

// reloadResult is what one config reload did.
type reloadResult struct {
	added, removed, changed int
	err                     error
}

// reload logs and counts one config reload.
func (a *auditTrail) reload(r reloadResult) {
	if r.err != nil {
		a.log.Error("audit reload", "result", "error", "error", r.err.Error())
	} else {
		a.log.Info("audit reload", "result", "ok", "added", r.added, "removed", r.removed, "changed", r.changed)
	}
	if a.metrics != nil {
		a.metrics.configReload(r.err == nil)
	}
}

// auditArgs renders an op's arguments as sh(1) words, with the value of
// every exec environment variable (-e NAME=VALUE) written as ***: those
// are how secrets reach a command.
func auditArgs(op string, args []string) string {
	words := make([]string, len(args))
	copy(words, args)
	if op == "exec" {
		redactExecEnv(words)
	}
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

// redactExecEnv replaces the values of exec's -e/--env flags in place, in
// every spelling argSpec.parse accepts: "-e N=V", "-eN=V", "-ie N=V",
// "--env N=V", "--env=N=V". It stops where exec's flags stop.
func redactExecEnv(args []string) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return
		case arg == "--env":
			if i+1 < len(args) {
				i++
				args[i] = redactEnv(args[i])
			}
		case strings.HasPrefix(arg, "--env="):
			args[i] = "--env=" + redactEnv(strings.TrimPrefix(arg, "--env="))
		case strings.HasPrefix(arg, "--"):
			if !strings.Contains(arg, "=") && (arg == "--user" || arg == "--workdir") {
				i++ // their value follows
			}
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			// A cluster of short flags: -u and -w take the rest as their
			// value, -e too, or the next argument when nothing is left.
			for j := 1; j < len(arg); j++ {
				c := arg[j]
				if c != 'e' && c != 'u' && c != 'w' {
					continue
				}
				switch {
				case j+1 < len(arg) && c == 'e':
					args[i] = arg[:j+1] + redactEnv(arg[j+1:])
				case j+1 == len(arg) && i+1 < len(args):
					i++
					if c == 'e' {
						args[i] = redactEnv(args[i])
					}
				}
				break
			}
		default:
			return // the compose service: what follows is the command
		}
	}
}

// redactEnv turns NAME=VALUE into NAME=***. Anything else is all ***: exec
// refuses it, and it may be a value whose NAME= was forgotten.
func redactEnv(s string) string {
	name, _, ok := strings.Cut(s, "=")
	if !ok {
		return "***"
	}
	return name + "=***"
}

// refusalLimit lets through at most perWindow refusals per source in a
// window, and counts the rest.
type refusalLimit struct {
	perWindow int
	window    time.Duration
	now       func() time.Time

	mu      sync.Mutex
	sources map[string]*refusalWindowState
}

type refusalWindowState struct {
	start      time.Time
	logged     int
	suppressed int
}

// suppressedLines is what a window that ended left unsaid.
type suppressedLines struct {
	source string
	count  int
}

func newRefusalLimit(perWindow int, window time.Duration, now func() time.Time) *refusalLimit {
	return &refusalLimit{perWindow: perWindow, window: window, now: now, sources: map[string]*refusalWindowState{}}
}

// allow reports whether a refusal from source may be logged, and returns the
// windows that ended since the last call with refusals suppressed, for the
// caller to say how many. Ended windows are forgotten.
func (l *refusalLimit) allow(source string) (bool, []suppressedLines) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var flushed []suppressedLines
	for src, w := range l.sources {
		if now.Sub(w.start) >= l.window {
			if w.suppressed > 0 {
				flushed = append(flushed, suppressedLines{src, w.suppressed})
			}
			delete(l.sources, src)
		}
	}
	if _, ok := l.sources[source]; !ok && len(l.sources) >= refusalSources {
		source = "other sources"
	}
	slices.SortFunc(flushed, func(a, b suppressedLines) int { return cmp.Compare(a.source, b.source) })
	w := l.sources[source]
	if w == nil {
		w = &refusalWindowState{start: now}
		l.sources[source] = w
	}
	if w.logged >= l.perWindow {
		w.suppressed++
		return false, flushed
	}
	w.logged++
	return true, flushed
}
