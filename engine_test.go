package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeEngineAPI serves the part of the Engine API pgod reads, on a Unix socket.
type fakeEngineAPI struct {
	t      *testing.T
	socket string

	mu         sync.Mutex
	containers []apiContainer
	lists      atomic.Int32 // container lists answered
	events     chan engineEvent
	streams    atomic.Int32 // event streams opened
	closeAll   chan struct{}
}

func newFakeEngineAPI(t *testing.T) *fakeEngineAPI {
	f := &fakeEngineAPI{t: t, socket: filepath.Join(t.TempDir(), "docker.sock"), events: make(chan engineEvent, 16), closeAll: make(chan struct{})}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("/containers/json", f.list)
	mux.HandleFunc("/containers/{name}/json", f.inspect)
	mux.HandleFunc("/images/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/images/busybox:1/json") {
			io.WriteString(w, `{"Id":"sha256:1","RepoTags":["busybox:1"]}`)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"No such image"}`)
	})
	mux.HandleFunc("/events", f.stream)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { f.closeStreams(); srv.Close() })
	return f
}

func (f *fakeEngineAPI) set(cs ...apiContainer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers = cs
}

func (f *fakeEngineAPI) list(w http.ResponseWriter, r *http.Request) {
	f.lists.Add(1)
	var filters map[string][]string
	json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters)
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []apiContainer{}
	for _, c := range f.containers {
		if matchesLabels(c.Labels, filters["label"]) {
			out = append(out, c)
		}
	}
	json.NewEncoder(w).Encode(out)
}

func matchesLabels(labels map[string]string, want []string) bool {
	for _, l := range want {
		k, v, hasValue := strings.Cut(l, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != v {
			return false
		}
	}
	return true
}

func (f *fakeEngineAPI) inspect(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.containers {
		if c.Names[0] == "/"+r.PathValue("name") {
			json.NewEncoder(w).Encode(map[string]any{"Name": c.Names[0], "RestartCount": 2,
				"Config": map[string]any{"Image": c.Image, "Labels": c.Labels},
				"State":  map[string]any{"Status": c.State, "ExitCode": 0, "StartedAt": "2026-12-02T10:00:00.5Z", "Health": map[string]any{"Status": "healthy"}}})
			return
		}
	}
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, `{"message":"No such container"}`)
}

func (f *fakeEngineAPI) stream(w http.ResponseWriter, r *http.Request) {
	f.streams.Add(1)
	f.mu.Lock()
	closed := f.closeAll
	f.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case ev := <-f.events:
			enc.Encode(ev)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		case <-closed:
			return
		}
	}
}

func composeContainer(project, service, state string) apiContainer {
	return apiContainer{ID: project + service, Names: []string{"/" + project + "-" + service + "-1"}, Image: "busybox:1", State: state,
		Status: "Up 3 minutes (healthy)", Labels: map[string]string{composeProjectLabel: project, composeServiceLabel: service, composeOneoffLabel: "False"}}
}

func engineEventOf(action, project string) engineEvent {
	var ev engineEvent
	ev.Type, ev.Action = "container", action
	ev.Actor.Attributes = map[string]string{composeProjectLabel: project}
	return ev
}

func TestEngineAPIReads(t *testing.T) {
	f := newFakeEngineAPI(t)
	run := composeContainer("shop", "run", "running")
	run.Labels[composeOneoffLabel] = "True"
	f.set(composeContainer("shop", "web", "running"), composeContainer("blog", "web", "exited"), run)
	api := newEngineAPI(f.socket)
	ctx := context.Background()

	ps, err := api.projectContainers(ctx, "shop")
	if err != nil || len(ps) != 1 || ps[0] != (psEntry{Name: "shop-web-1", Service: "web", State: "running", Image: "busybox:1", Health: "healthy"}) {
		t.Fatalf("projectContainers = %+v, %v", ps, err)
	}
	all, err := api.composeContainers(ctx)
	if err != nil || len(all) != 2 || len(all["shop"]) != 1 || all["blog"][0].State != "exited" {
		t.Fatalf("composeContainers = %+v, %v (one-off containers left out)", all, err)
	}
	cs, err := api.inspectContainers(ctx, "shop")
	if err != nil || len(cs) != 1 || cs[0].Restarts != 2 || cs[0].Health != "healthy" || cs[0].StartedAt.IsZero() || cs[0].Name != "shop-web-1" {
		t.Fatalf("inspectContainers = %+v, %v", cs, err)
	}
	if ok, err := api.hasImage(ctx, "busybox:1"); !ok || err != nil {
		t.Errorf("hasImage(busybox:1) = %v, %v; want true", ok, err)
	}
	if ok, err := api.hasImage(ctx, "nginx:latest"); ok || err != nil {
		t.Errorf("hasImage(nginx:latest) = %v, %v; want false, nil", ok, err)
	}
	out, err := api.inspector(nil)(ctx, "image", "inspect", "busybox:1")
	if err != nil || !strings.HasPrefix(string(out), `[{"Id":"sha256:1"`) {
		t.Errorf("image inspect = %s, %v; want the CLI's shape, a list of one", out, err)
	}
	if _, err := newEngineAPI(filepath.Join(t.TempDir(), "none.sock")).projectContainers(ctx, "shop"); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("no engine: err = %v, want one naming the socket", err)
	}
}

func TestContainerViewFollowsEvents(t *testing.T) {
	f := newFakeEngineAPI(t)
	f.set(composeContainer("shop", "web", "running"))
	var removed []string
	var mu sync.Mutex
	v := newContainerView(newEngineAPI(f.socket), slog.New(slog.NewTextHandler(io.Discard, nil)), func(p string) {
		mu.Lock()
		removed = append(removed, p)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { v.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, "the view to go live", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.live
	})
	lists := f.lists.Load()

	// Idle: looks cost the engine nothing.
	for range 5 {
		if ps, err := v.containers(ctx, "shop"); err != nil || len(ps) != 1 || ps[0].State != "running" {
			t.Fatalf("containers = %+v, %v", ps, err)
		}
		if ps, _ := v.containers(ctx, "blog"); len(ps) != 0 {
			t.Fatalf("a project without containers has %+v", ps)
		}
	}
	if n := f.lists.Load() - lists; n != 0 {
		t.Fatalf("idle looks asked the engine %d times, want 0", n)
	}

	// A stop is seen at the next look, and not reported as a removal.
	f.set(composeContainer("shop", "web", "exited"))
	f.events <- engineEventOf("exec_start: sh", "shop") // changes nothing the list shows
	f.events <- engineEventOf("stop", "shop")
	waitUntil(t, "the stop to be seen", func() bool {
		ps, _ := v.containers(ctx, "shop")
		return len(ps) == 1 && ps[0].State == "exited"
	})
	lists = f.lists.Load()
	v.containers(ctx, "shop")
	if n := f.lists.Load() - lists; n != 0 {
		t.Errorf("the look after the refresh asked the engine %d times, want 0", n)
	}

	// What pgod runs itself is asked about at the next look: its events
	// may come after the command ends.
	lists = f.lists.Load()
	v.forget("shop")
	v.containers(ctx, "shop")
	v.containers(ctx, "shop")
	if n := f.lists.Load() - lists; n != 1 {
		t.Errorf("two looks after forget asked the engine %d times, want 1", n)
	}

	// A removal is reported at once.
	f.set()
	f.events <- engineEventOf("destroy", "shop")
	waitUntil(t, "the removal to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(removed) == 1 && removed[0] == "shop"
	})
	if ps, _ := v.containers(ctx, "shop"); len(ps) != 0 {
		t.Errorf("after the removal containers = %+v", ps)
	}

	// A lost stream: every look asks the engine until it is back.
	streams := f.streams.Load()
	f.closeStreams()
	waitUntil(t, "the stream to be opened again", func() bool { return f.streams.Load() > streams })
}

// closeStreams ends the open event streams, as an engine restart would.
func (f *fakeEngineAPI) closeStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.closeAll)
	f.closeAll = make(chan struct{})
}
