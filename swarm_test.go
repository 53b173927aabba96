package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// renderSwarm renders compose (and files, path -> content) as service
// "shop" with swarm = true, as pgod would, and returns the project and
// its violations as printed.
func renderSwarm(t *testing.T, compose string, files map[string]string) ([]byte, []string) {
	t.Helper()
	requireCompose(t)
	dir := t.TempDir()
	checkout := filepath.Join(dir, "shop")
	files["compose.yaml"] = compose
	for name, content := range files {
		path := filepath.Join(checkout, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	svc := &Service{Name: "shop", User: "shop", Swarm: true, Ports: []string{"8080"}}
	r := renderRequest{Service: svc, Checkout: checkout, DataDir: filepath.Join(dir, "data"), Docker: "docker"}
	project, vs, err := renderProject(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	return project, got
}

const swarmClean = `services:
  web:
    image: pgo-test-busybox:e2e
    command: ["sleep", "1000"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
    ports: ["8080:80"]
    volumes: [data:/data]
    secrets: [token]
    configs: [{source: site, target: /etc/site.conf}]
    deploy:
      replicas: 2
      resources: {limits: {cpus: "0.5", memory: 64M}}
      placement: {constraints: [node.role==manager]}
volumes:
  data: {}
secrets:
  token: {file: ./token.txt}
configs:
  site: {file: ./site.conf}
`

func swarmFiles() map[string]string {
	return map[string]string{"token.txt": "s3cret\n", "site.conf": "listen 80\n"}
}

// TestSwarmRefusals: what docker stack deploy would ignore, and what Swarm
// cannot keep safe, is refused with the compose file's line.
func TestSwarmRefusals(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		files   map[string]string
		want    []string
	}{
		{"clean", swarmClean, swarmFiles(), nil},
		{"privileged", "services:\n  web:\n    image: pgo-test-busybox:e2e\n    privileged: true\n", nil, []string{
			`compose.yaml:4: service "web": privileged: docker stack deploy ignores it; pgo refuses what would not run as checked`,
		}},
		{"restart", "services:\n  web:\n    image: pgo-test-busybox:e2e\n\n    restart: always\n", nil, []string{
			`compose.yaml:5: service "web": restart: docker stack deploy ignores it; pgo refuses what would not run as checked; use deploy.restart_policy`,
		}},
		{"build", "services:\n  web:\n    image: shop/web\n    build: .\n", map[string]string{"Dockerfile": "FROM scratch\n"}, []string{
			`compose.yaml:4: service "web": build: docker stack deploy ignores it; pgo refuses what would not run as checked; docker stack deploy cannot build`,
		}},
		{"ignored keys", "services:\n  web:\n    image: pgo-test-busybox:e2e\n    container_name: web1\n    shm_size: 64m\n    domainname: example.org\n    depends_on: [db]\n    tmpfs: /run\n  db:\n    image: pgo-test-busybox:e2e\n", nil, []string{
			`compose.yaml:4: service "web": container_name: docker stack deploy ignores it`,
			`compose.yaml:5: service "web": shm_size: docker stack deploy ignores it`,
			`compose.yaml:6: service "web": domainname: docker stack deploy ignores it`,
			`compose.yaml:7: service "web": depends_on: docker stack deploy ignores it`,
			`compose.yaml:8: service "web": tmpfs: docker stack deploy ignores it; pgo refuses what would not run as checked; write a volumes entry of type: tmpfs`,
		}},
		{"nested ignored keys", "services:\n  web:\n    image: pgo-test-busybox:e2e\n    networks:\n      default:\n        ipv4_address: 10.0.0.5\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      start_interval: 1s\n", nil, []string{
			`compose.yaml:5: service "web": networks.default.ipv4_address: docker stack deploy ignores it`,
			`compose.yaml:9: service "web": healthcheck.start_interval: docker stack deploy ignores it`,
		}},
		{"bind mount", "services:\n  web:\n    image: pgo-test-busybox:e2e\n    volumes:\n      - ./site:/site\n", map[string]string{"site/index.html": "hi"}, []string{
			`compose.yaml:5: service "web": bind mounts are not allowed on Swarm`,
		}},
		{"bridge network", "services:\n  web:\n    image: pgo-test-busybox:e2e\nnetworks:\n  default:\n    driver: bridge\n", nil, []string{
			`compose.yaml:6: network "default": driver "bridge" is not allowed; only overlay`,
		}},
		{"attachable", "services:\n  web:\n    image: pgo-test-busybox:e2e\nnetworks:\n  default:\n    driver: overlay\n    attachable: true\n", nil, []string{
			`compose.yaml:7: network "default": attachable is not allowed`,
		}},
		{"external secret", "services:\n  web:\n    image: pgo-test-busybox:e2e\n    secrets: [token]\nsecrets:\n  token:\n    external: true\n", nil, []string{
			`compose.yaml:7: secret "token": external secrets are not allowed`,
		}},
		{"swarm labels", "services:\n  web:\n    image: pgo-test-busybox:e2e\n    labels:\n      com.docker.swarm.service.name: other_web\n    deploy:\n      labels:\n        com.docker.stack.namespace: other\n", nil, []string{
			`compose.yaml:4: service "web": label "com.docker.swarm.service.name" is reserved for Docker Swarm`,
			`compose.yaml:7: service "web": label "com.docker.stack.namespace" is reserved for Docker Swarm`,
		}},
		{"port range", "services:\n  web:\n    image: pgo-test-busybox:e2e\n    ports: [\"8080-8081:80-81\"]\n", nil, []string{
			`host port 8081 is not allowed`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := tt.files
			if files == nil {
				files = map[string]string{}
			}
			_, got := renderSwarm(t, tt.compose, files)
			all := strings.Join(got, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("no violation %q in:\n%s", w, all)
				}
			}
			if tt.want == nil && len(got) > 0 {
				t.Errorf("violations of a clean project:\n%s", all)
			}
		})
	}
}

// TestSwarmAllowsWhatSingleHostRefusesNot: without swarm, the same
// project's restart and bridge network pass.
func TestSwarmRulesOnlyWithSwarm(t *testing.T) {
	p := map[string]any{"name": "shop", "services": map[string]any{"web": map[string]any{"image": "x", "restart": "always"}}}
	if vs := applyRules(p, renderRequest{Service: &Service{Name: "shop"}}); len(vs) > 0 {
		t.Errorf("single host refuses: %v", vs)
	}
	if vs := applyRules(p, renderRequest{Service: &Service{Name: "shop", Swarm: true}}); len(vs) != 1 || vs[0].Path != "services.web.restart" {
		t.Errorf("swarm: got %v, want the refused restart", vs)
	}
}

func decodeStack(t *testing.T, stack []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(stack, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStackFile: the stack file holds what runs, in the types the stack
// loader wants, with secrets and configs named by content.
func TestStackFile(t *testing.T) {
	project, vs := renderSwarm(t, swarmClean, swarmFiles())
	if len(vs) > 0 {
		t.Fatalf("violations: %v", vs)
	}
	stack, err := stackFile(project, "shop", []string{"node.labels.team==shop"})
	if err != nil {
		t.Fatal(err)
	}
	m := decodeStack(t, stack)
	if _, ok := m["name"]; ok {
		t.Errorf("the stack file names the project: %s", stack)
	}
	web := jsonObject(jsonObject(m["services"])["web"])
	if _, ok := web["entrypoint"]; ok {
		t.Errorf("entrypoint null is written: %s", stack)
	}
	if cpus, ok := jsonObject(jsonObject(jsonObject(web["deploy"])["resources"])["limits"])["cpus"].(string); !ok || cpus != "0.5" {
		t.Errorf("cpus = %#v, want the string 0.5", cpus)
	}
	if p, ok := jsonObject(jsonList(web["ports"])[0])["published"].(float64); !ok || p != 8080 {
		t.Errorf("published = %#v, want the number 8080", jsonObject(jsonList(web["ports"])[0])["published"])
	}
	constraints := jsonList(jsonObject(jsonObject(web["deploy"])["placement"])["constraints"])
	if len(constraints) != 2 || constraints[0] != "node.role==manager" || constraints[1] != "node.labels.team==shop" {
		t.Errorf("constraints = %v, want the team's and then the operator's", constraints)
	}
	if d := jsonObject(jsonObject(m["networks"])["default"])["driver"]; d != "overlay" {
		t.Errorf("default network driver = %v, want overlay", d)
	}
	token := jsonString(jsonObject(jsonObject(m["secrets"])["token"])["name"])
	site := jsonString(jsonObject(jsonObject(m["configs"])["site"])["name"])
	// sha256("s3cret\n") and sha256("listen 80\n"), their first 12 hex digits
	if !strings.HasPrefix(token, "shop_token_") || len(token) != len("shop_token_")+12 {
		t.Errorf("secret name %q, want shop_token_<12 hex digits>", token)
	}
	if !strings.HasPrefix(site, "shop_site_") || len(site) != len("shop_site_")+12 {
		t.Errorf("config name %q, want shop_site_<12 hex digits>", site)
	}

	// A changed file rotates the secret; the config keeps its name.
	file := jsonString(jsonObject(jsonObject(m["secrets"])["token"])["file"])
	if err := os.WriteFile(file, []byte("n3w\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := stackFile(project, "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	m2 := decodeStack(t, again)
	if n := jsonString(jsonObject(jsonObject(m2["secrets"])["token"])["name"]); n == token || !strings.HasPrefix(n, "shop_token_") {
		t.Errorf("after the change the secret is %q, was %q: want a new name", n, token)
	}
	if n := jsonString(jsonObject(jsonObject(m2["configs"])["site"])["name"]); n != site {
		t.Errorf("the unchanged config is %q, was %q", n, site)
	}
}

// TestStackFileRefusesIgnoredKeys: the writer itself never drops a key
// with a value, also for a project that did not go through the policy
// (a root service's, whose violations are warnings).
func TestStackFileRefusesIgnoredKeys(t *testing.T) {
	project := []byte(`{"name":"shop","services":{"web":{"image":"x","privileged":true,"restart":"","entrypoint":null,"x-team":1}}}`)
	_, err := stackFile(project, "shop", nil)
	if err == nil || !strings.Contains(err.Error(), "services.web.privileged") || strings.Contains(err.Error(), "restart") {
		t.Errorf("err = %v, want services.web.privileged refused and the empty restart not", err)
	}
	stack, err := stackFile([]byte(`{"name":"shop","services":{"web":{"image":"x","privileged":false,"x-team":1,"networks":{"default":null}}}}`), "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(stack)); got != `{"services":{"web":{"image":"x","networks":{"default":null}}}}` {
		t.Errorf("stack = %s", got)
	}
}

func TestContentName(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("hello\n"), 0o600)
	// sha256 of "hello\n" begins 5891b5b522d5
	if n, err := contentName("shop", "tls", file); err != nil || n != "shop_tls_5891b5b522d5" {
		t.Errorf("contentName = %q, %v", n, err)
	}
}

func TestParseConfigSwarm(t *testing.T) {
	const head = "[[services]]\nname = \"web\"\nuser = \"web\"\nrepository = \"https://example.org/web\"\nswarm = true\n"
	cfg, err := parseConfig("pgo.toml", []byte(head+"update_images = false\n"))
	if err != nil || !cfg.Services[0].Swarm {
		t.Fatalf("swarm = true: %v, %+v", err, cfg)
	}
	_, err = parseConfig("pgo.toml", []byte(head+"urls = { \"example.org\" = \"web:80\" }\nimport = \"Caddyfile\"\nmount = \"nfs://nfs/x\"\nupdate_images = true\n"))
	for _, want := range []string{
		`pgo.toml:6: service "web": urls is not allowed with swarm = true: Caddy on this host cannot reach`,
		`pgo.toml:7: service "web": import is not allowed with swarm = true`,
		`pgo.toml:8: service "web": mount is not allowed with swarm = true`,
		`pgo.toml:9: service "web": update_images is not allowed with swarm = true`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in %v", want, err)
		}
	}
	if _, err := parseConfig("pgo.toml", []byte(strings.Replace(head, "true", "\"yes\"", 1))); err == nil || !strings.Contains(err.Error(), "swarm must be true or false") {
		t.Errorf("swarm = \"yes\": %v", err)
	}
	cfg, err = parseConfig("pgo.toml", []byte(head+"placement = [\"node.labels.team==shop\", \"node.role != manager\"]\n"))
	if err != nil || len(cfg.Services[0].Placement) != 2 {
		t.Errorf("placement: %v, %+v", err, cfg)
	}
	_, err = parseConfig("pgo.toml", []byte(head+"placement = [\"team=shop\"]\n"))
	if err == nil || !strings.Contains(err.Error(), `pgo.toml:6: service "web": placement[0]: "team=shop" is not a placement constraint`) {
		t.Errorf("a bad constraint: %v", err)
	}
	_, err = parseConfig("pgo.toml", []byte(strings.Replace(head, "swarm = true\n", "", 1)+"placement = [\"node.labels.team==shop\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "pgo.toml:5: service \"web\": placement needs swarm = true") {
		t.Errorf("placement without swarm: %v", err)
	}
}

// taskFixture is one task for swarmFixture, which builds a service with a spec and tasks for judgeStack.
type taskFixture struct {
	slot    int
	spec    string
	desired string
	state   string
	at      time.Time
	err     string
	exit    int
	id      string
}

func swarmFixture(name, spec string, replicas int, tasks ...taskFixture) (apiService, []apiTask) {
	var s apiService
	s.ID, s.Spec.Name, s.Spec.TaskTemplate = "svc-"+name, name, json.RawMessage(spec)
	s.Spec.Mode.Replicated = &struct {
		Replicas *int `json:"Replicas"`
	}{Replicas: &replicas}
	var ts []apiTask
	for _, f := range tasks {
		var t apiTask
		t.ID, t.ServiceID, t.Slot, t.DesiredState, t.Spec = f.id, s.ID, f.slot, f.desired, json.RawMessage(f.spec)
		t.Status.State, t.Status.Timestamp, t.Status.Err = f.state, f.at, f.err
		if f.exit != 0 {
			t.Status.ContainerStatus = &struct {
				ContainerID string `json:"ContainerID"`
				ExitCode    int    `json:"ExitCode"`
			}{ExitCode: f.exit}
		}
		ts = append(ts, t)
	}
	return s, ts
}

// TestJudgeStack: a stack is ready once every service runs its replicas of
// the current spec and nothing older; a task of the current spec that
// failed since the deploy, or an update Swarm paused, fails it.
func TestJudgeStack(t *testing.T) {
	since := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	now := since.Add(time.Minute)
	const cur = `{"ContainerSpec":{"Image":"web:2"},"ForceUpdate":0,"Runtime":"container"}`
	const curTask = `{"ContainerSpec":{"Image":"web:2"},"ForceUpdate":0}`
	const oldTask = `{"ContainerSpec":{"Image":"web:1"},"ForceUpdate":0}`
	long := since.Add(-time.Hour)
	tests := []struct {
		name     string
		replicas int
		tasks    []taskFixture
		paused   *time.Time
		ready    bool
		failed   string // substring
		culprit  string
		waiting  string // substring of a waiting line
		settling bool
	}{
		{"converged", 2, []taskFixture{
			{slot: 1, spec: curTask, desired: "running", state: "running", at: since},
			{slot: 2, spec: curTask, desired: "running", state: "running", at: since},
			{slot: 1, spec: oldTask, desired: "shutdown", state: "shutdown", at: since},
		}, nil, true, "", "", "", false},
		{"old spec still runs", 1, []taskFixture{
			{slot: 1, spec: curTask, desired: "running", state: "running", at: since},
			{slot: 1, spec: oldTask, desired: "running", state: "running", at: long},
		}, nil, false, "", "", "1 tasks of the previous spec still run", false},
		{"starting", 1, []taskFixture{
			{slot: 1, spec: curTask, desired: "running", state: "starting", at: since, id: "t1"},
		}, nil, false, "", "", "shop_web.1 is starting", false},
		{"too few", 2, []taskFixture{
			{slot: 1, spec: curTask, desired: "running", state: "running", at: since},
		}, nil, false, "", "", "shop_web: 1 of 2 tasks running", false},
		{"failed since the deploy", 1, []taskFixture{
			{slot: 1, spec: curTask, desired: "shutdown", state: "failed", at: since.Add(time.Second), err: "task: non-zero exit (1)", exit: 1, id: "bad"},
			{slot: 1, spec: curTask, desired: "running", state: "ready", at: since.Add(2 * time.Second)},
		}, &since, false, "task shop_web.1 failed: task: non-zero exit (1) (exit status 1)", "bad", "", false},
		{"failed before the deploy", 1, []taskFixture{
			{slot: 1, spec: curTask, desired: "shutdown", state: "failed", at: long, id: "bad"},
			{slot: 1, spec: curTask, desired: "running", state: "running", at: long},
		}, nil, true, "", "", "", false},
		{"old spec failed during a rollback", 1, []taskFixture{
			{slot: 1, spec: oldTask, desired: "shutdown", state: "failed", at: since.Add(time.Second), id: "bad"},
			{slot: 1, spec: curTask, desired: "running", state: "running", at: since.Add(2 * time.Second)},
		}, nil, true, "", "", "", false},
		{"paused by an earlier update", 1, []taskFixture{
			{slot: 1, spec: curTask, desired: "running", state: "running", at: since},
		}, &long, true, "", "", "", false},
		{"paused now", 1, []taskFixture{
			{slot: 1, spec: curTask, desired: "running", state: "running", at: since},
		}, &since, false, "the update of shop_web is paused", "", "", false},
		{"just started", 1, []taskFixture{
			{slot: 1, spec: curTask, desired: "running", state: "running", at: now.Add(-time.Second)},
		}, nil, true, "", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, tasks := swarmFixture("shop_web", cur, tt.replicas, tt.tasks...)
			if tt.paused != nil {
				s.UpdateStatus = &struct {
					State     string    `json:"State"`
					StartedAt time.Time `json:"StartedAt"`
					Message   string    `json:"Message"`
				}{State: "paused", StartedAt: *tt.paused, Message: "update paused due to failure"}
			}
			v := judgeStack("shop", []string{"web"}, map[string]apiService{"shop_web": s}, tasks, since, now)
			if v.ready() != tt.ready || !strings.Contains(v.failed, tt.failed) || (tt.failed == "") != (v.failed == "") || v.culprit != tt.culprit || v.settling != tt.settling {
				t.Errorf("ready %v failed %q culprit %q settling %v waiting %q; want ready %v failed %q culprit %q settling %v",
					v.ready(), v.failed, v.culprit, v.settling, v.waiting, tt.ready, tt.failed, tt.culprit, tt.settling)
			}
			if tt.waiting != "" && !strings.Contains(strings.Join(v.waiting, "\n"), tt.waiting) {
				t.Errorf("waiting %q, want %q", v.waiting, tt.waiting)
			}
		})
	}
	v := judgeStack("shop", []string{"web", "db"}, map[string]apiService{}, nil, since, now)
	if v.ready() || len(v.waiting) != 2 || v.waiting[0] != "shop_web is not there" {
		t.Errorf("no services: waiting %q", v.waiting)
	}
}

// TestNameByContent: the validated project of a swarm service names its
// secrets and configs by content, so a changed file changes the project,
// and the policy still passes it.
func TestNameByContent(t *testing.T) {
	project, vs := renderSwarm(t, swarmClean, swarmFiles())
	if len(vs) > 0 {
		t.Fatalf("violations: %v", vs)
	}
	named, err := nameByContent(project, "shop")
	if err != nil {
		t.Fatal(err)
	}
	m := decodeStack(t, named)
	file := jsonString(jsonObject(jsonObject(m["secrets"])["token"])["file"])
	if n := jsonString(jsonObject(jsonObject(m["secrets"])["token"])["name"]); !strings.HasPrefix(n, "shop_token_") {
		t.Errorf("secret named %q", n)
	}
	checkout := filepath.Dir(file)
	r := renderRequest{Service: &Service{Name: "shop", User: "shop", Swarm: true, Ports: []string{"8080"}}, Checkout: checkout, DataDir: filepath.Join(filepath.Dir(checkout), "data")}
	if vs := validateProject(named, r); len(vs) > 0 {
		t.Errorf("the named project is refused: %v", vs)
	}
	if err := os.WriteFile(file, []byte("rotated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := nameByContent(project, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if string(again) == string(named) {
		t.Error("a changed secret file leaves the project as it was: the commit would not deploy")
	}
}

// swarmAPI serves GET /info with the given swarm state, and /services and
// /tasks recording the filters they were asked with.
func swarmAPI(t *testing.T, info string, asked *[]string) *engineAPI {
	return swarmAPIWith(t, info, `[{"ID":"t1","ServiceID":"s1","Slot":1,"DesiredState":"running","Spec":{"ContainerSpec":{"Image":"web:1"}},"Status":{"State":"running"}}]`, asked)
}

// swarmAPIWith is swarmAPI answering /tasks with tasks, and /nodes.
func swarmAPIWith(t *testing.T, info, tasks string, asked *[]string) *engineAPI {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"Swarm":`+info+`}`) })
	mux.HandleFunc("/services", func(w http.ResponseWriter, r *http.Request) {
		*asked = append(*asked, "services "+r.URL.Query().Get("filters"))
		io.WriteString(w, `[{"ID":"s1","Spec":{"Name":"shop_web","TaskTemplate":{"ContainerSpec":{"Image":"web:1"}}}}]`)
	})
	mux.HandleFunc("/tasks", func(w http.ResponseWriter, r *http.Request) {
		*asked = append(*asked, "tasks "+r.URL.Query().Get("filters"))
		io.WriteString(w, tasks)
	})
	mux.HandleFunc("/nodes", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"ID":"n1","Description":{"Hostname":"web1"}},{"ID":"n2","Description":{"Hostname":"web2"}}]`)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return newEngineAPI(socket)
}

// TestSwarmManager: pgod deploys only on a manager, and says what to do
// on an engine that is not one.
func TestSwarmManager(t *testing.T) {
	for _, tt := range []struct{ info, want string }{
		{`{"LocalNodeState":"active","ControlAvailable":true}`, ""},
		{`{"LocalNodeState":"inactive"}`, "this engine is not in a swarm: run docker swarm init on this host, or join it to the swarm as a manager"},
		{`{"LocalNodeState":"active","ControlAvailable":false}`, "this engine is a swarm worker: docker stack deploy needs a manager"},
		{`{"LocalNodeState":"error","Error":"bad cert"}`, "this engine's swarm is error: bad cert"},
	} {
		var asked []string
		w := &worker{d: &Daemon{engine: swarmAPI(t, tt.info, &asked)}, svc: &Service{Name: "shop", Swarm: true}}
		err := w.swarmManager(context.Background())
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.info, err, tt.want)
		}
	}
	w := &worker{d: &Daemon{}, svc: &Service{Name: "shop", Swarm: true}}
	if err := w.swarmManager(context.Background()); err == nil || !strings.Contains(err.Error(), "--docker-socket") {
		t.Errorf("without the engine's API: %v", err)
	}
}

