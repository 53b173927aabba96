package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// engineClient reads a Docker Engine API on its Unix socket: the real
// engine's in the real-engine phase, the substitute's to check it answers.
// The driver asks the engine directly rather than through the docker CLI, so
// that its own looks cost the engine little and pgod nothing.
type engineClient struct {
	sock string
	http *http.Client
}

func newEngineClient(sock string) *engineClient {
	return &engineClient{sock: sock, http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}}
}

// get decodes the answer to GET path into v; it returns the status code.
func (e *engineClient) get(path string, v any) (int, error) {
	resp, err := e.http.Get("http://engine" + path)
	if err != nil {
		return 0, fmt.Errorf("engine API on %s: %w", e.sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || v == nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// ping waits until the engine answers /_ping.
func (e *engineClient) ping(deadline time.Duration) error {
	end := time.Now().Add(deadline)
	for {
		code, err := e.get("/_ping", nil)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("engine API on %s does not answer /_ping within %s: %v (status %d)", e.sock, deadline, err, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type apiContainer struct {
	ID     string `json:"Id"`
	Names  []string
	State  string
	Labels map[string]string
}

// containers lists the containers, stopped ones too, that carry every label.
func (e *engineClient) containers(labels ...string) ([]apiContainer, error) {
	filters, _ := json.Marshal(map[string][]string{"label": labels})
	var list []apiContainer
	code, err := e.get("/containers/json?all=1&filters="+url.QueryEscape(string(filters)), &list)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /containers/json: status %d", code)
	}
	return list, err
}

type apiInspect struct {
	ID    string `json:"Id"`
	State struct {
		Running bool
	}
	Config struct {
		Env []string
	}
}

// inspect is the container's details; found is false when there is none.
func (e *engineClient) inspect(name string) (c apiInspect, found bool, err error) {
	code, err := e.get("/containers/"+url.PathEscape(name)+"/json", &c)
	if err != nil {
		return c, false, err
	}
	switch code {
	case http.StatusOK:
		return c, true, nil
	case http.StatusNotFound:
		return c, false, nil
	}
	return c, false, fmt.Errorf("GET /containers/%s/json: status %d", name, code)
}

// engineProcesses are the engine's own processes, whose CPU the drift check
// costs as much as pgod's: the daemon, containerd and the per-container shims.
var engineProcesses = map[string]bool{"dockerd": true, "containerd": true, "containerd-shim": true, "containerd-shim-runc-v2": true}

// engineCPU is the CPU the engine's processes have used so far, with the
// children they reaped. Shims of removed containers drop out of the sum, so
// only windows in which no container goes away are measured with it.
func engineCPU() time.Duration {
	var total time.Duration
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		comm, cpu, err := procCPU(filepath.Join("/proc", ent.Name(), "stat"))
		if err == nil && engineProcesses[comm] {
			total += cpu
		}
	}
	return total
}

// procCPU reads a /proc/PID/stat: the command name and utime+stime+cutime+cstime.
func procCPU(path string) (string, time.Duration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	s := string(data)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, fmt.Errorf("%s: no command name", path)
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 15 {
		return "", 0, fmt.Errorf("%s: short", path)
	}
	var cpu time.Duration
	for i := 14; i <= 17; i++ { // utime, stime, cutime, cstime: fields 14-17, counted from 1
		n, _ := strconv.ParseInt(fields[i-3], 10, 64)
		cpu += time.Duration(n) * clockTick
	}
	return s[open+1 : closing], cpu, nil
}
