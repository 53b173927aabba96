package main

// What a service with swarm = true may hold, and the stack file pgo writes
// from it. docker stack deploy reads its own dialect of compose and skips
// what it does not support with no more than a line on standard error
// ("Ignoring unsupported options: privileged, restart"), so a checked
// project would not be what runs. pgo never hands it the team's file: it
// writes the stack file itself from the canonical project the policy
// judged, with only the keys of swarmShape, which docker stack deploy
// applies (each was checked against the service spec it creates), and
// refuses a project holding any other key with a value.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// stackShape is what the stack file keeps of a JSON value: an object's
// keys, every value of a mapping (each), or every item of a list (items).
// A nil *stackShape keeps the value as it is.
type stackShape struct {
	keys  map[string]*stackShape
	each  *stackShape
	items *stackShape
	drop  bool // allowed in the project, never written: pgo's own, or named on the command line
}

func keysOf(keys map[string]*stackShape) *stackShape { return &stackShape{keys: keys} }
func eachOf(s *stackShape) *stackShape               { return &stackShape{each: s} }
func itemsOf(s *stackShape) *stackShape              { return &stackShape{items: s} }

// leaf keeps a value as it is.
var leaf *stackShape

var dropped = &stackShape{drop: true}

var swarmUpdateConfig = keysOf(map[string]*stackShape{
	"parallelism": leaf, "delay": leaf, "failure_action": leaf, "monitor": leaf,
	"max_failure_ratio": leaf, "order": leaf,
})

var swarmFileRef = itemsOf(keysOf(map[string]*stackShape{
	"source": leaf, "target": leaf, "uid": leaf, "gid": leaf, "mode": leaf,
}))

// swarmServiceShape is every service key docker stack deploy applies.
var swarmServiceShape = keysOf(map[string]*stackShape{
	"image": leaf, "command": leaf, "entrypoint": leaf, "environment": leaf,
	"working_dir": leaf, "user": leaf, "hostname": leaf, "labels": leaf,
	"stop_grace_period": leaf, "stop_signal": leaf, "tty": leaf, "stdin_open": leaf,
	"read_only": leaf, "init": leaf, "cap_add": leaf, "cap_drop": leaf,
	"sysctls": leaf, "ulimits": leaf, "dns": leaf, "dns_search": leaf, "extra_hosts": leaf,
	"healthcheck": keysOf(map[string]*stackShape{
		"test": leaf, "interval": leaf, "timeout": leaf, "retries": leaf, "start_period": leaf, "disable": leaf,
	}),
	"logging":  keysOf(map[string]*stackShape{"driver": leaf, "options": leaf}),
	"ports":    itemsOf(keysOf(map[string]*stackShape{"target": leaf, "published": leaf, "protocol": leaf, "mode": leaf})),
	"networks": eachOf(keysOf(map[string]*stackShape{"aliases": leaf})),
	"volumes": itemsOf(keysOf(map[string]*stackShape{
		"type": leaf, "source": leaf, "target": leaf, "read_only": leaf,
		"volume": keysOf(map[string]*stackShape{"nocopy": leaf}),
		"tmpfs":  keysOf(map[string]*stackShape{"size": leaf}),
	})),
	"secrets": swarmFileRef,
	"configs": swarmFileRef,
	"deploy": keysOf(map[string]*stackShape{
		"mode": leaf, "replicas": leaf, "labels": leaf, "endpoint_mode": leaf,
		"update_config": swarmUpdateConfig, "rollback_config": swarmUpdateConfig,
		"resources": keysOf(map[string]*stackShape{
			"limits":       keysOf(map[string]*stackShape{"cpus": leaf, "memory": leaf, "pids": leaf}),
			"reservations": keysOf(map[string]*stackShape{"cpus": leaf, "memory": leaf, "generic_resources": leaf}),
		}),
		"restart_policy": keysOf(map[string]*stackShape{"condition": leaf, "delay": leaf, "max_attempts": leaf, "window": leaf}),
		"placement": keysOf(map[string]*stackShape{
			"constraints": leaf, "max_replicas_per_node": leaf,
			"preferences": itemsOf(keysOf(map[string]*stackShape{"spread": leaf})),
		}),
	}),
})

var swarmFileObject = eachOf(keysOf(map[string]*stackShape{"name": leaf, "file": leaf, "external": leaf, "labels": leaf}))

