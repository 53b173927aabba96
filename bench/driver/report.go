package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// row is one figure of the report. Lower is better for every figure.
type row struct {
	figure    string
	unit      string
	value     float64 // the median, or the percentile the figure names
	spread    string
	ratio     bool // a ratio to something measured in the same run: the first table
	target    float64
	hasTarget bool
	load      string // 1-minute load average while it was measured
	failed    string // why the figure could not be measured
	failures  int    // samples that failed (a refused call): the target is not met
}

func samplesRow(figure, unit string, samples []float64) row {
	return row{figure: figure, unit: unit, value: median(samples), spread: summarySpread(samples)}
}

func valueRow(figure, unit string, value float64, spread string) row {
	return row{figure: figure, unit: unit, value: value, spread: spread}
}

// ratioRow is the median of per-repeat ratios pgo/floor, paired as measured.
func ratioRow(figure string, ratios []float64) row {
	r := samplesRow(figure, "x", ratios)
	r.ratio = true
	return r
}

// ratioValue is one ratio of two figures of the run.
func ratioValue(figure string, ratio, target float64) row {
	return row{figure: figure, unit: "x", value: ratio, ratio: true}.within(target)
}

// within sets the target: the figure must be at or below it.
func (r row) within(target float64) row {
	r.target, r.hasTarget = target, true
	return r
}

