package main

// The raw compose file, before compose reads it: pgo finds the one file,
// reads it (and .env, and env files) as root without following it out of
// the checkout, and refuses what would make compose read more than it (include,
// extends with file:, custom tags, COMPOSE_* settings) or grow without bound.
// Key lines are recorded here to put on the findings of later stages.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// composeFileNames are the compose file names pgo looks for, in this order,
// when a service does not name its file with the compose key.
var composeFileNames = []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"}

// maxComposeFile bounds what pgo reads as root before anything else looks at it.
const maxComposeFile = 4 << 20

// composeSource is a pre-checked compose file: where it is, what is wrong with it
// before rendering, and where its keys are, to put line numbers on violations.
type composeSource struct {
	root       string           // the checkout, symlinks resolved
	file       string           // absolute path handed to compose with -f, symlinks resolved
	rel        string           // path relative to the checkout, for messages
	lines      map[string]int   // key path (services.web.privileged) -> line of the key
	vars       map[string]int64 // variables compose may substitute -> their size, expanded
	violations []violation
}

// precheck finds the compose file of a checkout and refuses, before compose
// reads it, what would make compose load anything beyond that one file
// (include, extends with file:, custom YAML tags, a .env setting COMPOSE_*),
// and what would make it grow without bound (alias and variable bombs).
func precheck(checkout string, svc *Service) (*composeSource, error) {
	root, err := filepath.EvalSymlinks(checkout)
	if err != nil {
		return nil, fmt.Errorf("checkout: %w", err)
	}
	rel, err := findComposeFile(root, svc.Compose)
	if err != nil {
		return nil, err
	}
	src := &composeSource{root: root, rel: rel, lines: map[string]int{}, vars: envSizes(svc.Env)}
	// pgo hands compose the file's real path: compose itself opens it, and
	// pgod's checkout does not follow symlinks.
	data, resolved, v := readInCheckout(root, rel, true)
	if v != nil {
		src.violations = append(src.violations, *v)
		return src, nil
	}
	src.file = resolved
	src.violations = append(src.violations, src.precheckEnvFile()...)
	src.violations = append(src.violations, src.precheckYAML(data)...)
	return src, nil
}

