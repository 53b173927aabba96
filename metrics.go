package main

import (
	"bufio"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// metrics counts what pgod does and serves it on /metrics in the Prometheus
// text exposition format (version 0.0.4), written by hand: pgo has no
// dependency on the Prometheus client library. Counters live here; gauges
// (deployed commit, containers, timestamps) are read from the daemon's
// service statuses at scrape time, so they can never disagree with status.
//
// Label values must come from bounded sets: service is a configured service
// name (or "" when none applies), results are the constants the daemon
// uses. Never pass a name a remote caller chose without checking it first.
//
// The zero value is not usable; use newMetrics.
type metrics struct {
	statuses func() []serviceStatus // snapshot of every service, for the gauges

	mu            sync.Mutex
	commands      map[commandKey]uint64
	commandErrors map[commandKey]uint64
	deploys       map[resultKey]uint64
	rejections    map[string]uint64 // service -> rejected commits
	sessions      map[resultKey]uint64
	webhooks      map[resultKey]uint64
	notifications map[endpointKey]uint64
	endpoints     []string // notify endpoints now configured, exported at zero until counted
	audit         auditCounts
	host          string // pgod's --name, "" until it starts
	configCommit  string // the config repository's commit that runs; "" for a config file
}

type commandKey struct{ service, cmd, subcmd string }

type resultKey struct{ service, result string }

type endpointKey struct{ endpoint, result string }

// deployResults are the deploy results every service exports, zero or not,
// so that rate() and absent() behave from the first scrape on.
var deployResults = []string{resultOK, resultRejected, resultFailed, resultRolledBack, resultUnhealthy, resultTimeout}

// newMetrics returns metrics whose per-service gauges come from statuses.
func newMetrics(statuses func() []serviceStatus) *metrics {
	return &metrics{
		statuses:      statuses,
		commands:      map[commandKey]uint64{},
		commandErrors: map[commandKey]uint64{},
		deploys:       map[resultKey]uint64{},
		rejections:    map[string]uint64{},
		sessions:      map[resultKey]uint64{},
		webhooks:      map[resultKey]uint64{},
		notifications: map[endpointKey]uint64{},
	}
}

// command counts one external command run for service, as the reference's
// pgo_command_count and pgo_command_error_count (labels service, cmd,
// subcmd) do. command is the program and its first argument, e.g.
// "compose up", "docker login" or "git fetch": the first word becomes cmd,
// the second subcmd. A non-nil err also counts as an error.
func (m *metrics) command(service, command string, err error) {
	cmd, subcmd, _ := strings.Cut(strings.TrimSpace(command), " ")
	if i := strings.IndexByte(subcmd, ' '); i >= 0 {
		subcmd = subcmd[:i] // never the arguments: unbounded, and they may hold secrets
	}
	k := commandKey{service, cmd, subcmd}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commands[k]++
	if err != nil {
		m.commandErrors[k]++
	}
}

// deploy counts a deploy attempt's result (one of deployResults). A
// rejected attempt also counts as a policy rejection.
func (m *metrics) deploy(service, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deploys[resultKey{service, result}]++
	if result == resultRejected {
		m.rejections[service]++
	}
}

// sshSession counts one SSH session's result ("ok", "error", "unauthorized", ...).
// service is "" when the session named no configured service.
func (m *metrics) sshSession(service, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[resultKey{service, result}]++
}

// webhook counts one webhook request's result (hookTriggered, hookIgnored,
// hookUnauthorized, ...). service is "" unless the request was authenticated,
// so a caller cannot add label values by guessing names.
func (m *metrics) webhook(service, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.webhooks[resultKey{service, result}]++
}

// notification counts one event's fate at a notify endpoint (notifySent,
// notifyFailed, notifyDropped, notifySuppressed). endpoint is the name the
// config gives it, never its URL, which is a secret.
func (m *metrics) notification(endpoint, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notifications[endpointKey{endpoint, result}]++
}

// notificationEndpoints sets the notify endpoints that export every result,
// zero or not.
func (m *metrics) notificationEndpoints(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.endpoints = slices.Clone(names)
}

// ServeHTTP writes the Prometheus text format.
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	bw := bufio.NewWriter(w)
	for _, f := range m.families() {
		f.write(bw)
	}
	bw.Flush()
}

// runsConfig records which host this is and which config repository
// commit runs ("" for a config file).
func (m *metrics) runsConfig(host, commit string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.host, m.configCommit = host, commit
}

