package main

// How big a compose file grows once compose has expanded it. YAML aliases
// copy what they point at wherever they stand (in mappings, in sequences, as
// merge sources), and variables copy their values; both multiply. A file of
// a few hundred bytes can stand for billions of nodes, and compose expands
// all of them before anything else: minutes of CPU and gigabytes of memory
// for one "docker compose config". The pre-check adds up the expanded size,
// without expanding anything, and refuses a file that grows past what a
// compose file may be.

import (
	"bufio"
	"bytes"
	"math"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

const (
	// maxExpandedBytes bounds the text of a project once expanded: no more
	// than the biggest compose file pgo reads.
	maxExpandedBytes = maxComposeFile
	// maxExpandedNodes bounds the YAML nodes of a project once expanded.
	maxExpandedNodes = 1_000_000
)

// growth is the size of something once expanded.
type growth struct{ nodes, bytes int64 }

func (g growth) plus(o growth) growth {
	return growth{saturatingAdd(g.nodes, o.nodes), saturatingAdd(g.bytes, o.bytes)}
}

func (g growth) tooBig() bool { return g.nodes > maxExpandedNodes || g.bytes > maxExpandedBytes }

func saturatingAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// expander sizes YAML nodes as compose would expand them, each anchored
// node once.
type expander struct {
	vars map[string]int64 // variable -> size of its expanded value
	memo map[*yaml.Node]growth
	busy map[*yaml.Node]bool // on the way down, to catch an alias to itself
}

func newExpander(vars map[string]int64) *expander {
	return &expander{vars: vars, memo: map[*yaml.Node]growth{}, busy: map[*yaml.Node]bool{}}
}

// size returns what n stands for once its aliases and variables are expanded.
func (e *expander) size(n *yaml.Node) growth {
	if n == nil {
		return growth{}
	}
	if g, ok := e.memo[n]; ok {
		return g
	}
	if e.busy[n] {
		return growth{math.MaxInt64, math.MaxInt64}
	}
	e.busy[n] = true
	var g growth
	if n.Kind == yaml.AliasNode {
		g = e.size(n.Alias)
	} else {
		g = growth{1, saturatingAdd(int64(len(n.Value)), substituted(n.Value, e.vars))}
		for _, c := range n.Content {
			g = g.plus(e.size(c))
		}
	}
	delete(e.busy, n)
	e.memo[n] = g
	return g
}

// variableRE finds where compose may substitute a variable: $NAME, ${NAME},
// ${NAME:-default} and the like, nested ones included. "$$" escapes count
// too: an overestimate, never an underestimate.
var variableRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// substituted returns the bytes variables add to s.
func substituted(s string, vars map[string]int64) int64 {
	if !strings.Contains(s, "$") {
		return 0
	}
	var n int64
	for _, m := range variableRE.FindAllStringSubmatch(s, -1) {
		n = saturatingAdd(n, vars[m[1]])
	}
	return n
}

// envSizes returns the sizes of NAME=VALUE assignments (pgo.toml's env).
func envSizes(env []string) map[string]int64 {
	vars := map[string]int64{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = int64(len(v))
		}
	}
	return vars
}

// expandEnv sizes the assignments of a dotenv file, which compose expands
// in order, each value seeing the variables before it; vars gets each
// variable's expanded size. A line that is no assignment (inside a quoted
// multi-line value) counts for the variable before it. It returns the bytes
// the file adds to the project and the first line whose value grows past
// maxExpandedBytes, 0 when none does.
func expandEnv(data []byte, vars map[string]int64) (added int64, line int) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxComposeFile+1)
	current := ""
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		var grown int64
		if m := envKeyRE.FindStringSubmatchIndex(text); m != nil {
			current = text[m[2]:m[3]]
			value := text[m[1]:]
			vars[current] = saturatingAdd(int64(len(value)), substituted(value, vars))
			grown = saturatingAdd(int64(m[1]), vars[current])
		} else {
			grown = saturatingAdd(int64(len(text)), substituted(text, vars))
			if current != "" {
				vars[current] = saturatingAdd(vars[current], grown)
			}
		}
		added = saturatingAdd(added, grown)
		if current != "" && vars[current] > maxExpandedBytes && line == 0 {
			line = n
		}
	}
	return added, line
}