// findComposeFile returns the compose file's path relative to root.
func findComposeFile(root, compose string) (string, error) {
	if compose != "" {
		clean := filepath.Clean(compose)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return "", fmt.Errorf("compose file %q: not a relative path inside the repository", compose)
		}
		if _, err := os.Lstat(filepath.Join(root, clean)); err != nil {
			return "", fmt.Errorf("compose file %q: %w", compose, unwrapPathError(err))
		}
		return clean, nil
	}
	for _, name := range composeFileNames {
		if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
			return name, nil
		}
	}
	return "", fmt.Errorf("no compose file: none of %s in the repository", strings.Join(composeFileNames, ", "))
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readInCheckout reads a regular file of the checkout, refusing one that
// resolves outside it: pgo reads as root, and a symlink to /etc/shadow must
// not make it read, let alone quote, another file. Unless followLinks, a
// symlink on the way is refused too: compose opens such files itself, by
// the path written, and pgod's checkout does not follow symlinks.
func readInCheckout(root, rel string, followLinks bool) (data []byte, resolved string, v *violation) {
	refuse := func(format string, args ...any) ([]byte, string, *violation) {
		return nil, "", &violation{File: rel, Msg: fmt.Sprintf(format, args...)}
	}
	resolved, link, err := walkHostPath(filepath.Join(root, rel), []string{root})
	switch {
	case err != nil:
		return refuse("cannot resolve: %v", unwrapPathError(err))
	case !pathWithin(resolved, root):
		return refuse("is a symlink out of the checkout, which is not allowed")
	case link != nil && !followLinks:
		return refuse("passes through the symlink %s -> %s; pgod's checkout does not follow symlinks, so commit the file itself or name %s", strings.TrimPrefix(link.path, root+"/"), link.target, strings.TrimPrefix(resolved, root+"/"))
	}
	// Stat before opening: opening a FIFO would block.
	if fi, err := os.Stat(resolved); err != nil || !fi.Mode().IsRegular() {
		return refuse("is not a regular file")
	}
	f, err := os.Open(resolved)
	if err != nil {
		return refuse("cannot read: %v", unwrapPathError(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return refuse("is not a regular file")
	}
	data, err = io.ReadAll(io.LimitReader(f, maxComposeFile+1))
	if err != nil {
		return refuse("cannot read: %v", unwrapPathError(err))
	}
	if len(data) > maxComposeFile {
		return refuse("is larger than %d bytes", maxComposeFile)
	}
	return data, resolved, nil
}

// envKeyRE finds the variable name of a .env line as compose's dotenv parser
// reads it: optional "export", then the name, then = or :.
var envKeyRE = regexp.MustCompile(`^\s*(?:export\s+)?([^\s=:#]+)\s*[=:]`)

// precheckEnvFile refuses a .env (read by compose itself from the project
// directory) that sets COMPOSE_* or DOCKER_* variables: COMPOSE_FILE,
// COMPOSE_PROFILES, DOCKER_HOST and friends change which files compose loads or
// which engine it talks to, behind the back of the pre-check. Its variables
// join those the compose file may substitute.
func (s *composeSource) precheckEnvFile() []violation {
	if _, err := os.Lstat(filepath.Join(s.root, ".env")); err != nil {
		return nil
	}
	data, _, v := readInCheckout(s.root, ".env", false)
	if v != nil {
		return []violation{*v}
	}
	vs := checkEnvFile(".env", data)
	_, line := expandEnv(data, s.vars)
	if line > 0 {
		vs = append(vs, violation{File: ".env", Line: line, Msg: fmt.Sprintf("this value grows past %d bytes once its variables are expanded", maxExpandedBytes)})
	}
	return vs
}

// checkEnvFile checks every line that looks like an assignment, including
// lines inside multi-line quoted values: failing closed is cheaper than
// reimplementing the dotenv quoting rules.
func checkEnvFile(name string, data []byte) []violation {
	var vs []violation
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxComposeFile)
	for n := 1; sc.Scan(); n++ {
		m := envKeyRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		key := strings.ToUpper(m[1])
		if strings.HasPrefix(key, "COMPOSE_") || strings.HasPrefix(key, "DOCKER_") {
			vs = append(vs, violation{File: name, Line: n, Msg: fmt.Sprintf("setting %s is not allowed: it changes how compose loads the project", m[1])})
		}
	}
	if err := sc.Err(); err != nil {
		vs = append(vs, violation{File: name, Msg: fmt.Sprintf("cannot read: %v", err)})
	}
	return vs
}

// maxYAMLNodes bounds the work of the walks below, over all documents of a
// file; how far aliases make a file grow is bounded before they start.
const maxYAMLNodes = 1000000

// precheckYAML parses every document of the file (compose merges them all)
// and records key lines for later violations.
func (s *composeSource) precheckYAML(data []byte) []violation {
	docs, v := s.decodeDocuments(data)
	if v != nil {
		return []violation{*v}
	}
	// Size first: the walks below follow merge keys, and compose follows
	// everything.
	grow := newExpander(s.vars)
	var grown growth
	for _, doc := range docs {
		grown = grown.plus(grow.size(doc))
	}
	if grown.tooBig() {
		return []violation{s.bomb()}
	}
	var vs []violation
	var roots []*yaml.Node
	budget := maxYAMLNodes
	for _, doc := range docs {
		vs = append(vs, s.checkNodes(doc, &budget)...)
		if budget <= 0 {
			return append(vs, violation{File: s.rel, Msg: "too many YAML nodes"})
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			if !(root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
				vs = append(vs, violation{File: s.rel, Line: root.Line, Msg: "the compose file is not a YAML mapping"})
			}
			continue
		}
		vs = append(vs, s.checkTop(root, &grown, &budget)...)
		s.index("", root, 0, &budget)
		if budget <= 0 {
			return append(vs, violation{File: s.rel, Msg: "too many YAML nodes"})
		}
		roots = append(roots, root)
	}
	if grown.tooBig() {
		vs = append(vs, s.bomb())
	}
	if len(roots) == 1 {
		s.indexItems(roots[0], &budget)
	}
	return vs
}

// decodeDocuments parses every YAML document of the file.
func (s *composeSource) decodeDocuments(data []byte) ([]*yaml.Node, *violation) {
	var docs []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, &violation{File: s.rel, Line: yamlProblemLine(data, err), Msg: fmt.Sprintf("invalid YAML: %s", yamlErrorText(err))}
		}
		docs = append(docs, &doc)
	}
}