// families snapshots every metric family in a fixed order, samples sorted.
func (m *metrics) families() []*family {
	var statuses []serviceStatus
	if m.statuses != nil {
		statuses = m.statuses()
	}
	sort.Slice(statuses, func(i, j int) bool { return statuses[i].Name < statuses[j].Name })

	m.mu.Lock()
	defer m.mu.Unlock()

	build := newFamily("pgo_build_info", "gauge", "Version of the running pgo binary; always 1.")
	build.add(1, "version", version)
	config := newFamily("pgo_config_info", "gauge", "This host's name and the config repository's commit that runs (empty for a config file); always 1.")
	if m.host != "" {
		config.add(1, "host", m.host, "commit", m.configCommit)
	}

	// The reference's names, kept so existing dashboards and alerts keep
	// working. They are exposed untyped: as counters promtool's lint
	// refuses their "_count" suffix (a name reserved for summaries and
	// histograms), and rate() works on untyped samples all the same.
	cmds := newFamily("pgo_command_count", "untyped", "Counter for the number of commands executed.")
	for k, n := range m.commands {
		cmds.add(float64(n), "service", k.service, "cmd", k.cmd, "subcmd", k.subcmd)
	}
	cmdErrs := newFamily("pgo_command_error_count", "untyped", "Counter for the number of commands executed that resulted in an error.")
	for k, n := range m.commandErrors {
		cmdErrs.add(float64(n), "service", k.service, "cmd", k.cmd, "subcmd", k.subcmd)
	}

	info := newFamily("pgo_service_info", "gauge", "Deployed commit and tracked branch of each service; always 1.")
	lastSync := newFamily("pgo_service_last_sync_timestamp_seconds", "gauge", "Unix time of the last successful contact with the service's upstream repository.")
	deployed := newFamily("pgo_service_last_deploy_timestamp_seconds", "gauge", "Unix time of the service's last successful deploy.")
	stopped := newFamily("pgo_service_stopped", "gauge", "1 when the service's stop marker is set and it is kept down.")
	frozen := newFamily("pgo_service_frozen", "gauge", "1 while the service is frozen: it does not follow its branch (freeze, rollback).")
	violations := newFamily("pgo_policy_violations", "gauge", "Policy violations of the service's last commit, when it was rejected; 0 otherwise.")
	running := newFamily("pgo_containers_running", "gauge", "Containers of the service's compose project that are running.")
	desired := newFamily("pgo_containers_desired", "gauge", "Containers of the service's compose project that should be running.")

	known := map[string]bool{}
	for _, s := range statuses {
		known[s.Name] = true
		info.add(1, "service", s.Name, "branch", s.Branch, "commit", s.Deployed)
		if !s.LastSync.IsZero() {
			lastSync.add(unixSeconds(s.LastSync), "service", s.Name)
		}
		// The time status shows the deployed commit running since.
		if !s.DeployedAt.IsZero() {
			deployed.add(unixSeconds(s.DeployedAt), "service", s.Name)
		}
		stopped.add(boolValue(s.Stopped), "service", s.Name)
		frozen.add(boolValue(s.Frozen != nil), "service", s.Name)
		n := 0
		if s.Rejected != "" && s.Rejected == s.Upstream {
			n = len(s.Rejection)
		}
		violations.add(float64(n), "service", s.Name)
		running.add(float64(s.Running), "service", s.Name)
		desired.add(float64(s.Desired), "service", s.Name)
	}

	deploys := newFamily("pgo_deploys_total", "counter", "Deploy attempts by result: ok, rejected (by the policy), failed, rolled_back, unhealthy (the health gate failed), timeout (containers not ready in time).")
	counted := map[resultKey]bool{}
	for k, n := range m.deploys {
		counted[k] = true
		deploys.add(float64(n), "service", k.service, "result", k.result)
	}
	for name := range known {
		for _, result := range deployResults {
			if !counted[resultKey{name, result}] {
				deploys.add(0, "service", name, "result", result)
			}
		}
	}

	rejections := newFamily("pgo_policy_rejections_total", "counter", "Commits the security policy rejected.")
	for name, n := range m.rejections {
		rejections.add(float64(n), "service", name)
	}
	for name := range known {
		if _, ok := m.rejections[name]; !ok {
			rejections.add(0, "service", name)
		}
	}

	sessions := newFamily("pgo_ssh_sessions_total", "counter", "SSH control plane sessions by service and result.")
	for k, n := range m.sessions {
		sessions.add(float64(n), "service", k.service, "result", k.result)
	}
	hooks := newFamily("pgo_webhooks_total", "counter", "Webhook requests by result; service is empty unless the request was authenticated.")
	for k, n := range m.webhooks {
		hooks.add(float64(n), "service", k.service, "result", k.result)
	}

	notifications := newFamily("pgo_notifications_total", "counter", "Events for notify endpoints by result: sent, failed (gave up), dropped (queue full or shutdown), suppressed (a repeat).")
	for k, n := range m.notifications {
		notifications.add(float64(n), "endpoint", k.endpoint, "result", k.result)
	}
	for _, name := range m.endpoints {
		for _, result := range notifyResults {
			if _, ok := m.notifications[endpointKey{name, result}]; !ok {
				notifications.add(0, "endpoint", name, "result", result)
			}
		}
	}

	return append([]*family{build, config, cmds, cmdErrs, info, lastSync, deployed, stopped, frozen, deploys, rejections, violations, running, desired, sessions, hooks, notifications},
		m.auditFamilies()...)
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// family is one metric family: its HELP and TYPE lines and its samples.
type family struct {
	name, typ, help string
	samples         []sample
}

type sample struct {
	labels string // rendered and escaped: {a="1",b="2"}, or ""
	value  float64
}

func newFamily(name, typ, help string) *family { return &family{name: name, typ: typ, help: help} }

// add appends a sample; labels alternate name and value.
func (f *family) add(value float64, labels ...string) {
	var b strings.Builder
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		b.WriteString(escapeLabelValue(labels[i+1]))
		b.WriteByte('"')
	}
	if b.Len() > 0 {
		b.WriteByte('}')
	}
	f.samples = append(f.samples, sample{labels: b.String(), value: value})
}

