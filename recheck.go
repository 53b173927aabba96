package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// checkPaths checks every host path of the project against where the
// service may reach: bind mounts under its data directory or its checkout,
// secret and config files likewise, build contexts in the checkout. Paths are
// resolved through symlinks now; recheckPaths runs this again before "up".
func (c *checker) checkPaths() {
	checkout, err := resolveHostPath(c.r.Checkout)
	if err != nil {
		c.add("", "checkout %s: %v", c.r.Checkout, err)
		return
	}
	roots := []string{checkout}
	if c.r.DataDir != "" {
		data, err := resolveHostPath(c.r.DataDir)
		if err != nil {
			c.add("", "data directory %s: %v", c.r.DataDir, err)
			return
		}
		roots = append(roots, data)
	}
	for _, name := range sortedKeys(c.services) {
		s := jsonObject(c.services[name])
		for i, v := range jsonList(s["volumes"]) {
			m := jsonObject(v)
			if jsonString(m["type"]) != "bind" {
				continue
			}
			at := fmt.Sprintf("services.%s.volumes[%d]", name, i)
			c.checkHostPath(at, "bind mount source", jsonString(m["source"]), roots)
			if m["read_only"] != true {
				c.checkGitReach(at, jsonString(m["source"]), checkout)
			}
		}
		c.checkBuildPaths("services."+name+".build", jsonObject(s["build"]), checkout)
	}
	for _, kind := range []string{"secrets", "configs"} {
		objs := jsonObject(c.p[kind])
		for _, key := range sortedKeys(objs) {
			if f := jsonString(jsonObject(objs[key])["file"]); f != "" {
				c.checkHostPath(kind+"."+key+".file", kind+" file", f, roots)
			}
		}
	}
}

// checkHostPath refuses a path that resolves outside roots, and, for a bind
// mount, a socket or device node (the engine's socket is root on the host).
func (c *checker) checkHostPath(path, what, p string, roots []string) {
	// Canonical JSON escapes "$" as "$$"; compose unescapes it at "up", so
	// the path on disk is the unescaped one.
	p = strings.ReplaceAll(p, "$$", "$")
	resolved, err := resolveHostPath(p)
	if err != nil {
		c.add(path, "%s %s: %v", what, p, err)
		return
	}
	if !withinAny(resolved, roots) {
		shown := p
		if resolved != filepath.Clean(p) {
			shown = fmt.Sprintf("%s (resolves to %s)", p, resolved)
		}
		c.add(path, "%s %s is outside the checkout and the data directory", what, shown)
		return
	}
	if fi, err := os.Stat(resolved); err == nil && fi.Mode()&(fs.ModeSocket|fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeIrregular) != 0 {
		c.add(path, "%s %s is a socket or device node, which is not allowed", what, p)
	}
}

// checkGitReach refuses a writable bind of the checkout itself or of its
// .git directory. pgod runs git there as the service's user, outside any
// container: hooks, fsmonitor or filter commands that a container wrote into
// .git would run on the host with that user's docker access.
func (c *checker) checkGitReach(path, p, checkout string) {
	resolved, err := resolveHostPath(strings.ReplaceAll(p, "$$", "$"))
	if err != nil {
		return // checkHostPath said why
	}
	git := filepath.Join(checkout, ".git")
	if resolved == checkout || resolved == git || strings.HasPrefix(resolved, git+string(filepath.Separator)) {
		c.add(path, "bind mount source %s is writable and reaches the checkout's .git; mount it read-only or bind a subdirectory", p)
	}
}

// checkBuildPaths keeps build contexts, Dockerfiles and additional contexts
// inside the checkout, and refuses remote ones.
func (c *checker) checkBuildPaths(path string, b map[string]any, checkout string) {
	if b == nil {
		return
	}
	roots := []string{checkout}
	ctx := jsonString(b["context"])
	if ctx == "" || remoteRef(ctx) {
		c.add(path+".context", "build context %q is not allowed: only directories of the checkout", ctx)
		return
	}
	c.checkHostPath(path+".context", "build context", ctx, roots)
	if df := jsonString(b["dockerfile"]); df != "" {
		if !filepath.IsAbs(df) {
			df = filepath.Join(ctx, df)
		}
		c.checkHostPath(path+".dockerfile", "Dockerfile", df, roots)
	}
	extra := jsonObject(b["additional_contexts"])
	for _, k := range sortedKeys(extra) {
		v := jsonString(extra[k])
		switch {
		case strings.HasPrefix(v, "docker-image://"), strings.HasPrefix(v, "service:"):
		case remoteRef(v) || strings.Contains(v, "://"):
			c.add(path+".additional_contexts", "additional context %s=%q is not allowed: only directories of the checkout, images and services", k, v)
		default:
			c.checkHostPath(path+".additional_contexts", "additional context", v, roots)
		}
	}
}

// remoteRef reports a git or URL reference, which builds would fetch from outside.
func remoteRef(s string) bool {
	l := strings.ToLower(s)
	return strings.Contains(l, "://") || strings.HasPrefix(l, "git@") || strings.HasPrefix(l, "github.com/")
}

// resolveHostPath resolves the symlinks of an absolute path. For a path that does
// not exist yet (the engine creates missing bind sources), it resolves the
// longest existing prefix; a dangling symlink on the way is an error, since
// the engine would create its target wherever it points.
func resolveHostPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("not an absolute path")
	}
	p = filepath.Clean(p)
	cur, rest := p, ""
	for {
		_, err := os.Lstat(cur)
		if err == nil {
			r, err := filepath.EvalSymlinks(cur)
			if err != nil {
				return "", fmt.Errorf("cannot resolve %s: %w", cur, unwrapPathError(err))
			}
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("cannot resolve %s: %w", cur, unwrapPathError(err))
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// within reports whether p is root or below it; both are clean and absolute.
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
