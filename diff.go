package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// diffProjects compares two rendered projects (compose config JSON) as the
// diff op shows them: services added, removed and changed, and for each
// changed one the keys that differ. Keys that may carry secrets
// (environment, labels, secrets, configs) are named by their entries'
// names only, never a value.

// secretKeys are service keys whose values are never shown.
var secretKeys = map[string]bool{"environment": true, "labels": true, "secrets": true, "configs": true, "env_file": true}

// shownKeys are service keys whose values a diff shows, shortened.
var shownKeys = map[string]bool{"image": true, "ports": true, "volumes": true, "command": true, "entrypoint": true}

// maxDiffValue bounds a value shown in a diff.
const maxDiffValue = 80

// projectDiff is what changes from one project to the next.
type projectDiff struct {
	added, removed []string
	changed        []serviceDiff
	networks       []string // "+name", "-name"
	volumes        []string
}

// serviceDiff is one changed service and what changed in it, one item a key.
type serviceDiff struct {
	name    string
	changes []string
}

type renderedProject struct {
	Services map[string]map[string]json.RawMessage `json:"services"`
	Networks map[string]json.RawMessage            `json:"networks"`
	Volumes  map[string]json.RawMessage            `json:"volumes"`
}

func diffProjects(running, next []byte) (projectDiff, error) {
	var a, b renderedProject
	if running != nil {
		if err := json.Unmarshal(running, &a); err != nil {
			return projectDiff{}, fmt.Errorf("the running project: %w", err)
		}
	}
	if err := json.Unmarshal(next, &b); err != nil {
		return projectDiff{}, fmt.Errorf("the upstream project: %w", err)
	}
	var d projectDiff
	for _, name := range slices.Sorted(maps.Keys(b.Services)) {
		old, ok := a.Services[name]
		if !ok {
			d.added = append(d.added, name)
			continue
		}
		if changes := diffService(old, b.Services[name]); len(changes) > 0 {
			d.changed = append(d.changed, serviceDiff{name: name, changes: changes})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(a.Services)) {
		if _, ok := b.Services[name]; !ok {
			d.removed = append(d.removed, name)
		}
	}
	d.networks = diffNames(a.Networks, b.Networks)
	d.volumes = diffNames(a.Volumes, b.Volumes)
	return d, nil
}

// diffService lists what differs between two renderings of a service.
func diffService(old, next map[string]json.RawMessage) []string {
	var changes, other []string
	keys := map[string]bool{}
	for k := range old {
		keys[k] = true
	}
	for k := range next {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		was, is := old[k], next[k]
		if jsonEqual(was, is) {
			continue
		}
		switch {
		case secretKeys[k]:
			changes = append(changes, k+": "+strings.Join(diffEntryNames(was, is), ", "))
		case shownKeys[k]:
			changes = append(changes, fmt.Sprintf("%s: %s -> %s", k, shortValue(was), shortValue(is)))
		default:
			other = append(other, k)
		}
	}
	if len(other) > 0 {
		changes = append(changes, "other: "+strings.Join(other, ", "))
	}
	return changes
}

// diffEntryNames names the entries of a map or list that were added (+),
// removed (-) or changed (~), by name only.
func diffEntryNames(was, is json.RawMessage) []string {
	out := nameChanges(namedEntries(was), namedEntries(is), func(x, y string) bool { return x == y })
	if len(out) == 0 {
		out = append(out, "changed")
	}
	return out
}

// namedEntries reads a map (name -> value) or a list of objects with a "source"
// or "target" (secrets, configs) or of "NAME=VALUE" strings, as name -> value.
func namedEntries(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) == nil {
		for k, v := range m {
			out[k] = string(v)
		}
		return out
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return out
	}
	for i, item := range list {
		var s string
		var obj struct{ Source, Target string }
		switch {
		case json.Unmarshal(item, &s) == nil:
			name, _, _ := strings.Cut(s, "=")
			out[name] = s
		case json.Unmarshal(item, &obj) == nil && (obj.Source != "" || obj.Target != ""):
			out[obj.Source+obj.Target] = string(item)
		default:
			out[fmt.Sprintf("#%d", i)] = string(item)
		}
	}
	return out
}

// diffNames names what b adds to a (+) and what it drops (-).
func diffNames(a, b map[string]json.RawMessage) []string { return nameChanges(a, b, nil) }

// nameChanges names, sorted, the keys b adds to a (+), those whose value
// changed when same is given (~), then those b drops (-).
func nameChanges[V any](a, b map[string]V, same func(V, V) bool) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(b)) {
		switch v, ok := a[n]; {
		case !ok:
			out = append(out, "+"+n)
		case same != nil && !same(v, b[n]):
			out = append(out, "~"+n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[n]; !ok {
			out = append(out, "-"+n)
		}
	}
	return out
}

func jsonEqual(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// shortValue shows a value in one short line, "-" when it is not set.
func shortValue(raw json.RawMessage) string {
	if raw == nil {
		return "-"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return escapeControl(oneLine(s, maxDiffValue))
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return "?"
	}
	return escapeControl(oneLine(b.String(), maxDiffValue))
}

func (d projectDiff) String() string {
	if len(d.added)+len(d.removed)+len(d.changed)+len(d.networks)+len(d.volumes) == 0 {
		return "no change to what runs\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "services: %d added, %d changed, %d removed\n", len(d.added), len(d.changed), len(d.removed))
	for _, n := range d.added {
		fmt.Fprintf(&b, "+ %s\n", n)
	}
	for _, n := range d.removed {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	for _, s := range d.changed {
		fmt.Fprintf(&b, "~ %s: %s\n", s.name, escapeControl(strings.Join(s.changes, "; ")))
	}
	if len(d.networks) > 0 {
		fmt.Fprintf(&b, "networks: %s\n", strings.Join(d.networks, ", "))
	}
	if len(d.volumes) > 0 {
		fmt.Fprintf(&b, "volumes: %s\n", strings.Join(d.volumes, ", "))
	}
	return b.String()
}