// TestStackTasks: the stack's services are read by the stack's label and
// their tasks by the services' IDs.
func TestStackTasks(t *testing.T) {
	var asked []string
	w := &worker{d: &Daemon{engine: swarmAPI(t, `{}`, &asked)}, svc: &Service{Name: "shop", Swarm: true}}
	svcs, tasks, err := w.stackTasks(context.Background())
	if err != nil || svcs["shop_web"].ID != "s1" || len(tasks) != 1 {
		t.Fatalf("services %v tasks %v err %v", svcs, tasks, err)
	}
	want := []string{`services {"label":["com.docker.stack.namespace=shop"]}`, `tasks {"service":["s1"]}`}
	if strings.Join(asked, "\n") != strings.Join(want, "\n") {
		t.Errorf("asked\n%s\nwant\n%s", strings.Join(asked, "\n"), strings.Join(want, "\n"))
	}
	v := judgeStack("shop", []string{"web"}, svcs, tasks, time.Now(), time.Now().Add(time.Minute))
	if !v.ready() || v.running != 1 || v.desired != 1 || len(v.entries) != 1 || v.entries[0].Name != "shop_web.1" || v.entries[0].Image != "web:1" {
		t.Errorf("verdict %+v", v)
	}
}

// TestRemoveStackElsewhere: a swarm service that left this host's config
// has its stack removed, unless the config runs it on another host now:
// the stack is the swarm's, and that host's pgod deploys it.
func TestRemoveStackElsewhere(t *testing.T) {
	var asked []string
	var logs strings.Builder
	d := &Daemon{engine: swarmAPI(t, `{"LocalNodeState":"active","ControlAvailable":true}`, &asked),
		log: slog.New(slog.NewTextHandler(&logs, nil)), flags: &daemonFlags{docker: "true"}}
	moved := &Config{Elsewhere: []*Service{{Name: "shop", Swarm: true, Hosts: []string{"web2"}}}}
	d.removeStack(context.Background(), moved, "shop")
	if len(asked) > 0 || !strings.Contains(logs.String(), "its stack stays") {
		t.Errorf("moved to web2: asked %v, logged %q", asked, logs.String())
	}
	d.removeStack(context.Background(), &Config{}, "shop")
	if len(asked) != 1 || !strings.Contains(logs.String(), "removed its stack") {
		t.Errorf("removed: asked %v, logged %q", asked, logs.String())
	}
}

