package main

// Host paths: where bind mount sources, secret and config files and build
// contexts lead on the host. A service reaches its checkout and its data
// directory, nothing else, and within those it reaches them without
// symlinks: when it deploys, pgod opens every bind source below them one
// element at a time without following a symlink, and hands the engine a pin
// of what it opened (binds.go). The check says so first, and resolves every
// path again right before "up" (checkBeforeUp).

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// readOnlyHostFiles are the host paths outside the service's directories a
// container may bind read-only: the host's time zone, which many images
// expect to be handed in and which tells nothing worth hiding.
var readOnlyHostFiles = map[string]bool{"/etc/localtime": true, "/etc/timezone": true}

// hostPaths checks the host paths of one project.
type hostPaths struct {
	given    string   // the checkout as the request names it, for messages
	checkout string   // the checkout, symlinks of the host resolved
	roots    []string // checkout and data directory, resolved
	binds    []bindSource
	vs       []violation
}

// bindSource is a host path mounted into a container, for the nesting rule.
type bindSource struct {
	at       string // key path of the mount
	shown    string // the source as messages show it
	resolved string
	writable bool
}

// checkHostPaths checks every host path of the project: bind mounts under
// its data directory or its checkout, secret and config files likewise,
// build contexts in the checkout.
func checkHostPaths(p map[string]any, r renderRequest) []violation {
	h, v := newHostPaths(r)
	if v != nil {
		return []violation{*v}
	}
	services := jsonObject(p["services"])
	for _, name := range slices.Sorted(maps.Keys(services)) {
		s := jsonObject(services[name])
		for i, vol := range jsonList(s["volumes"]) {
			m := jsonObject(vol)
			if jsonString(m["type"]) == "bind" {
				h.bind(fmt.Sprintf("services.%s.volumes[%d]", name, i), jsonString(m["source"]), m["read_only"] != true)
			}
		}
		h.buildPaths("services."+name+".build", jsonObject(s["build"]))
	}
	for _, kind := range []string{"secrets", "configs"} {
		objs := jsonObject(p[kind])
		for _, key := range slices.Sorted(maps.Keys(objs)) {
			if f := jsonString(jsonObject(objs[key])["file"]); f != "" {
				// Compose mounts these files like read-only binds.
				h.mounted(kind+"."+key+".file", kind+" file", f, false)
			}
		}
	}
	h.nestedInWritable()
	return h.vs
}

func newHostPaths(r renderRequest) (*hostPaths, *violation) {
	checkout, err := resolveHostPath(r.Checkout)
	if err != nil {
		return nil, &violation{Msg: fmt.Sprintf("checkout %s: %v", r.Checkout, err)}
	}
	h := &hostPaths{given: filepath.Clean(r.Checkout), checkout: checkout, roots: []string{checkout}}
	if r.DataDir != "" {
		data, err := resolveHostPath(r.DataDir)
		if err != nil {
			return nil, &violation{Msg: fmt.Sprintf("data directory %s: %v", r.DataDir, err)}
		}
		h.roots = append(h.roots, data)
	}
	return h, nil
}

func (h *hostPaths) add(path, format string, args ...any) {
	h.vs = append(h.vs, violation{Path: path, Service: serviceOf(path), Msg: fmt.Sprintf(format, args...)})
}

// bind checks a bind mount source: the time zone files read-only, or a
// path in the service's directories that is not its git metadata when
// writable.
func (h *hostPaths) bind(at, source string, writable bool) {
	if !writable && readOnlyHostFiles[source] {
		return
	}
	resolved, ok := h.mounted(at, "bind mount source", source, writable)
	if ok && writable {
		h.gitReach(at, source, resolved)
	}
}

// mounted checks a path the engine mounts into a container and remembers it
// for the nesting rule; ok is false when it was refused.
func (h *hostPaths) mounted(at, what, source string, writable bool) (resolved string, ok bool) {
	resolved, ok = h.within(at, what, source, h.roots)
	if !ok {
		return "", false
	}
	if fi, err := os.Stat(resolved); err == nil && fi.Mode()&(fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeIrregular) != 0 {
		h.add(at, "%s %s is a socket or device node, which is not allowed", what, h.shown(source))
		return "", false
	}
	h.binds = append(h.binds, bindSource{at: at, shown: h.shown(source), resolved: resolved, writable: writable})
	return resolved, true
}

// within resolves a host path and refuses one that leads outside roots or
// passes through a symlink below them.
func (h *hostPaths) within(at, what, p string, roots []string) (string, bool) {
	// Canonical JSON escapes "$" as "$$"; compose unescapes it at "up", so
	// the path on disk is the unescaped one.
	p = strings.ReplaceAll(p, "$$", "$")
	if home := filepath.Clean(renderHome); p == home || strings.HasPrefix(p, home+"/") {
		h.add(at, "%s ~%s: ~ and $HOME are not allowed in host paths (pgod and pgo check render with HOME=%s, not the service's home); write a path relative to the checkout (./data) or under the data directory", what, strings.TrimPrefix(p, home), renderHome)
		return "", false
	}
	outside := "the checkout and the data directory"
	if len(roots) == 1 {
		outside = "the checkout"
	}
	resolved, link, err := walkHostPath(p, roots)
	switch {
	case err != nil:
		h.add(at, "%s %s: %v", what, h.shown(p), err)
		return "", false
	case link != nil && withinAny(resolved, roots):
		h.add(at, "%s %s passes through the symlink %s -> %s; pgod's directories do not follow symlinks, so bind %s", what, h.shown(p), h.shown(link.path), link.target, h.shown(resolved))
		return "", false
	case link != nil:
		h.add(at, "%s %s passes through the symlink %s -> %s and resolves to %s, which is outside %s", what, h.shown(p), h.shown(link.path), link.target, resolved, outside)
		return "", false
	case !withinAny(resolved, roots):
		shown := h.shown(p)
		if resolved != filepath.Clean(p) {
			shown = fmt.Sprintf("%s (resolves to %s)", shown, resolved)
		}
		h.add(at, "%s %s is outside %s", what, shown, outside)
		return "", false
	}
	return resolved, true
}

