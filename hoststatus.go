package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The host-wide view: one row per service, for operators. Over SSH it is
// "*//status" (operator keys only) and shows what pgod knows now; "pgo
// status" on the host shows the same table from the state files pgod last
// wrote, without SSH and without pgod running.

// hostTarget is the service name of the host-wide op: "*//status".
const hostTarget = "*"

// Service states in the host-wide view.
const (
	stateDeployed    = "deployed"
	stateFailing     = "failing"
	stateRejected    = "rejected"
	stateStopped     = "stopped"
	stateFrozen      = "frozen"
	stateNotDeployed = "not deployed yet"
)

// serviceState sums a service up in a word: stopped by its marker; rejected
// while the branch head is a commit the policy refused; failing while the
// last deploy did not succeed or fewer containers run than should; else
// deployed, or not deployed yet; frozen while it runs but does not follow
// its branch.
func serviceState(st serviceStatus) string {
	switch {
	case st.Stopped:
		return stateStopped
	case st.Frozen != nil && st.Running >= st.Desired && st.Deployed != "":
		return stateFrozen
	case st.Rejected != "" && st.Rejected == st.Upstream:
		return stateRejected
	case st.LastResult != "" && st.LastResult != resultOK && st.LastResult != resultRejected:
		return stateFailing
	case st.Deployed == "":
		return stateNotDeployed
	case st.Running < st.Desired:
		return stateFailing
	}
	return stateDeployed
}

// hostRow is one service's line of the host-wide view.
type hostRow struct {
	name, state, commit, age, result, containers string
}

// hostRowOf renders st at now; containers says "running/desired".
func hostRowOf(st serviceStatus, now time.Time) hostRow {
	r := hostRow{name: st.Name, state: serviceState(st), commit: "-", age: "-", result: "-",
		containers: fmt.Sprintf("%d/%d", st.Running, st.Desired)}
	if st.Deployed != "" {
		r.commit = short(st.Deployed)
		if !st.DeployedAt.IsZero() {
			r.age = shortAge(now.Sub(st.DeployedAt))
		}
	}
	if st.LastResult != "" {
		r.result = st.LastResult
	}
	return r
}

// formatHostRows renders rows as an aligned table with a header.
func formatHostRows(rows []hostRow) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tCOMMIT\tAGE\tLAST RESULT\tCONTAINERS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.state, r.commit, r.age, r.result, r.containers)
	}
	tw.Flush()
	return b.String()
}

// formatHostStatus is the host-wide view of what pgod knows now, sorted by name.
func formatHostStatus(sts []serviceStatus, now time.Time) string {
	slices.SortFunc(sts, func(a, b serviceStatus) int { return strings.Compare(a.Name, b.Name) })
	rows := make([]hostRow, len(sts))
	for i, st := range sts {
		rows[i] = hostRowOf(st, now)
	}
	table := formatHostRows(rows)
	if len(sts) > 0 && sts[0].Config != "" {
		table += "config commit " + sts[0].Config + "\n"
	}
	return table
}

// shortAge is d in its two largest units, as "3d4h", "2h5m", "40s".
func shortAge(d time.Duration) string {
	d = max(d, 0).Truncate(time.Second)
	days, hours, mins := int(d/(24*time.Hour)), int(d/time.Hour)%24, int(d/time.Minute)%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh%dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm", mins)
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

const statusUsage = `Usage: pgo status [-c CONFIG] [-d DIR] [--name HOST]

Lists every service of the config that this host runs, one row each: state,
deployed commit, age of the deploy, last result. It reads the state files pgod last wrote under
DIR/.pgo and the stop markers, so it works without pgod running; it does not
ask the engine, so CONTAINERS is "-" (pgoctl HOST:'*//status' shows them).
Runs as root, as the state files are root's.

Flags:
    -c, --config FILE      config file (default: the one pgod last applied from
                           its --config-repo, else /etc/pgo.toml)
    -d, --dir DIR          checkouts and state (default /var/lib/pgo)
        --name HOST        the host, as services' hosts lists name it
                           (default the machine's host name)
    -h, --help             print this text
`

// runStatus is "pgo status": the host-wide view from the saved state.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pgo status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var config, dir, host string
	fs.StringVar(&config, "c", "", "")
	fs.StringVar(&config, "config", "", "")
	fs.StringVar(&dir, "d", "/var/lib/pgo", "")
	fs.StringVar(&dir, "dir", "/var/lib/pgo", "")
	fs.StringVar(&host, "name", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, statusUsage)
			return 0
		}
		fmt.Fprintf(stderr, "pgo status: %v\n%s", err, statusUsage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgo status: unexpected argument %q\n%s", fs.Arg(0), statusUsage)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "pgo status: must run as root, as pgod's state files are root's; try: sudo pgo status (or pgoctl HOST:'*//status' with an operator key)")
		return 1
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	if config == "" {
		config = defaultStatusConfig(dir)
	}
	out, err := savedHostStatus(config, dir, host, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "pgo status: %v\n", err)
		return 1
	}
	io.WriteString(stdout, out)
	return 0
}

// defaultStatusConfig is the config pgod last applied from its config
// repository (configrepo.go) when it follows one, else /etc/pgo.toml.
func defaultStatusConfig(dir string) string {
	kept := filepath.Join(dir, ".pgo", ".config", "pgo.toml")
	if _, err := os.Stat(kept); err == nil {
		return kept
	}
	return "/etc/pgo.toml"
}

// savedHostStatus is the host-wide view of the services configured in
// config that host runs, from the state pgod saved under dir.
func savedHostStatus(config, dir, host string, now time.Time) (string, error) {
	cfg, err := loadConfig(config)
	if err != nil {
		return "", fmt.Errorf("%w (give the config pgod runs with: -c FILE)", err)
	}
	if host != "" {
		cfg.keepHost(host)
	}
	dir = filepath.Clean(dir)
	var rows []hostRow
	for _, svc := range cfg.Services {
		s, err := loadState(statePaths{filepath.Join(dir, ".pgo", svc.Name)})
		if err != nil {
			return "", fmt.Errorf("service %q: state: %w", svc.Name, err)
		}
		_, err = os.Stat(filepath.Join(dir, svc.Name+".stop"))
		st := serviceStatus{Name: svc.Name, Deployed: s.Deployed, DeployedAt: s.DeployedAt, Upstream: s.Upstream,
			LastResult: s.LastResult, Rejected: s.Rejected, Stopped: err == nil}
		r := hostRowOf(st, now)
		r.containers = "-" // only the engine knows; the state files do not say
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b hostRow) int { return strings.Compare(a.name, b.name) })
	return formatHostRows(rows), nil
}
