package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// What runs includes what is built: a service's rendered definition names
// its build context only by path, so a commit that changes a Dockerfile or
// the sources beside it renders the same project. Its build identity, git's
// hash of the context's tree, tells the commits apart, cheaply and without
// reading a file.

// buildIdentity maps each service of project that is built from the
// checkout to what it is built from at commit: the tree hash of its
// context, and the blob hash of its Dockerfile when that lies outside it.
func (w *worker) buildIdentity(ctx context.Context, commit string, project []byte) (map[string]string, error) {
	var p struct {
		Services map[string]struct {
			Build *struct {
				Context    string `json:"context"`
				Dockerfile string `json:"dockerfile"`
			} `json:"build"`
		} `json:"services"`
	}
	if err := json.Unmarshal(project, &p); err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for name, s := range p.Services {
		if s.Build == nil {
			continue
		}
		rel, ok := w.inCheckout(s.Build.Context)
		if !ok {
			continue // not a directory of the checkout; nothing of the commit to name
		}
		id, err := w.objectID(ctx, commit, rel)
		if err != nil {
			return nil, fmt.Errorf("build context of service %q: %w", name, err)
		}
		if df := s.Build.Dockerfile; df != "" {
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			if relDF, ok := w.inCheckout(df); ok && rel != "" && !strings.HasPrefix(relDF, rel+"/") {
				dfID, err := w.objectID(ctx, commit, relDF)
				if err != nil {
					return nil, fmt.Errorf("dockerfile of service %q: %w", name, err)
				}
				id += "+" + dfID
			}
		}
		ids[name] = id
	}
	return ids, nil
}

// inCheckout turns an absolute path into one relative to the checkout, as
// git names it ("" for the checkout itself); ok is false outside it.
func (w *worker) inCheckout(path string) (string, bool) {
	if !filepath.IsAbs(path) {
		return "", false
	}
	rel, err := filepath.Rel(w.checkout, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	if rel == "." {
		rel = ""
	}
	return filepath.ToSlash(rel), true
}

// objectID is git's hash of the tree or blob at path in commit.
func (w *worker) objectID(ctx context.Context, commit, path string) (string, error) {
	out, err := w.repo.git(ctx, "-C", w.checkout, "rev-parse", "--verify", "--quiet", commit+":"+path)
	if err != nil {
		return "", fmt.Errorf("%s is not in commit %s", orDot(path), short(commit))
	}
	return strings.TrimSpace(string(out)), nil
}

func orDot(path string) string {
	if path == "" {
		return "."
	}
	return path
}

// rebuilt lists, sorted, the services whose build identity differs between
// what runs and what is to run.
func rebuilt(running, next map[string]string) []string {
	var names []string
	for name, id := range next {
		if running[name] != id {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
