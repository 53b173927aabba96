package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// engineAPI reads the Docker Engine's state over its Unix socket: the
// containers of a project, a container's details, whether an image or a
// network exists, and the event stream. Reads only, and no process for any
// of them: a "docker ps" costs 10 to 20 ms of CPU, and pgod looks at every
// project's containers every cycle and twice a second during a health gate.
// Everything that changes the engine still goes through docker and compose,
// run as the service's user.
type engineAPI struct {
	socket string
	client *http.Client // requests with a deadline
	stream *http.Client // the event stream, which lasts
}

// engineTimeout bounds one request; the engine answers these in milliseconds.
const engineTimeout = 30 * time.Second

// maxEngineAnswer bounds what pgod reads of one answer: a project's
// containers, or one container's or image's details.
const maxEngineAnswer = 16 << 20

func newEngineAPI(socket string) *engineAPI {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	return &engineAPI{
		socket: socket,
		client: &http.Client{Timeout: engineTimeout, Transport: &http.Transport{DialContext: dial, MaxIdleConns: 4}},
		stream: &http.Client{Transport: &http.Transport{DialContext: dial, ResponseHeaderTimeout: engineTimeout}},
	}
}

// errNoSuchObject is the engine's 404: no container, image or network of that name.
var errNoSuchObject = errors.New("no such object")

// get asks for path (with query) and decodes the JSON answer into v.
func (e *engineAPI) get(ctx context.Context, path string, query url.Values, v any) error {
	body, err := e.getRaw(ctx, path, query)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("engine %s: %w", path, err)
	}
	return nil
}

// getRaw asks for path and returns the answer's body.
func (e *engineAPI) getRaw(ctx context.Context, path string, query url.Values) ([]byte, error) {
	resp, err := e.do(ctx, e.client, path, query)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEngineAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("engine %s: %w", path, err)
	}
	if len(body) > maxEngineAnswer {
		return nil, fmt.Errorf("engine %s: the answer exceeds %d bytes", path, maxEngineAnswer)
	}
	return body, nil
}