// write renders the family; a family without samples still gets its HELP
// and TYPE, which tells a reader the metric exists.
func (f *family) write(w *bufio.Writer) {
	sort.Slice(f.samples, func(i, j int) bool { return f.samples[i].labels < f.samples[j].labels })
	w.WriteString("# HELP " + f.name + " " + escapeHelp(f.help) + "\n")
	w.WriteString("# TYPE " + f.name + " " + f.typ + "\n")
	for _, s := range f.samples {
		w.WriteString(f.name + s.labels + " " + strconv.FormatFloat(s.value, 'f', -1, 64) + "\n")
	}
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// escapeLabelValue escapes backslash, double quote and newline, as the text format requires.
func escapeLabelValue(s string) string { return labelEscaper.Replace(s) }

// escapeHelp escapes backslash and newline in a HELP text.
func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// The audit trail's counts (audit.go): ops by service, op and result,
// refusals by reason, config reloads by result.

type auditCounts struct {
	ops      map[opKey]uint64
	refusals map[string]uint64 // reason -> count
	reloads  map[string]uint64 // "ok" or "error" -> count
}

type opKey struct{ service, op, result string }

// sshOp counts one op an authorized key asked for. service is a configured
// service, op a known op name or "" (a command that did not parse).
func (m *metrics) sshOp(service, op, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.audit.ops == nil {
		m.audit.ops = map[opKey]uint64{}
	}
	m.audit.ops[opKey{service, op, result}]++
}

// sshRefused counts one refused attempt; reason is one of the audit trail's fixed phrases.
func (m *metrics) sshRefused(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.audit.refusals == nil {
		m.audit.refusals = map[string]uint64{}
	}
	m.audit.refusals[reason]++
}

// configReload counts one config reload.
func (m *metrics) configReload(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.audit.reloads == nil {
		m.audit.reloads = map[string]uint64{}
	}
	result := "ok"
	if !ok {
		result = "error"
	}
	m.audit.reloads[result]++
}

// auditFamilies snapshots the audit counts; the caller holds m.mu.
func (m *metrics) auditFamilies() []*family {
	ops := newFamily("pgo_ssh_ops_total", "counter", "SSH ops authorized keys asked for, by service, op and result.")
	for k, n := range m.audit.ops {
		ops.add(float64(n), "service", k.service, "op", k.op, "result", k.result)
	}
	refused := newFamily("pgo_ssh_refused_total", "counter", "SSH attempts refused, by reason.")
	for reason, n := range m.audit.refusals {
		refused.add(float64(n), "reason", reason)
	}
	reloads := newFamily("pgo_config_reloads_total", "counter", "Config reloads by result: ok, or error (the running config stays).")
	for _, result := range []string{"ok", "error"} {
		reloads.add(float64(m.audit.reloads[result]), "result", result)
	}
	return []*family{ops, refused, reloads}
}
