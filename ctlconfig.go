package main

// pgoctl's client config: short names for hosts and named groups of them,
// so that "pgoctl @prod:shop//ps" reaches every host of prod.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ctlConfig is a parsed pgoctl.toml.
type ctlConfig struct {
	path    string
	missing bool                // the file does not exist: no hosts, no groups
	hosts   map[string]*ctlHost // by name
	groups  map[string]*ctlGroup
}

// ctlHost is one [[hosts]] table: a short name and where it is.
type ctlHost struct {
	name    string
	address string // "host" or "host:port"; the name when the table has none
	line    int
}

// ctlGroup is one [[groups]] table.
type ctlGroup struct {
	name    string
	members []ctlMember
	line    int
}

// ctlMember is one entry of a group's hosts: a host name or "@group".
type ctlMember struct {
	word string
	line int
}

// ctlTarget is one host a command goes to: its name as the operator knows
// it (the prefix of its output lines) and the address to dial.
type ctlTarget struct {
	name, addr string
}

var (
	ctlTopKeys   = []string{"hosts", "groups"}
	ctlHostKeys  = []string{"name", "address"}
	ctlGroupKeys = []string{"name", "hosts"}

	// ctlNameRE is what a [[hosts]] or [[groups]] name may be: a word that
	// cannot be mistaken for a list, a group or an address with a port.
	ctlNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$`)
)

// defaultCtlConfig is ~/.config/pgo/pgoctl.toml.
func defaultCtlConfig(home string) string {
	return filepath.Join(home, ".config", "pgo", "pgoctl.toml")
}

// loadCtlConfig reads path. A missing file is an empty config unless the
// operator named it (required): a mistyped --config must not quietly mean
// "no groups".
func loadCtlConfig(path string, required bool) (*ctlConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return &ctlConfig{path: path, missing: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	return parseCtlConfig(path, data)
}

// parseCtlConfig parses and checks a pgoctl.toml; path is for messages.
// Every problem is reported, in file order, each with its line.
func parseCtlConfig(path string, data []byte) (*ctlConfig, error) {
	root, err := parseTOMLFile(path, data)
	if err != nil {
		return nil, err
	}
	c := &configChecker{path: path}
	cfg := &ctlConfig{path: path, hosts: map[string]*ctlHost{}, groups: map[string]*ctlGroup{}}
	for _, key := range root.Keys {
		v := root.Values[key]
		switch key {
		case "hosts":
			for i, t := range ctlTables(c, key, v) {
				cfg.addHost(c, i, t)
			}
		case "groups":
			for i, t := range ctlTables(c, key, v) {
				cfg.addGroup(c, i, t)
			}
		default:
			c.errorf(v.Line, "", "%s", unknownKey(key, v.Line, ctlTopKeys))
		}
	}
	cfg.checkMembers(c)
	if len(c.errs) > 0 {
		return nil, c.err()
	}
	return cfg, nil
}

// ctlTables returns the tables of an array of tables ([[hosts]]), reporting anything else.
func ctlTables(c *configChecker, key string, v *tomlValue) []*tomlValue {
	if v.Kind != tomlKindArray {
		c.errorf(v.Line, "", "%s must be an array of tables ([[%s]]), not %s", key, key, v.Kind)
		return nil
	}
	var tables []*tomlValue
	for i, elem := range v.Array {
		if elem.Kind != tomlKindTable {
			c.errorf(elem.Line, "", "%s[%d] must be a table, not %s", key, i, elem.Kind)
			continue
		}
		tables = append(tables, elem)
	}
	return tables
}

// ctlString returns a string value, reporting anything else.
func ctlString(c *configChecker, label, key string, v *tomlValue) (string, bool) {
	if v.Kind != tomlKindString {
		c.errorf(v.Line, label, "%s must be a string, not %s", key, v.Kind)
		return "", false
	}
	return v.Str, true
}

// ctlName returns the name of a [[hosts]] or [[groups]] table, reporting a missing or bad one.
func ctlName(c *configChecker, label string, v *tomlValue) (string, bool) {
	nv, ok := v.Table.Values["name"]
	if !ok {
		c.errorf(v.Line, label, "name is required")
		return "", false
	}
	name, ok := ctlString(c, label, "name", nv)
	if ok && !ctlNameRE.MatchString(name) {
		c.errorf(nv.Line, label, "name %q is not allowed: use letters, digits, \".\", \"-\" and \"_\", starting with a letter or digit", name)
		return "", false
	}
	return name, ok
}

func (cfg *ctlConfig) addHost(c *configChecker, i int, v *tomlValue) {
	label := fmt.Sprintf("host #%d", i+1)
	name, named := ctlName(c, label, v)
	if named {
		label = fmt.Sprintf("host %q", name)
	}
	h := &ctlHost{name: name, address: name, line: v.Line}
	for _, key := range v.Table.Keys {
		kv := v.Table.Values[key]
		switch key {
		case "name":
		case "address":
			if addr, ok := ctlString(c, label, key, kv); ok {
				if msg := addressProblem(addr); msg != "" {
					c.errorf(kv.Line, label, "address %q %s", addr, msg)
				}
				h.address = addr
			}
		default:
			c.errorf(kv.Line, label, "%s", unknownKey(key, kv.Line, ctlHostKeys))
		}
	}
	if !named {
		return
	}
	if first, dup := cfg.hosts[name]; dup {
		c.errorf(v.Line, label, "name is already used by the host at line %d", first.line)
		return
	}
	cfg.hosts[name] = h
}

func (cfg *ctlConfig) addGroup(c *configChecker, i int, v *tomlValue) {
	label := fmt.Sprintf("group #%d", i+1)
	name, named := ctlName(c, label, v)
	if named {
		label = fmt.Sprintf("group %q", name)
	}
	g := &ctlGroup{name: name, line: v.Line}
	for _, key := range v.Table.Keys {
		kv := v.Table.Values[key]
		switch key {
		case "name":
		case "hosts":
			g.members = ctlMembers(c, label, kv)
		default:
			c.errorf(kv.Line, label, "%s", unknownKey(key, kv.Line, ctlGroupKeys))
		}
	}
	if _, ok := v.Table.Values["hosts"]; !ok {
		c.errorf(v.Line, label, `hosts is required: the host names and "@group"s it holds`)
	}
	if !named {
		return
	}
	if first, dup := cfg.groups[name]; dup {
		c.errorf(v.Line, label, "name is already used by the group at line %d", first.line)
		return
	}
	cfg.groups[name] = g
}

// ctlMembers decodes a group's hosts: a non-empty array of host names and "@group"s.
func ctlMembers(c *configChecker, label string, v *tomlValue) []ctlMember {
	if v.Kind != tomlKindArray {
		c.errorf(v.Line, label, "hosts must be an array of strings, not %s", v.Kind)
		return nil
	}
	if len(v.Array) == 0 {
		c.errorf(v.Line, label, "hosts is empty: a group needs at least one host")
	}
	var members []ctlMember
	for i, e := range v.Array {
		m, ok := ctlString(c, label, fmt.Sprintf("hosts[%d]", i), e)
		if !ok {
			continue
		}
		if !ctlNameRE.MatchString(strings.TrimPrefix(m, "@")) {
			c.errorf(e.Line, label, "hosts[%d]: %q is neither a host name nor \"@group\"", i, m)
			continue
		}
		members = append(members, ctlMember{word: m, line: e.Line})
	}
	return members
}

// addressProblem says what is wrong with "host" or "host:port", or "".
func addressProblem(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil { // no port, or an IPv6 address without one
		host, port = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), ""
	}
	if host == "" || strings.ContainsAny(host, " \t\n,/@[]") {
		return `is not "host" or "host:port"`
	}
	if n, err := strconv.Atoi(port); port != "" && (err != nil || n < 1 || n > 65535) {
		return "has no valid port number"
	}
	return ""
}

// checkMembers refuses groups naming groups that do not exist, and cycles.
func (cfg *ctlConfig) checkMembers(c *configChecker) {
	for _, g := range cfg.sortedGroups() {
		for _, m := range g.members {
			if sub, ok := strings.CutPrefix(m.word, "@"); ok && cfg.groups[sub] == nil {
				c.errorf(m.line, fmt.Sprintf("group %q", g.name), "hosts: no group %q is defined", sub)
			}
		}
	}
	visits := map[string]int{}
	for _, g := range cfg.sortedGroups() {
		cfg.findCycles(c, g.name, visits, nil)
	}
}

// Marks of findCycles' depth-first walk.
const (
	groupOnPath  = 1
	groupVisited = 2
)

// findCycles walks the groups name reaches and reports each cycle it finds, at
// the group it starts and ends with; path holds the groups on the way to name.
func (cfg *ctlConfig) findCycles(c *configChecker, name string, visits map[string]int, path []string) {
	if visits[name] != 0 {
		return
	}
	visits[name] = groupOnPath
	path = append(path, name)
	for _, m := range cfg.groups[name].members {
		sub, ok := strings.CutPrefix(m.word, "@")
		switch {
		case !ok || cfg.groups[sub] == nil:
		case visits[sub] == groupOnPath:
			cycle := append(slices.Clone(path[slices.Index(path, sub):]), sub)
			g := cfg.groups[sub]
			c.errorf(g.line, fmt.Sprintf("group %q", g.name), "hosts: groups name each other in a cycle: @%s",
				strings.Join(cycle, " -> @"))
		default:
			cfg.findCycles(c, sub, visits, path)
		}
	}
	visits[name] = groupVisited
}

// sortedGroups lists the groups in file order.
func (cfg *ctlConfig) sortedGroups() []*ctlGroup {
	var groups []*ctlGroup
	for _, g := range cfg.groups {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b *ctlGroup) int { return a.line - b.line })
	return groups
}

// resolve turns the host words of a target (host names and "@group"s) into
// the hosts to run on, groups expanded, each once in the order first named;
// port is used for addresses that have none.
func (cfg *ctlConfig) resolve(words []string, port string) ([]ctlTarget, error) {
	var names []string
	for _, w := range words {
		expanded, err := cfg.expand(w)
		if err != nil {
			return nil, err
		}
		for _, n := range expanded {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	targets := make([]ctlTarget, len(names))
	for i, n := range names {
		targets[i] = ctlTarget{name: n, addr: cfg.address(n, port)}
	}
	return targets, nil
}

// expand returns the host names a word stands for: itself, or a group's
// hosts. Groups are free of cycles once parsed.
func (cfg *ctlConfig) expand(word string) ([]string, error) {
	name, isGroup := strings.CutPrefix(word, "@")
	if !isGroup {
		return []string{word}, nil
	}
	g := cfg.groups[name]
	switch {
	case g == nil && cfg.missing:
		return nil, fmt.Errorf("%s: no such group: %s does not exist (define groups there as [[groups]] tables, see pgoctl -h)", word, cfg.path)
	case g == nil:
		return nil, fmt.Errorf("%s: no such group in %s (it defines: %s)", word, cfg.path, cfg.groupNames())
	}
	var hosts []string
	for _, m := range g.members {
		sub, err := cfg.expand(m.word)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, sub...)
	}
	return hosts, nil
}

// groupNames lists the groups defined, for a hint.
func (cfg *ctlConfig) groupNames() string {
	var names []string
	for _, g := range cfg.sortedGroups() {
		names = append(names, "@"+g.name)
	}
	if len(names) == 0 {
		return "no group"
	}
	return strings.Join(names, ", ")
}

// address is where the host called name is: its [[hosts]] address, with
// port when that has none; else the name itself on port.
func (cfg *ctlConfig) address(name, port string) string {
	h := cfg.hosts[name]
	if h == nil {
		return net.JoinHostPort(name, port)
	}
	if _, _, err := net.SplitHostPort(h.address); err == nil {
		return h.address
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(h.address, "["), "]"), port)
}