// swarmShape is the whole stack file. The project's name is the stack's,
// given on the command line; x-pgo is pgo's own.
var swarmShape = keysOf(map[string]*stackShape{
	"name":     dropped,
	"services": eachOf(swarmServiceShape),
	"networks": eachOf(keysOf(map[string]*stackShape{
		"name": leaf, "driver": leaf, "driver_opts": leaf, "attachable": leaf, "external": leaf,
		"internal": leaf, "labels": leaf, "ipam": keysOf(map[string]*stackShape{"driver": leaf, "config": leaf}),
	})),
	"volumes": eachOf(keysOf(map[string]*stackShape{
		"name": leaf, "driver": leaf, "driver_opts": leaf, "external": leaf, "labels": leaf,
	})),
	"secrets": swarmFileObject,
	"configs": swarmFileObject,
})

// swarmHint says what to do instead of a key docker stack deploy ignores,
// by the key's name in a service.
var swarmHint = map[string]string{
	"build":          "docker stack deploy cannot build; build and push the image to a registry every node reaches, and name it in image:",
	"restart":        "use deploy.restart_policy (condition: any, on-failure or none)",
	"container_name": "Swarm names the tasks itself, <stack>_<service>.<slot>",
	"depends_on":     "Swarm starts services in any order; let a service wait for what it needs (retry, or a healthcheck)",
	"expose":         "services on one overlay network reach each other on every port",
	"links":          "services on one overlay network reach each other by service name",
	"tmpfs":          "write a volumes entry of type: tmpfs",
	"pull_policy":    "pgo resolves the image at the deploy (docker stack deploy --resolve-image)",
	"scale":          "use deploy.replicas",
}

// emptyJSON reports a value compose fills in when the file says nothing:
// null, false, zero, "", {} or [].
func emptyJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case string:
		return v == ""
	case json.Number:
		f, err := v.Float64()
		return err == nil && f == 0
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	}
	return false
}

// pruneStack keeps of v what shape s allows and calls refuse with the path
// of every other key that holds a value. Keys of extensions (x-...) and
// nulls are left out.
func pruneStack(v any, s *stackShape, path string, refuse func(path, key string)) any {
	switch {
	case s == nil:
		return v
	case s.each != nil:
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		out := make(map[string]any, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			out[k] = pruneStack(m[k], s.each, joinPath(path, k), refuse)
		}
		return out
	case s.items != nil:
		l, ok := v.([]any)
		if !ok {
			return v
		}
		out := make([]any, len(l))
		for i, item := range l {
			out[i] = pruneStack(item, s.items, fmt.Sprintf("%s[%d]", path, i), refuse)
		}
		return out
	}
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		sub, known := s.keys[k]
		switch {
		case strings.HasPrefix(k, "x-"):
		case !known:
			if !emptyJSON(m[k]) {
				refuse(joinPath(path, k), k)
			}
		case sub != nil && sub.drop, m[k] == nil:
		default:
			out[k] = pruneStack(m[k], sub, joinPath(path, k), refuse)
		}
	}
	return out
}