// TestSwarmContainer: exec reaches the container of this node's task, as
// the swarm records it, and names the node of a task that runs elsewhere.
func TestSwarmContainer(t *testing.T) {
	const info = `{"LocalNodeState":"active","ControlAvailable":true,"NodeID":"n1"}`
	task := func(node, state, container string) string {
		return `{"ID":"t-` + node + `","ServiceID":"s1","Slot":1,"NodeID":"` + node + `","DesiredState":"running","Status":{"State":"` + state +
			`","ContainerStatus":{"ContainerID":"` + container + `"}}}`
	}
	for _, tt := range []struct{ tasks, id, err string }{
		{"[" + task("n2", "running", "bbbb") + "," + task("n1", "running", "abc123") + "]", "abc123", ""},
		{"[" + task("n2", "running", "bbbb") + "]", "", "task shop_web.1 runs on node web2; exec reaches only tasks on this node"},
		{"[" + task("n1", "starting", "abc123") + "]", "", "swarm service shop_web has no running task"},
	} {
		var asked []string
		w := &worker{d: &Daemon{engine: swarmAPIWith(t, info, tt.tasks, &asked)}, svc: &Service{Name: "shop", Swarm: true}}
		id, err := w.swarmContainer(context.Background(), "web")
		if id != tt.id || (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("tasks %s: %q, %v; want %q, %q", tt.tasks, id, err, tt.id, tt.err)
		}
	}
}
