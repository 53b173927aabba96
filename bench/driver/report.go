package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// row is one figure of the table. Lower is better for every figure.
type row struct {
	figure string
	unit   string
	value  float64 // the median, or the percentile the figure names
	spread string
	ref    float64 // the reference implementation's figure; 0: none
	target float64 // what to beat; 0: none
	failed string  // why the figure could not be measured
}

func samplesRow(figure, unit string, samples []float64, ref, factor float64) row {
	return valueRow(figure, unit, median(samples), summarySpread(samples), ref, factor)
}

func valueRow(figure, unit string, value float64, spread string, ref, factor float64) row {
	r := row{figure: figure, unit: unit, value: value, spread: spread, ref: ref}
	if ref > 0 && factor > 0 {
		r.target = ref / factor
	}
	return r
}

func ratioRow(figure string, ratio float64) row {
	return row{figure: figure, unit: "x", value: ratio, target: sshWithin}
}

func (r row) verdict() string {
	switch {
	case r.failed != "":
		return "FAILED"
	case r.target > 0 && r.value <= r.target:
		return "meets target"
	case r.ref > 0 && r.value <= r.ref:
		return "beats reference, misses target"
	case r.target > 0:
		return "MISSES"
	}
	return ""
}

func (r row) cells() []string {
	if r.failed != "" {
		first, _, _ := strings.Cut(r.failed, "\n")
		return []string{r.figure, "—", strings.ReplaceAll(first, "|", "/"), "", "", "FAILED"}
	}
	ref, target := "", ""
	if r.ref > 0 {
		ref = num(r.ref) + " " + r.unit
	}
	if r.target > 0 {
		target = "≤ " + num(r.target) + " " + r.unit
	}
	return []string{r.figure, num(r.value) + " " + r.unit, r.spread, ref, target, r.verdict()}
}

func num(v float64) string {
	switch a := math.Abs(v); {
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
	sorted := append([]float64(nil), s...)
	sort.Float64s(sorted)
	return fmt.Sprintf("%s–%s, n=%d", num(sorted[0]), num(sorted[len(sorted)-1]), len(s))
}

func summary(s []float64) string {
	return fmt.Sprintf("median %s, %s", num(median(s)), summarySpread(s))
}

// report is the table with what it was measured on.
type report struct {
	header []string // "key: value" lines
	rows   []row
	notes  []string
}

var columns = []string{"Figure", "Median", "Spread (min–max)", "Reference", "Target", "Verdict"}

func (b *bench) report(started time.Time) report {
	pgoVersion, _ := exec.Command(b.o.pgo, "version").Output()
	return report{
		header: []string{
			"Date: " + started.UTC().Format("2006-01-02 15:04 UTC"),
			fmt.Sprintf("CPU: %s, %d cores", cpuModel(), runtime.NumCPU()),
			"Kernel: " + readTrim("/proc/sys/kernel/osrelease"),
			"Load average at start: " + b.loadStart + ", at end: " + readTrim("/proc/loadavg"),
			"pgo: " + strings.TrimSpace(string(pgoVersion)) + ", built with " + runtime.Version(),
			fmt.Sprintf("Parameters: N=%d, -t %s, %d cold starts, %d quiet cycles, %d cycles with a change, %d webhook pushes, %d sequential pings, %d×%d concurrent, %d pgo check runs",
				b.o.services, b.o.interval, b.o.repeats, b.o.cycles, b.o.changeCycles, b.o.hooks, b.o.pings, b.o.clients, b.o.perClient, b.o.checkRuns),
			fmt.Sprintf("Substitute docker: bench/fakedocker (records each call, returns at once); repositories: local bare, %s", b.o.repoURL),
			fmt.Sprintf("Run time: %s", time.Since(started).Round(time.Second)),
		},
		rows:  b.rows,
		notes: b.notes,
	}
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

// text is the table for the terminal, columns padded.
func (r report) text() string {
	table := [][]string{columns}
	for _, row := range r.rows {
		table = append(table, row.cells())
	}
	widths := make([]int, len(columns))
	for _, cells := range table {
		for i, c := range cells {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var s strings.Builder
	s.WriteString("\n" + strings.Join(r.header, "\n") + "\n\n")
	for _, cells := range table {
		for i, c := range cells {
			fmt.Fprintf(&s, "%-*s  ", widths[i], c)
		}
		s.WriteString("\n")
	}
	for _, n := range r.notes {
		s.WriteString("note: " + n + "\n")
	}
	return s.String()
}

// markdown is BENCH.md: the table, the notes, then the hand-written analysis.
func (r report) markdown(notesFile string) string {
	var s strings.Builder
	s.WriteString("# pgo benchmark\n\n")
	s.WriteString("Written by `make bench` (scripts/bench, bench/driver); do not edit by hand: the analysis\n")
	s.WriteString("below the table comes from bench/notes.md.\n\n")
	for _, h := range r.header {
		s.WriteString("- " + h + "\n")
	}
	s.WriteString("\n| " + strings.Join(columns, " | ") + " |\n")
	s.WriteString("|" + strings.Repeat("---|", len(columns)) + "\n")
	for _, row := range r.rows {
		s.WriteString("| " + strings.Join(row.cells(), " | ") + " |\n")
	}
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