// swarmRules are the rules a project on Swarm keeps on top of the
// single-host ones (applyRules): nothing docker stack deploy would ignore,
// no bind mounts, networks that are the project's own overlays, and
// published ports Swarm can publish.
func (c *projectRules) swarmRules() {
	pruneStack(map[string]any(c.p), swarmShape, "", func(path, key string) {
		rel := path
		if svc := serviceOf(path); svc != "" {
			rel = strings.TrimPrefix(path, "services."+svc+".")
		}
		msg := fmt.Sprintf("%s: docker stack deploy ignores it; pgo refuses what would not run as checked", rel)
		if hint := swarmHint[key]; hint != "" && rel == key {
			msg += "; " + hint
		}
		c.add(path, "%s", msg)
	})
	for _, name := range slices.Sorted(maps.Keys(c.services)) {
		s := jsonObject(c.services[name])
		at := "services." + name
		c.composeLabelsReserved(at+".deploy.labels", jsonObject(jsonObject(s["deploy"])["labels"]))
		for i, v := range jsonList(s["volumes"]) {
			if jsonString(jsonObject(v)["type"]) == "bind" {
				c.add(fmt.Sprintf("%s.volumes[%d]", at, i), "bind mounts are not allowed on Swarm: a task may run on any node, and pgo checks and pins host paths on this host only; use a named volume, a config or a secret")
			}
		}
		for i, p := range jsonList(s["ports"]) {
			if _, err := strconv.Atoi(jsonString(jsonObject(p)["published"])); err != nil && jsonObject(p)["published"] != nil {
				c.add(fmt.Sprintf("%s.ports[%d]", at, i), "host port %q: Swarm publishes one port per entry; write one entry per port", jsonString(jsonObject(p)["published"]))
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(c.networks)) {
		n := jsonObject(c.networks[key])
		if !truthy(n["external"]) && truthy(n["attachable"]) {
			c.add("networks."+key+".attachable", "network %q: attachable is not allowed: it lets containers outside the stack, other projects' too, join the network", key)
		}
	}
	for _, kind := range []string{"secrets", "configs"} {
		objs := jsonObject(c.p[kind])
		for _, key := range slices.Sorted(maps.Keys(objs)) {
			c.composeLabelsReserved(kind+"."+key+".labels", jsonObject(jsonObject(objs[key])["labels"]))
			if jsonString(jsonObject(objs[key])["file"]) == "" {
				c.add(kind+"."+key, "%s %q: on Swarm a %s comes from a file of the checkout (file:)", strings.TrimSuffix(kind, "s"), key, strings.TrimSuffix(kind, "s"))
			}
		}
	}
}

// stackFile writes the stack file docker stack deploy reads for project,
// the canonical JSON the policy judged: the keys of swarmShape only, the
// values in the types the stack loader wants, own networks overlays,
// secrets and configs named by their content (see contentName) and the
// operator's placement constraints added to every service's.
func stackFile(project []byte, name string, placement []string) ([]byte, error) {
	p, err := decodeProject(project)
	if err != nil {
		return nil, err
	}
	var refused []string
	out := jsonObject(pruneStack(map[string]any(p), swarmShape, "", func(path, _ string) { refused = append(refused, path) }))
	if len(refused) > 0 {
		return nil, fmt.Errorf("the project holds what docker stack deploy ignores: %s", strings.Join(refused, ", "))
	}
	for _, s := range jsonObject(out["services"]) {
		stackService(jsonObject(s), placement)
	}
	for _, n := range jsonObject(out["networks"]) {
		if n := jsonObject(n); n != nil && !truthy(n["external"]) && jsonString(n["driver"]) == "" {
			n["driver"] = "overlay"
		}
	}
	if err := nameFileObjects(out, name); err != nil {
		return nil, err
	}
	return encodeProject(out, "")
}

// nameByContent names project's secrets and configs after their files'
// content, as the stack file does. The validated project of a swarm
// service carries these names, so that a commit that changes only such a
// file changes what runs and deploys: Swarm copies the content when it
// creates the secret, where compose would mount the file as it is now.
func nameByContent(project []byte, name string) ([]byte, error) {
	p, err := decodeProject(project)
	if err != nil {
		return nil, err
	}
	if err := nameFileObjects(p, name); err != nil {
		return nil, err
	}
	return encodeProject(p, "  ")
}

// nameFileObjects names each secret and config of p that comes from a
// file after the file's content (contentName).
func nameFileObjects(p map[string]any, name string) error {
	for _, kind := range []string{"secrets", "configs"} {
		objs := jsonObject(p[kind])
		for _, key := range slices.Sorted(maps.Keys(objs)) {
			o := jsonObject(objs[key])
			if file := jsonString(o["file"]); file != "" {
				n, err := contentName(name, key, file)
				if err != nil {
					return fmt.Errorf("%s %q: %w", strings.TrimSuffix(kind, "s"), key, err)
				}
				o["name"] = n
			}
		}
	}
	return nil
}

// stackService puts a service's values in the types docker stack deploy's
// loader wants where compose renders others (cpus as a string, sizes and
// published ports as integers) and appends the operator's constraints.
func stackService(s map[string]any, placement []string) {
	res := jsonObject(jsonObject(s["deploy"])["resources"])
	for _, kind := range []string{"limits", "reservations"} {
		if r := jsonObject(res[kind]); r != nil && r["cpus"] != nil {
			r["cpus"] = jsonString(r["cpus"])
		}
	}
	for _, v := range jsonList(s["volumes"]) {
		if t := jsonObject(jsonObject(v)["tmpfs"]); t != nil {
			integer(t, "size")
		}
	}
	for _, p := range jsonList(s["ports"]) {
		if m := jsonObject(p); m != nil {
			integer(m, "published")
		}
	}
	if len(placement) == 0 {
		return
	}
	deploy := jsonObject(s["deploy"])
	if deploy == nil {
		deploy = map[string]any{}
		s["deploy"] = deploy
	}
	place := jsonObject(deploy["placement"])
	if place == nil {
		place = map[string]any{}
		deploy["placement"] = place
	}
	constraints := jsonList(place["constraints"])
	for _, c := range placement {
		constraints = append(constraints, c)
	}
	place["constraints"] = constraints // Swarm ANDs them: the operator's cannot be escaped
}

// integer makes m[key] a JSON number when it is a string of digits.
func integer(m map[string]any, key string) {
	if n, err := strconv.ParseInt(jsonString(m[key]), 10, 64); err == nil {
		m[key] = json.Number(strconv.FormatInt(n, 10))
	}
}

// contentName names a secret or config after its content: Swarm refuses
// to change one in place, so a changed file gets a new name, which the
// service update moves to (pruneStackObjects removes the old one).
func contentName(project, key, file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return project + "_" + key + "_" + hex.EncodeToString(sum[:])[:12], nil
}