// gitReach refuses a writable bind of the checkout itself or of its .git
// directory. pgod runs git there as the service's user, outside any
// container: hooks, fsmonitor or filter commands that a container wrote into
// .git would run on the host with that user's docker access.
func (h *hostPaths) gitReach(at, source, resolved string) {
	git := filepath.Join(h.checkout, ".git")
	if resolved == h.checkout || pathWithin(resolved, git) {
		h.add(at, "bind mount source %s is writable and reaches the checkout's .git; mount it read-only (:ro) or bind a subdirectory", h.shown(source))
	}
}

// nestedInWritable refuses a mount whose source lies inside another
// writable bind of the project: a container writing the outer directory
// could replace what the inner mount brings in, before its next start.
func (h *hostPaths) nestedInWritable() {
	for _, inner := range h.binds {
		for _, outer := range h.binds {
			if outer.writable && inner.resolved != outer.resolved && pathWithin(inner.resolved, outer.resolved) {
				h.add(inner.at, "%s lies inside %s, which %s binds writable: a container writing there could replace what this mounts; bind %s read-only (:ro), or bind directories side by side", inner.shown, outer.shown, outer.at, outer.shown)
				break
			}
		}
	}
}

// buildPaths keeps build contexts, Dockerfiles and additional contexts
// inside the checkout, and refuses remote ones.
func (h *hostPaths) buildPaths(path string, b map[string]any) {
	if b == nil {
		return
	}
	checkout := []string{h.checkout}
	ctx := jsonString(b["context"])
	if ctx == "" || remoteRef(ctx) {
		h.add(path+".context", "build context %q is not allowed: only directories of the checkout", ctx)
		return
	}
	h.within(path+".context", "build context", ctx, checkout)
	if df := jsonString(b["dockerfile"]); df != "" {
		if !filepath.IsAbs(df) {
			df = filepath.Join(ctx, df)
		}
		h.within(path+".dockerfile", "Dockerfile", df, checkout)
	}
	extra := jsonObject(b["additional_contexts"])
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		v := jsonString(extra[k])
		switch {
		case strings.HasPrefix(v, "docker-image://"), strings.HasPrefix(v, "service:"):
		case remoteRef(v) || strings.Contains(v, "://"):
			h.add(path+".additional_contexts", "additional context %s=%q is not allowed: only directories of the checkout, images and services", k, v)
		default:
			h.within(path+".additional_contexts", "additional context", v, checkout)
		}
	}
}

// shown writes a path under the checkout as "./rel", as the team wrote it.
func (h *hostPaths) shown(p string) string {
	for _, dir := range []string{h.given, h.checkout} {
		if p == dir {
			return "."
		}
		if rel, ok := strings.CutPrefix(p, dir+"/"); ok && dir != "/" {
			return "./" + rel
		}
	}
	return p
}

// remoteRef reports a git or URL reference, which builds would fetch from outside.
func remoteRef(s string) bool {
	l := strings.ToLower(s)
	return strings.Contains(l, "://") || strings.HasPrefix(l, "git@") || strings.HasPrefix(l, "github.com/")
}

// symlinkHop is the first symlink a walk met below a root.
type symlinkHop struct {
	path   string // the symlink itself
	target string // what it says
}

// maxSymlinks is how many symlinks a walk follows, as the kernel's ELOOP limit.
const maxSymlinks = 40

// walkHostPath resolves an absolute path one component at a time, as the
// kernel would. Symlinks outside roots are the host's own and are followed;
// the first one in a directory at or below a root is returned as link (and
// followed too, to say where it leads). A path that does not exist yet (the
// engine creates missing bind sources) resolves as far as it exists; a
// dangling symlink outside roots is an error, since the engine would create
// its target wherever it points.
func walkHostPath(p string, roots []string) (resolved string, link *symlinkHop, err error) {
	if !filepath.IsAbs(p) {
		return "", nil, fmt.Errorf("not an absolute path")
	}
	cur := "/"
	todo := splitPath(filepath.Clean(p))
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return filepath.Join(append([]string{next}, todo...)...), link, nil
		}
		if err != nil {
			return "", nil, fmt.Errorf("cannot resolve %s: %w", next, unwrapPathError(err))
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", nil, fmt.Errorf("cannot resolve %s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", nil, fmt.Errorf("cannot resolve %s: %w", next, unwrapPathError(err))
		}
		below := withinAny(cur, roots)
		if below && link == nil {
			link = &symlinkHop{path: next, target: target}
		}
		if _, err := os.Stat(next); err != nil && !below && link == nil {
			return "", nil, fmt.Errorf("cannot resolve %s: %w", next, unwrapPathError(err))
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		todo = append(splitPath(target), todo...)
	}
	return cur, link, nil
}

// splitPath splits a path into its components, dropping empty ones and ".".
func splitPath(p string) []string {
	var parts []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	return parts
}

// resolveHostPath resolves every symlink of an absolute path; see walkHostPath.
func resolveHostPath(p string) (string, error) {
	resolved, _, err := walkHostPath(p, nil)
	return resolved, err
}

// pathWithin reports whether p is root or below it; both are clean and absolute.
func pathWithin(p, root string) bool {
	return p == root || root == "/" || strings.HasPrefix(p, root+"/")
}

func withinAny(p string, roots []string) bool {
	for _, r := range roots {
		if pathWithin(p, r) {
			return true
		}
	}
	return false
}