// loadNow is the 1-minute load average, the first field of /proc/loadavg.
func loadNow() float64 {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) == 0 {
		return math.NaN()
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// loads formats the load averages seen while samples were taken.
func loads(l []float64) string {
	if len(l) == 0 {
		return fmt.Sprintf("%.2f", loadNow())
	}
	sorted := append([]float64(nil), l...)
	sort.Float64s(sorted)
	if sorted[0] == sorted[len(sorted)-1] {
		return fmt.Sprintf("%.2f", sorted[0])
	}
	return fmt.Sprintf("%.2f–%.2f", sorted[0], sorted[len(sorted)-1])
}

// add records rows, with the load average now unless they carry their own.
func (b *bench) add(rows ...row) {
	for _, r := range rows {
		if r.load == "" {
			r.load = loads(nil)
		}
		b.rows = append(b.rows, r)
	}
}

func (r row) verdict() string {
	switch {
	case r.failed != "" || math.IsNaN(r.value):
		return "FAILED"
	case !r.hasTarget:
		return ""
	case r.value <= r.target && r.failures == 0:
		return "meets"
	}
	return "MISSES"
}

func (r row) cells() []string {
	if r.failed != "" {
		first, _, _ := strings.Cut(r.failed, "\n")
		return []string{r.figure, "—", strings.ReplaceAll(first, "|", "/"), "", "FAILED", r.load}
	}
	target := ""
	if r.hasTarget {
		target = "≤ " + num(r.target) + " " + r.unit
	}
	return []string{r.figure, num(r.value) + " " + r.unit, r.spread, target, r.verdict(), r.load}
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func median(s []float64) float64 { return percentile(s, 50) }

// percentile is the nearest-rank percentile p of s.
func percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	sorted := append([]float64(nil), s...)
	sort.Float64s(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func summarySpread(s []float64) string {
	if len(s) == 0 {
		return ""
	}
	if len(s) == 1 {
		return "n=1"
	}
	sorted := append([]float64(nil), s...)
	sort.Float64s(sorted)
	return fmt.Sprintf("%s–%s, n=%d", num(sorted[0]), num(sorted[len(sorted)-1]), len(s))
}

func summary(s []float64) string {
	return fmt.Sprintf("median %s, %s", num(median(s)), summarySpread(s))
}

// quotedTargets are the targets not measured in the run: "today's" figures,
// which the issue (#14) asks pgo to stay at or below. Each says where and
// when it was taken.
const (
	quotedPingSeq    = 7.58 // ms, pgoctl -> pgod p50 sequential
	quotedPingConc   = 88.5 // ms, pgoctl -> pgod p50 with 32 clients at once
	quotedPeakRSS    = 15.3 // MiB, cold start N=200
	quotedPeakRSS8   = 27   // MiB, cold start N=800
	quotedWhere      = "BENCH.md, run of 2026-11-26 16:45 UTC, on an Intel Xeon with 2 cores and kernel 6.18.44-fc-v669"
	quotedWhere800   = "issue #14 as filed, which does not give its run's date"
	coldWithin       = 1.25 // cold start, pgo / git clone floor, wall and CPU
	idleWithin       = 1.2  // idle cycle, pgo / git ls-remote floor
	sshWithin        = 1.5  // pgod's SSH path against OpenSSH
	composePerDeploy = 2    // compose processes per deploy of an unchanged-image commit
)

// report is the tables with what they were measured on.
type report struct {
	header []string // "key: value" lines
	rows   []row
	notes  []string
}

var columns = []string{"Figure", "Value", "Spread (min–max, n)", "Target", "Verdict", "Load (1 min)"}

func (b *bench) report(started time.Time) report {
	pgoVersion, _ := exec.Command(b.o.pgo, "version").Output()
	socket := "no (pgod reads the engine through the docker CLI)"
	if b.socketFlag {
		socket = "yes (the substitute phases use bench/fakedocker -serve)"
	}
	return report{
		header: []string{
			"Date: " + started.UTC().Format("2006-01-02 15:04 UTC"),
			fmt.Sprintf("CPU: %s, %d cores", cpuModel(), runtime.NumCPU()),
			"Kernel: " + readTrim("/proc/sys/kernel/osrelease"),
			"Load average at start: " + b.loadStart + ", at end: " + readTrim("/proc/loadavg"),
			"pgo: " + strings.TrimSpace(string(pgoVersion)) + ", built with " + runtime.Version() + "; pgod --docker-socket: " + socket,
			fmt.Sprintf("Parameters: cold starts at N=%s (%d repeats, %d above N=200) with -t %s, -n %d for idle/push/ssh with -t %s, --max-parallel %d for pgod and the git floors, %d idle cycles, %d cycles with a change, %d webhook pushes, real engine N=%d, %d sequential pings, %d×%d concurrent, %d pgo check runs",
				joinInts(b.coldNs), b.o.repeats, b.o.largeRepeats, b.o.coldInterval, b.o.services, b.o.interval, b.parallel, b.o.cycles, b.o.changeCycles, b.o.hooks, b.o.engineN, b.o.pings, b.o.clients, b.o.perClient, b.o.checkRuns),
			fmt.Sprintf("Substitute docker: bench/fakedocker (records each call, returns at once); repositories: local bare, %s URLs", b.o.repoURL),
			"Units: memory in MiB (2^20 bytes); CPU s is user+system time; load is the 1-minute load average while the figure was taken",
			fmt.Sprintf("Targets quoted, not measured in this run: ping p50 %.2f ms sequential and %.1f ms with 32 clients, peak RSS %.1f MiB at N=200 (%s); peak RSS %d MiB at N=800 (%s)",
				quotedPingSeq, quotedPingConc, quotedPeakRSS, quotedWhere, quotedPeakRSS8, quotedWhere800),
			fmt.Sprintf("Run time: %s", time.Since(started).Round(time.Second)),
		},
		rows:  b.rows,
		notes: b.notes,
	}
}

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ", ")
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func readTrim(path string) string {
	data, _ := os.ReadFile(path)
	return strings.TrimSpace(string(data))
}

// tables splits the rows: ratios to what the run measured first, then the
// absolute figures, which move with the machine's load.
func (r report) tables() (ratios, absolute []row) {
	for _, row := range r.rows {
		if row.ratio {
			ratios = append(ratios, row)
		} else {
			absolute = append(absolute, row)
		}
	}
	return ratios, absolute
}

// verdicts counts the targets met and names the ones missed.
func (r report) verdicts() string {
	met, total := 0, 0
	var missed []string
	for _, row := range r.rows {
		if !row.hasTarget && row.failed == "" {
			continue
		}
		total++
		if row.verdict() == "meets" {
			met++
		} else {
			missed = append(missed, row.figure)
		}
	}
	s := fmt.Sprintf("%d of %d targets met", met, total)
	if len(missed) > 0 {
		s += "; missed or failed: " + strings.Join(missed, "; ")
	}
	return s
}

// text is the tables for the terminal, columns padded.
func (r report) text() string {
	var s strings.Builder
	s.WriteString("\n" + strings.Join(r.header, "\n") + "\n")
	ratios, absolute := r.tables()
	for _, t := range []struct {
		title string
		rows  []row
	}{{"Ratios, measured against floors of the same run", ratios}, {"Absolute figures", absolute}} {
		table := [][]string{columns}
		for _, row := range t.rows {
			table = append(table, row.cells())
		}
		widths := make([]int, len(columns))
		for _, cells := range table {
			for i, c := range cells {
				widths[i] = max(widths[i], len([]rune(c)))
			}
		}
		s.WriteString("\n" + t.title + "\n\n")
		for _, cells := range table {
			for i, c := range cells {
				fmt.Fprintf(&s, "%-*s  ", widths[i], c)
			}
			s.WriteString("\n")
		}
	}
	s.WriteString("\n" + r.verdicts() + "\n")
	for _, n := range r.notes {
		s.WriteString("note: " + n + "\n")
	}
	return s.String()
}

// markdown is BENCH.md: the tables, the notes, then the hand-written analysis.
func (r report) markdown(notesFile string) string {
	var s strings.Builder
	s.WriteString("# pgo benchmark\n\n")
	s.WriteString("Written by `make bench` (scripts/bench, bench/driver); do not edit by hand: the analysis\n")
	s.WriteString("below the tables comes from bench/notes.md. Every figure was measured in the run below;\n")
	s.WriteString("the ratios hold from run to run, the absolute figures move with the machine's load.\n\n")
	for _, h := range r.header {
		s.WriteString("- " + h + "\n")
	}
	ratios, absolute := r.tables()
	for _, t := range []struct {
		title string
		rows  []row
	}{{"Ratios, measured against floors of the same run", ratios}, {"Absolute figures", absolute}} {
		s.WriteString("\n## " + t.title + "\n\n")
		s.WriteString("| " + strings.Join(columns, " | ") + " |\n")
		s.WriteString("|" + strings.Repeat("---|", len(columns)) + "\n")
		for _, row := range t.rows {
			s.WriteString("| " + strings.Join(row.cells(), " | ") + " |\n")
		}
	}
	s.WriteString("\n**" + r.verdicts() + ".**\n")
	if len(r.notes) > 0 {
		s.WriteString("\nObserved during the run:\n\n")
		for _, n := range r.notes {
			s.WriteString("- " + n + "\n")
		}
	}
	if analysis, err := os.ReadFile(notesFile); err == nil {
		s.WriteString("\n" + string(analysis))
	}
	return s.String()
}