// bomb is the finding for a file that grows past the bounds once expanded.
func (s *composeSource) bomb() violation {
	return violation{File: s.rel, Msg: fmt.Sprintf("the project grows past %d bytes or %d YAML nodes once its aliases, variables and env files are expanded (an alias or variable bomb?); write the values out, or use fewer aliases", maxExpandedBytes, maxExpandedNodes)}
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlProblemLine finds the line of a YAML syntax error. yaml.v3 reports the
// start of the enclosing block (0-based, for parser errors) rather than the
// problem, so the line is found as the shortest prefix of the file that
// fails with the same message; the error's own line is the fallback.
func yamlProblemLine(data []byte, err error) int {
	lines := strings.SplitAfter(string(data), "\n")
	_, msg, found := strings.Cut(yamlErrorText(err), ": ") // drop "line N: "
	if !found || len(lines) > 100000 {
		return yamlErrorLine(err)
	}
	n := sort.Search(len(lines), func(k int) bool {
		var node yaml.Node
		e := yaml.Unmarshal([]byte(strings.Join(lines[:k+1], "")), &node)
		return e != nil && strings.HasSuffix(e.Error(), msg)
	})
	if n == len(lines) {
		return yamlErrorLine(err)
	}
	return n + 1
}

func yamlErrorLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func yamlErrorText(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// standardTags are the YAML core schema tags; anything else (compose's !reset
// and !override included) changes what a value means and is refused.
var standardTags = map[string]bool{
	"!!str": true, "!!int": true, "!!bool": true, "!!null": true, "!!float": true,
	"!!map": true, "!!seq": true, "!!merge": true,
}

// checkNodes walks the document as written (aliases not followed) for custom
// tags and duplicate keys.
func (s *composeSource) checkNodes(n *yaml.Node, budget *int) []violation {
	var vs []violation
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if *budget--; *budget <= 0 {
			return
		}
		if n.Style&yaml.TaggedStyle != 0 && !standardTags[n.ShortTag()] {
			vs = append(vs, violation{File: s.rel, Line: n.Line, Msg: fmt.Sprintf("YAML tag %s is not allowed", n.Tag)})
		}
		if n.Kind == yaml.MappingNode {
			seen := map[string]bool{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind != yaml.ScalarNode {
					vs = append(vs, violation{File: s.rel, Line: k.Line, Msg: "a mapping key that is not a plain value is not allowed"})
					continue
				}
				if seen[k.Value] && k.Value != "<<" {
					vs = append(vs, violation{File: s.rel, Line: k.Line, Msg: fmt.Sprintf("duplicate key %q is not allowed", k.Value)})
				}
				seen[k.Value] = true
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return vs
}

// checkTop refuses include and extends with file:, seeing through anchors and
// merge keys the way compose's own YAML decoding does.
func (s *composeSource) checkTop(root *yaml.Node, grown *growth, budget *int) []violation {
	var vs []violation
	for _, e := range entries(root, budget) {
		switch e.key.Value {
		case "include":
			vs = append(vs, violation{File: s.rel, Line: e.key.Line, Msg: "include is not allowed: pgo checks one compose file"})
		case "services":
			services := deref(e.value)
			if services.Kind != yaml.MappingNode {
				continue
			}
			for _, svc := range entries(services, budget) {
				vs = append(vs, s.checkService(svc.key.Value, deref(svc.value), grown, budget)...)
			}
		}
	}
	return vs
}

func (s *composeSource) checkService(name string, svc *yaml.Node, grown *growth, budget *int) []violation {
	if svc.Kind != yaml.MappingNode {
		return nil
	}
	var vs []violation
	for _, e := range entries(svc, budget) {
		if e.key.Value == "env_file" || e.key.Value == "label_file" {
			vs = append(vs, s.checkReadFiles(name, e, grown, budget)...)
		}
		if e.key.Value != "extends" {
			continue
		}
		ext := deref(e.value)
		if ext.Kind != yaml.MappingNode {
			continue // extends: other, a service of this same file
		}
		for _, f := range entries(ext, budget) {
			if f.key.Value == "file" {
				vs = append(vs, violation{File: s.rel, Line: f.key.Line, Service: name, Msg: "extends with file: is not allowed: pgo checks one compose file"})
			}
		}
	}
	return vs
}

// checkReadFiles keeps env_file and label_file inside the checkout: compose
// reads them while rendering, by the path written (pgod's checkout follows
// no symlinks), and their content, variables expanded, lands in the project.
func (s *composeSource) checkReadFiles(service string, e yamlEntry, grown *growth, budget *int) []violation {
	var paths []*yaml.Node
	v := deref(e.value)
	switch v.Kind {
	case yaml.ScalarNode:
		paths = append(paths, v)
	case yaml.SequenceNode:
		for _, item := range v.Content {
			item = deref(item)
			if item.Kind == yaml.ScalarNode {
				paths = append(paths, item)
				continue
			}
			if item.Kind == yaml.MappingNode {
				for _, f := range entries(item, budget) {
					if f.key.Value == "path" {
						paths = append(paths, deref(f.value))
					}
				}
			}
		}
	}
	var vs []violation
	for _, p := range paths {
		if p.Kind != yaml.ScalarNode {
			continue
		}
		if msg := s.readFile(p.Value, grown); msg != "" {
			vs = append(vs, violation{File: s.rel, Line: p.Line, Service: service, Msg: fmt.Sprintf("%s %q%s", e.key.Value, p.Value, msg)})
		}
	}
	return vs
}

// readFile checks one env_file or label_file path and adds what its content
// grows to; it returns why the path is refused, "" when it is not.
func (s *composeSource) readFile(path string, grown *growth) string {
	switch {
	case strings.Contains(path, "$"):
		return ": variables are not allowed in its path"
	case strings.HasPrefix(path, "~"):
		return ": ~ is not allowed in its path (pgod and pgo check render with different home directories); name a file of the checkout, such as ./app.env"
	}
	abs := path
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(s.root, abs)
	}
	rel, ok := strings.CutPrefix(filepath.Clean(abs), s.root+"/")
	if !ok {
		return " is outside the checkout"
	}
	if _, err := os.Lstat(abs); errors.Is(err, fs.ErrNotExist) {
		return "" // compose says so, unless it is optional
	}
	data, _, v := readInCheckout(s.root, rel, false)
	if v != nil {
		return " " + v.Msg
	}
	added, _ := expandEnv(data, maps.Clone(s.vars))
	*grown = grown.plus(growth{bytes: added})
	return ""
}

// yamlEntry is one key/value of a mapping after merge keys are applied.
type yamlEntry struct{ key, value *yaml.Node }

// entries returns the keys of a mapping node as YAML merge semantics define
// them: explicit keys first, then merged keys not already present.
func entries(m *yaml.Node, budget *int) []yamlEntry {
	var out []yamlEntry
	seen := map[string]bool{}
	var merged []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if *budget--; *budget <= 0 {
			return out
		}
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "!!merge" || k.ShortTag() == "!!merge") {
			merged = append(merged, v)
			continue
		}
		if !seen[k.Value] {
			seen[k.Value] = true
			out = append(out, yamlEntry{k, v})
		}
	}
	for _, v := range merged {
		v = deref(v)
		srcs := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			srcs = v.Content
		}
		for _, src := range srcs {
			if *budget--; *budget <= 0 {
				return out
			}
			src = deref(src)
			if src.Kind != yaml.MappingNode {
				continue
			}
			for _, e := range entries(src, budget) {
				if !seen[e.key.Value] {
					seen[e.key.Value] = true
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// deref follows aliases to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// maxIndexDepth is how deep key lines are recorded: services.web.build.network.
const maxIndexDepth = 4

// index records the line of every key down to maxIndexDepth; the first
// document that defines a key wins.
func (s *composeSource) index(prefix string, m *yaml.Node, depth int, budget *int) {
	if depth >= maxIndexDepth {
		return
	}
	for _, e := range entries(m, budget) {
		if *budget--; *budget <= 0 {
			return
		}
		p := e.key.Value
		if prefix != "" {
			p = prefix + "." + p
		}
		if _, ok := s.lines[p]; !ok {
			s.lines[p] = e.key.Line
		}
		if v := deref(e.value); v.Kind == yaml.MappingNode {
			s.index(p, v, depth+1, budget)
		}
	}
}

// itemLists are the service lists whose items compose renders one for one, in
// source order (ports are not: a range becomes several items).
var itemLists = map[string]bool{"volumes": true, "post_start": true, "pre_stop": true}

// indexItems records the lines of the list items of each service
// (services.web.volumes[1]), where compose keeps them in source order: one
// document, and no extends merging lists from another service.
func (s *composeSource) indexItems(root *yaml.Node, budget *int) {
	for _, top := range entries(root, budget) {
		services := deref(top.value)
		if top.key.Value != "services" || services.Kind != yaml.MappingNode {
			continue
		}
		for _, svc := range entries(services, budget) {
			m := deref(svc.value)
			if m.Kind != yaml.MappingNode {
				continue
			}
			keys := entries(m, budget)
			extends := false
			for _, e := range keys {
				extends = extends || e.key.Value == "extends"
			}
			if extends {
				continue
			}
			for _, e := range keys {
				seq := deref(e.value)
				if !itemLists[e.key.Value] || seq.Kind != yaml.SequenceNode {
					continue
				}
				for i, item := range seq.Content {
					p := fmt.Sprintf("services.%s.%s[%d]", svc.key.Value, e.key.Value, i)
					s.lines[p] = item.Line
				}
			}
		}
	}
}

// locate puts the compose file and the line of the nearest source key on
// violations that carry a canonical key path.
func (s *composeSource) locate(vs []violation) {
	for i := range vs {
		v := &vs[i]
		if v.File != "" {
			continue
		}
		v.File = s.rel
		for p := v.Path; p != ""; p = parentPath(p) {
			if line, ok := s.lines[p]; ok {
				v.Line = line
				break
			}
		}
	}
}

// parentPath strips the last element of a key path: services.web.volumes[1] ->
// services.web.volumes -> services.web.
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i > 0 {
			return p[:i]
		}
	}
	i := strings.LastIndexByte(p, '.')
	if i < 0 {
		return ""
	}
	return p[:i]
}
