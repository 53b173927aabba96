package main

// Reading compose's canonical JSON: the policy looks at it through these
// helpers, which never panic on a value of the wrong type; encodeProject
// writes a changed project back.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// decodeProject parses canonical JSON, keeping numbers exact.
func decodeProject(project []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(project))
	dec.UseNumber()
	var p map[string]any
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the project")
	}
	if p == nil {
		return nil, fmt.Errorf("the project is not a JSON object")
	}
	return p, nil
}

// encodeProject writes a project as JSON again, "<" and ">" as they are
// (compose reads them back either way, and people read the files), each
// level indented by indent ("" for one line).
func encodeProject(p map[string]any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func jsonObject(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func jsonList(v any) []any {
	l, _ := v.([]any)
	return l
}

// jsonString returns a scalar as compose would read it back.
func jsonString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}

// truthy reports whether a flag is set. Compose's canonical JSON has real
// booleans; anything else that is not plainly false or empty counts as set,
// so that a value compose might read as true is never waved through.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "", "false", "0", "no", "off", "n":
			return false
		}
	case json.Number:
		return v.String() != "0"
	}
	return true
}

// sortedKeys is slices.Sorted(maps.Keys(m)), kept for the config's callers.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// serviceOf names the compose service a key path belongs to.
func serviceOf(path string) string {
	rest, ok := strings.CutPrefix(path, "services.")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ".")
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	return name
}
