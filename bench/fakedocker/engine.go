package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// serve answers the few Docker Engine API calls pgod makes over the engine's
// Unix socket (pgod --docker-socket), from the same state/ directory the CLI
// substitute keeps: a project is listed with one running container, "web",
// once its "compose up" was recorded. Every image is present. The event
// stream stays silent. It runs until SIGTERM or SIGINT.
func serve(sock, dir string, stderr *os.File) int {
	os.Remove(sock) // a socket left by an earlier run
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(stderr, "fakedocker:", err)
		return 1
	}
	srv := &http.Server{Handler: &engine{dir: dir}, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx) // the event streams never end by themselves: cut them after a second
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "fakedocker:", err)
		return 1
	}
	os.Remove(sock)
	return 0
}

// engine is the fake Engine API over state/<project> files in dir.
type engine struct{ dir string }

// apiVersion is the optional "/v1.41" prefix clients put before every path.
var apiVersion = regexp.MustCompile(`^/v[0-9]+\.[0-9]+/`)

func (e *engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if loc := apiVersion.FindStringIndex(path); loc != nil {
		path = path[loc[1]-1:]
	}
	switch {
	case path == "/_ping":
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
	case path == "/containers/json":
		e.list(w, r)
	case strings.HasPrefix(path, "/containers/") && strings.HasSuffix(path, "/json"):
		e.inspect(w, strings.TrimSuffix(strings.TrimPrefix(path, "/containers/"), "/json"))
	case strings.HasPrefix(path, "/images/") && strings.HasSuffix(path, "/json"):
		name := strings.TrimSuffix(strings.TrimPrefix(path, "/images/"), "/json")
		writeJSON(w, http.StatusOK, map[string]any{"Id": "sha256:" + hash(name), "RepoTags": []string{name}})
	case path == "/events":
		events(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "page not found"})
	}
}

// containers are the up projects' containers.
func (e *engine) containers() []fakeContainer {
	entries, _ := os.ReadDir(filepath.Join(e.dir, "state"))
	var all []fakeContainer
	for _, ent := range entries {
		if c, ok := upContainer(e.dir, ent.Name()); ok {
			all = append(all, c)
		}
	}
	return all
}

// list is GET /containers/json; only label filters are understood, and a
// container must match all of them.
func (e *engine) list(w http.ResponseWriter, r *http.Request) {
	labels, err := labelFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	out := []map[string]any{}
	for _, c := range e.containers() {
		if !matches(c.Config.Labels, labels) {
			continue
		}
		out = append(out, map[string]any{
			"Id": c.ID, "Names": []string{c.Name}, "Image": c.Config.Image, "ImageID": c.Image,
			"State": "running", "Status": "Up 1 hour", "Labels": c.Config.Labels,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func matches(have map[string]string, labels []string) bool {
	for _, l := range labels {
		k, v, hasValue := strings.Cut(l, "=")
		got, ok := have[k]
		if !ok || hasValue && got != v {
			return false
		}
	}
	return true
}

// labelFilters reads the "label" entries of a filters parameter, in either
// form the engine accepts: {"label":["a=b"]} or {"label":{"a=b":true}}.
func labelFilters(param string) ([]string, error) {
	if param == "" {
		return nil, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(param), &raw); err != nil {
		return nil, fmt.Errorf("filters: %v", err)
	}
	var list []string
	if err := json.Unmarshal(raw["label"], &list); err == nil || raw["label"] == nil {
		return list, nil
	}
	var set map[string]bool
	if err := json.Unmarshal(raw["label"], &set); err != nil {
		return nil, fmt.Errorf("filters: label: %v", err)
	}
	for l := range set {
		list = append(list, l)
	}
	return list, nil
}

// inspect is GET /containers/{id or name}/json.
func (e *engine) inspect(w http.ResponseWriter, ref string) {
	ref = strings.TrimPrefix(ref, "/")
	for _, c := range e.containers() {
		if c.Name == "/"+ref || len(ref) >= 12 && strings.HasPrefix(c.ID, ref) {
			writeJSON(w, http.StatusOK, c)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"message": "No such container: " + ref})
}

// events is GET /events: the headers, then nothing until the client leaves,
// as an engine where nothing happens.
func events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	<-r.Context().Done()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