// do sends the request and checks the status; the caller closes the body.
func (e *engineAPI) do(ctx context.Context, c *http.Client, path string, query url.Values) (*http.Response, error) {
	u := "http://docker" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("engine at %s: %w", e.socket, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var msg struct {
		Message string `json:"message"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&msg)
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %s", errNoSuchObject, msg.Message)
	}
	return nil, fmt.Errorf("engine %s: %s: %s", path, resp.Status, msg.Message)
}

// ping checks that the engine answers on the socket.
func (e *engineAPI) ping(ctx context.Context) error {
	_, err := e.getRaw(ctx, "/_ping", nil)
	return err
}

// filters is the engine's filters parameter.
func filters(f map[string][]string) url.Values {
	b, _ := json.Marshal(f)
	return url.Values{"filters": {string(b)}}
}

// labelFilter is the engine's filters parameter selecting by labels, for
// every container, stopped ones too.
func labelFilter(labels ...string) url.Values {
	q := filters(map[string][]string{"label": labels})
	q.Set("all", "1")
	return q
}

// apiContainer is one container of the engine's list.
type apiContainer struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	Image  string            `json:"Image"`
	State  string            `json:"State"`
	Status string            `json:"Status"`
	Labels map[string]string `json:"Labels"`
}

// entry is the container as docker ps would show it with psFormat.
func (c apiContainer) entry() psEntry {
	name := c.ID
	if len(c.Names) > 0 {
		name = strings.TrimPrefix(c.Names[0], "/")
	}
	return psEntry{Name: name, Service: c.Labels[composeServiceLabel], State: c.State, Image: c.Image, Health: healthOf(c.Status)}
}

// Labels compose puts on the containers it makes.
const (
	composeServiceLabel = "com.docker.compose.service"
	composeOneoffLabel  = "com.docker.compose.oneoff"
)

// projectContainers lists project's containers, stopped ones too, but not
// one-off ones ("compose run"), like worker.containers asks docker ps.
func (e *engineAPI) projectContainers(ctx context.Context, project string) ([]psEntry, error) {
	var list []apiContainer
	if err := e.get(ctx, "/containers/json", labelFilter(composeProjectLabel+"="+project, composeOneoffLabel+"=False"), &list); err != nil {
		return nil, err
	}
	entries := make([]psEntry, 0, len(list))
	for _, c := range list {
		entries = append(entries, c.entry())
	}
	return entries, nil
}

// composeContainers lists every compose project's containers, one-off ones
// left out, by project.
func (e *engineAPI) composeContainers(ctx context.Context) (map[string][]psEntry, error) {
	var list []apiContainer
	if err := e.get(ctx, "/containers/json", labelFilter(composeProjectLabel), &list); err != nil {
		return nil, err
	}
	byProject := map[string][]psEntry{}
	for _, c := range list {
		if c.Labels[composeOneoffLabel] == "True" {
			continue
		}
		p := c.Labels[composeProjectLabel]
		byProject[p] = append(byProject[p], c.entry())
	}
	return byProject, nil
}

// apiInspect is what the gate reads of a container's details.
type apiInspect struct {
	Name         string `json:"Name"`
	RestartCount int    `json:"RestartCount"`
	Config       struct {
		Image  string            `json:"Image"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	State struct {
		Status    string `json:"Status"`
		ExitCode  int    `json:"ExitCode"`
		StartedAt string `json:"StartedAt"`
		Health    *struct {
			Status string `json:"Status"`
		} `json:"Health"`
	} `json:"State"`
}

// inspectContainers reports project's containers as the gate needs them:
// the list, then each one's details. A container removed in between is left out.
func (e *engineAPI) inspectContainers(ctx context.Context, project string) ([]containerHealth, error) {
	ps, err := e.projectContainers(ctx, project)
	if err != nil {
		return nil, err
	}
	var cs []containerHealth
	for _, p := range ps {
		var c apiInspect
		err := e.get(ctx, "/containers/"+url.PathEscape(p.Name)+"/json", nil, &c)
		if errors.Is(err, errNoSuchObject) {
			continue
		}
		if err != nil {
			return nil, err
		}
		cs = append(cs, c.health())
	}
	return cs, nil
}

func (c apiInspect) health() containerHealth {
	h := containerHealth{psEntry: psEntry{Name: strings.TrimPrefix(c.Name, "/"), Service: c.Config.Labels[composeServiceLabel],
		Image: c.Config.Image, State: c.State.Status}, Restarts: c.RestartCount, ExitCode: c.State.ExitCode}
	if c.State.Health != nil {
		h.Health = c.State.Health.Status
	}
	h.StartedAt, _ = time.Parse(time.RFC3339Nano, c.State.StartedAt) // "0001-01-01T00:00:00Z" before the first start
	return h
}

// objectName is what pgod puts in a path of the API: an image reference or a
// network name, never anything that could end the path or start a query.
var objectName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$`)

// inspector answers the policy's "docker image inspect NAME" and "docker
// network inspect NAME" from the API, in the CLI's shape (a list of one);
// anything else, and a name the API could misread, goes to fallback.
func (e *engineAPI) inspector(fallback engineInspector) engineInspector {
	return func(ctx context.Context, args ...string) ([]byte, error) {
		if len(args) != 3 || args[1] != "inspect" || !objectName.MatchString(args[2]) || strings.Contains(args[2], "..") {
			return fallback(ctx, args...)
		}
		var path string
		switch args[0] {
		case "image":
			path = "/images/" + args[2] + "/json"
		case "network":
			path = "/networks/" + url.PathEscape(args[2])
		default:
			return fallback(ctx, args...)
		}
		body, err := e.getRaw(ctx, path, nil)
		if err != nil {
			return nil, err
		}
		return append(append([]byte("["), body...), ']'), nil
	}
}

// hasImage reports whether the engine has an image under ref.
func (e *engineAPI) hasImage(ctx context.Context, ref string) (bool, error) {
	if !objectName.MatchString(ref) || strings.Contains(ref, "..") {
		return false, nil // let compose pull judge it
	}
	_, err := e.getRaw(ctx, "/images/"+ref+"/json", nil)
	if errors.Is(err, errNoSuchObject) {
		return false, nil
	}
	return err == nil, err
}

// engineEvent is one message of the event stream.
type engineEvent struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
}

// events opens the stream of the compose containers' events; each decoded
// event goes to saw until the stream ends, which it returns as an error.
// connected runs once the engine has accepted the request, before the
// first event: what the caller lists then is current from that moment.
func (e *engineAPI) events(ctx context.Context, connected func() error, saw func(engineEvent)) error {
	q := filters(map[string][]string{"type": {"container"}, "label": {composeProjectLabel}})
	resp, err := e.do(ctx, e.stream, "/events", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := connected(); err != nil {
		return err
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev engineEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return errors.New("the engine closed its event stream")
			}
			return fmt.Errorf("engine events: %w", err)
		}
		saw(ev)
	}
}

// Swarm reads, for services on Swarm (swarm.go): whether this engine
// manages a swarm, a stack's services, their tasks and the nodes' names.

// stackLabel is the label docker stack deploy puts on a stack's services.
const stackLabel = "com.docker.stack.namespace"

// apiSwarm is the part of GET /info that says what this node is in a swarm.
type apiSwarm struct {
	LocalNodeState   string `json:"LocalNodeState"` // inactive, pending, active, error, locked
	ControlAvailable bool   `json:"ControlAvailable"`
	NodeID           string `json:"NodeID"`
	Error            string `json:"Error"`
}

// apiService is what pgod reads of a swarm service.
type apiService struct {
	ID   string `json:"ID"`
	Spec struct {
		Name         string          `json:"Name"`
		TaskTemplate json.RawMessage `json:"TaskTemplate"`
		Mode         struct {
			Replicated *struct {
				Replicas *int `json:"Replicas"`
			} `json:"Replicated"` // nil for a global service
		} `json:"Mode"`
	} `json:"Spec"`
	UpdateStatus *struct {
		State     string    `json:"State"`
		StartedAt time.Time `json:"StartedAt"`
		Message   string    `json:"Message"`
	} `json:"UpdateStatus"`
}

// apiTask is what pgod reads of a swarm task.
type apiTask struct {
	ID           string          `json:"ID"`
	ServiceID    string          `json:"ServiceID"`
	Slot         int             `json:"Slot"`
	NodeID       string          `json:"NodeID"`
	DesiredState string          `json:"DesiredState"`
	Spec         json.RawMessage `json:"Spec"`
	Status       struct {
		Timestamp       time.Time `json:"Timestamp"`
		State           string    `json:"State"`
		Message         string    `json:"Message"`
		Err             string    `json:"Err"`
		ContainerStatus *struct {
			ContainerID string `json:"ContainerID"`
			ExitCode    int    `json:"ExitCode"`
		} `json:"ContainerStatus"`
	} `json:"Status"`
}

// swarmInfo says whether this engine is in a swarm and manages it.
func (e *engineAPI) swarmInfo(ctx context.Context) (apiSwarm, error) {
	var info struct {
		Swarm apiSwarm `json:"Swarm"`
	}
	err := e.get(ctx, "/info", nil, &info)
	return info.Swarm, err
}

// stackServices lists the services of stack.
func (e *engineAPI) stackServices(ctx context.Context, stack string) ([]apiService, error) {
	var list []apiService
	err := e.get(ctx, "/services", filters(map[string][]string{"label": {stackLabel + "=" + stack}}), &list)
	return list, err
}

// stackNetworks counts the networks of stack, which docker stack rm
// removes after the services, while the tasks' containers go.
func (e *engineAPI) stackNetworks(ctx context.Context, stack string) (int, error) {
	var list []struct {
		ID string `json:"Id"`
	}
	err := e.get(ctx, "/networks", filters(map[string][]string{"label": {stackLabel + "=" + stack}}), &list)
	return len(list), err
}

// stackObjects names the secrets or configs (kind) of stack.
func (e *engineAPI) stackObjects(ctx context.Context, kind, stack string) ([]string, error) {
	var list []struct {
		Spec struct {
			Name string `json:"Name"`
		} `json:"Spec"`
	}
	if err := e.get(ctx, "/"+kind, filters(map[string][]string{"label": {stackLabel + "=" + stack}}), &list); err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, o := range list {
		names[i] = o.Spec.Name
	}
	return names, nil
}

// serviceTasks lists the tasks of the services with these IDs, old ones too.
func (e *engineAPI) serviceTasks(ctx context.Context, ids []string) ([]apiTask, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var list []apiTask
	err := e.get(ctx, "/tasks", filters(map[string][]string{"service": ids}), &list)
	return list, err
}

// nodeNames maps the swarm's node IDs to their host names.
func (e *engineAPI) nodeNames(ctx context.Context) (map[string]string, error) {
	var list []struct {
		ID          string `json:"ID"`
		Description struct {
			Hostname string `json:"Hostname"`
		} `json:"Description"`
	}
	if err := e.get(ctx, "/nodes", nil, &list); err != nil {
		return nil, err
	}
	names := make(map[string]string, len(list))
	for _, n := range list {
		names[n.ID] = n.Description.Hostname
	}
	return names, nil
}
