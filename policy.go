package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// shape is what pgo knows of a place in compose's canonical JSON. A value
// that does not fit, or an object key pgo does not know, is a violation: every
// compose release adds keys, and an unknown key may be a new way to the host.
type shape struct {
	keys   map[string]*shape // an object with these keys
	values *shape            // an object with free keys (labels, environment), values of this shape
	elems  *shape            // an array of these
	scalar bool              // a string, number, boolean or null
	null   bool              // null (an empty command, a network without options)
}

func objShape(keys map[string]*shape) *shape { return &shape{keys: keys} }
func listOf(s *shape) *shape                 { return &shape{elems: s} }
func mapOf(s *shape) *shape                  { return &shape{values: s} }

var (
	scalar      = &shape{scalar: true}
	scalarList  = &shape{null: true, elems: scalar} // null or a list of values
	scalarMap   = &shape{null: true, values: scalar}
	scalarsMap  = &shape{values: scalarList} // provider options: values or lists
	fileRef     = objShape(map[string]*shape{"source": scalar, "target": scalar, "uid": scalar, "gid": scalar, "mode": scalar})
	ulimitShape = mapOf(&shape{scalar: true, keys: map[string]*shape{"soft": scalar, "hard": scalar}})
	hookShape   = objShape(map[string]*shape{"command": scalarList, "user": scalar, "privileged": scalar, "working_dir": scalar, "environment": scalarMap})
	deviceReq   = objShape(map[string]*shape{"capabilities": scalarList, "driver": scalar, "count": scalar, "device_ids": scalarList, "options": scalarMap})
	resource    = objShape(map[string]*shape{"cpus": scalar, "memory": scalar, "pids": scalar, "devices": listOf(deviceReq),
		"generic_resources": listOf(objShape(map[string]*shape{"discrete_resource_spec": objShape(map[string]*shape{"kind": scalar, "value": scalar})}))})
	updateShape = objShape(map[string]*shape{"parallelism": scalar, "delay": scalar, "failure_action": scalar, "monitor": scalar, "max_failure_ratio": scalar, "order": scalar})
	throttle    = listOf(objShape(map[string]*shape{"Path": scalar, "Rate": scalar}))
)

var buildShape = objShape(map[string]*shape{
	"context": scalar, "dockerfile": scalar, "dockerfile_inline": scalar, "entitlements": scalarList,
	"args": scalarMap, "provenance": scalar, "sbom": scalar, "ssh": scalarList, "labels": scalarMap,
	"cache_from": scalarList, "cache_to": scalarList, "no_cache": scalar, "additional_contexts": scalarMap,
	"pull": scalar, "extra_hosts": scalarList, "isolation": scalar, "network": scalar, "target": scalar,
	"secrets": listOf(fileRef), "shm_size": scalar, "tags": scalarList, "ulimits": ulimitShape,
	"platforms": scalarList, "privileged": scalar,
})

var serviceShape = objShape(map[string]*shape{
	"profiles": scalarList, "annotations": scalarMap, "attach": scalar, "build": buildShape,
	"develop": objShape(map[string]*shape{"watch": listOf(objShape(map[string]*shape{
		"path": scalar, "action": scalar, "target": scalar, "exec": hookShape,
		"include": scalarList, "ignore": scalarList, "initial_sync": scalar}))}),
	"blkio_config": objShape(map[string]*shape{"weight": scalar,
		"weight_device":   listOf(objShape(map[string]*shape{"Path": scalar, "Weight": scalar})),
		"device_read_bps": throttle, "device_read_iops": throttle,
		"device_write_bps": throttle, "device_write_iops": throttle}),
	"cap_add": scalarList, "cap_drop": scalarList, "cgroup_parent": scalar, "cgroup": scalar,
	"cpu_count": scalar, "cpu_percent": scalar, "cpu_period": scalar, "cpu_quota": scalar,
	"cpu_rt_period": scalar, "cpu_rt_runtime": scalar, "cpus": scalar, "cpuset": scalar, "cpu_shares": scalar,
	"command": scalarList, "configs": listOf(fileRef), "container_name": scalar,
	"depends_on": mapOf(objShape(map[string]*shape{"condition": scalar, "restart": scalar, "required": scalar})),
	"deploy": objShape(map[string]*shape{"mode": scalar, "replicas": scalar, "labels": scalarMap,
		"update_config": updateShape, "rollback_config": updateShape,
		"resources":      objShape(map[string]*shape{"limits": resource, "reservations": resource}),
		"restart_policy": objShape(map[string]*shape{"condition": scalar, "delay": scalar, "max_attempts": scalar, "window": scalar}),
		"placement": objShape(map[string]*shape{"constraints": scalarList, "max_replicas_per_node": scalar,
			"preferences": listOf(objShape(map[string]*shape{"spread": scalar}))}),
		"endpoint_mode": scalar}),
	"device_cgroup_rules": scalarList,
	"devices":             listOf(objShape(map[string]*shape{"source": scalar, "target": scalar, "permissions": scalar})),
	"dns":                 scalarList, "dns_opt": scalarList, "dns_search": scalarList, "domainname": scalar,
	"entrypoint": scalarList, "provider": objShape(map[string]*shape{"type": scalar, "options": scalarsMap}),
	"environment": scalarMap, "expose": scalarList, "external_links": scalarList, "extra_hosts": scalarList,
	"group_add": scalarList, "gpus": listOf(deviceReq), "hostname": scalar,
	"healthcheck": objShape(map[string]*shape{"test": scalarList, "timeout": scalar, "interval": scalar, "retries": scalar,
		"start_period": scalar, "start_interval": scalar, "disable": scalar}),
	"image": scalar, "init": scalar, "ipc": scalar, "isolation": scalar, "labels": scalarMap, "links": scalarList,
	"logging":   objShape(map[string]*shape{"driver": scalar, "options": scalarMap}),
	"mem_limit": scalar, "mem_reservation": scalar, "memswap_limit": scalar, "mem_swappiness": scalar,
	"mac_address":  scalar,
	"models":       mapOf(&shape{null: true, keys: map[string]*shape{"endpoint_var": scalar, "model_var": scalar}}),
	"network_mode": scalar,
	"networks": mapOf(&shape{null: true, keys: map[string]*shape{"aliases": scalarList, "driver_opts": scalarMap,
		"gw_priority": scalar, "interface_name": scalar, "ipv4_address": scalar, "ipv6_address": scalar,
		"link_local_ips": scalarList, "mac_address": scalar, "priority": scalar}}),
	"oom_kill_disable": scalar, "oom_score_adj": scalar, "pid": scalar, "pids_limit": scalar, "platform": scalar,
	"ports": listOf(objShape(map[string]*shape{"name": scalar, "mode": scalar, "host_ip": scalar, "target": scalar,
		"published": scalar, "protocol": scalar, "app_protocol": scalar})),
	"privileged": scalar, "pull_policy": scalar, "read_only": scalar, "restart": scalar, "runtime": scalar,
	"scale": scalar, "secrets": listOf(fileRef), "security_opt": scalarList, "shm_size": scalar,
	"stdin_open": scalar, "stop_grace_period": scalar, "stop_signal": scalar, "storage_opt": scalarMap,
	"sysctls": scalarMap, "tmpfs": scalarList, "tty": scalar, "ulimits": ulimitShape, "use_api_socket": scalar,
	"user": scalar, "userns_mode": scalar, "uts": scalar,
	"volumes": listOf(objShape(map[string]*shape{"type": scalar, "source": scalar, "target": scalar, "read_only": scalar,
		"consistency": scalar,
		"bind":        objShape(map[string]*shape{"selinux": scalar, "propagation": scalar, "create_host_path": scalar, "recursive": scalar}),
		"volume":      objShape(map[string]*shape{"labels": scalarMap, "nocopy": scalar, "subpath": scalar}),
		"tmpfs":       objShape(map[string]*shape{"size": scalar, "mode": scalar}),
		"image":       objShape(map[string]*shape{"subpath": scalar})})),
	"volumes_from": scalarList, "working_dir": scalar,
	"post_start": listOf(hookShape), "pre_stop": listOf(hookShape),
})

var fileObjectShape = objShape(map[string]*shape{"name": scalar, "file": scalar, "environment": scalar, "content": scalar,
	"external": scalar, "labels": scalarMap, "driver": scalar, "driver_opts": scalarMap, "template_driver": scalar})

var projectShape = objShape(map[string]*shape{
	"name":     scalar,
	"services": mapOf(serviceShape),
	"networks": mapOf(objShape(map[string]*shape{"name": scalar, "driver": scalar, "driver_opts": scalarMap,
		"ipam": objShape(map[string]*shape{"driver": scalar, "config": listOf(objShape(map[string]*shape{
			"subnet": scalar, "gateway": scalar, "ip_range": scalar, "aux_addresses": scalarMap}))}),
		"external": scalar, "internal": scalar, "attachable": scalar, "labels": scalarMap,
		"enable_ipv4": scalar, "enable_ipv6": scalar})),
	"volumes": mapOf(objShape(map[string]*shape{"name": scalar, "driver": scalar, "driver_opts": scalarMap,
		"external": scalar, "labels": scalarMap})),
	"secrets": mapOf(fileObjectShape),
	"configs": mapOf(fileObjectShape),
})

// checkShape walks v and reports every key and value pgo does not know.
// Top-level x-* extensions are free-form (compose ignores them), except x-pgo.
func checkShape(path string, v any, s *shape, vs []violation) []violation {
	switch v := v.(type) {
	case map[string]any:
		switch {
		case s.keys != nil:
			for _, k := range sortedKeys(v) {
				p := joinPath(path, k)
				if path == "" && strings.HasPrefix(k, "x-") {
					continue
				}
				child, ok := s.keys[k]
				if !ok {
					vs = append(vs, violation{Path: p, Service: serviceOf(p), Msg: fmt.Sprintf("unknown key %q is not allowed (pgo fails closed on compose keys it does not know)", k)})
					continue
				}
				vs = checkShape(p, v[k], child, vs)
			}
		case s.values != nil:
			for _, k := range sortedKeys(v) {
				vs = checkShape(joinPath(path, k), v[k], s.values, vs)
			}
		default:
			vs = append(vs, violation{Path: path, Service: serviceOf(path), Msg: "an object is not allowed here"})
		}
	case []any:
		if s.elems == nil {
			return append(vs, violation{Path: path, Service: serviceOf(path), Msg: "a list is not allowed here"})
		}
		for i, e := range v {
			vs = checkShape(fmt.Sprintf("%s[%d]", path, i), e, s.elems, vs)
		}
	default:
		if !s.scalar && !(v == nil && s.null) {
			return append(vs, violation{Path: path, Service: serviceOf(path), Msg: "a plain value is not allowed here"})
		}
	}
	return vs
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// serviceOf names the compose service a key path belongs to.
func serviceOf(path string) string {
	rest, ok := strings.CutPrefix(path, "services.")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ".")
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	return name
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// decodeProject parses canonical JSON, keeping numbers exact.
func decodeProject(project []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(project))
	dec.UseNumber()
	var p map[string]any
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the project")
	}
	if p == nil {
		return nil, fmt.Errorf("the project is not a JSON object")
	}
	return p, nil
}

// validateProject checks canonical compose JSON against the policy.
func validateProject(project []byte, r renderRequest) []violation {
	p, err := decodeProject(project)
	if err != nil {
		return []violation{{Msg: fmt.Sprintf("cannot decode the rendered project: %v", err)}}
	}
	c := newChecker(p, r)
	c.vs = checkShape("", p, projectShape, nil)
	c.checkProject()
	for _, name := range sortedKeys(c.services) {
		c.checkService(name, jsonObject(c.services[name]))
	}
	c.checkPaths()
	return c.vs
}

// recheckPaths re-resolves, right before "up", every host path of a project
// validated earlier: bind mount sources, secret and config files, build
// contexts. A symlink swapped in since the check is caught here.
func recheckPaths(project []byte, r renderRequest) []violation {
	p, err := decodeProject(project)
	if err != nil {
		return []violation{{Msg: fmt.Sprintf("cannot decode the rendered project: %v", err)}}
	}
	c := newChecker(p, r)
	c.checkPaths()
	return c.vs
}

// xPgoReload reports the project's x-pgo reload setting: false only when the
// compose file says x-pgo: {reload: false}.
func xPgoReload(project []byte) bool {
	p, err := decodeProject(project)
	if err != nil {
		return true
	}
	b, ok := jsonObject(p["x-pgo"])["reload"].(bool)
	return !ok || b
}

func newChecker(p map[string]any, r renderRequest) *checker {
	if r.Service == nil {
		r.Service = &Service{}
	}
	return &checker{r: r, p: p, name: r.Service.Name, services: jsonObject(p["services"])}
}

// checker holds one validation run.
type checker struct {
	r        renderRequest
	p        map[string]any
	name     string         // project name = pgo service name
	services map[string]any // compose services
	vs       []violation
}

func (c *checker) add(path, format string, args ...any) {
	c.vs = append(c.vs, violation{Path: path, Service: serviceOf(path), Msg: fmt.Sprintf(format, args...)})
}

func jsonObject(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func jsonList(v any) []any {
	l, _ := v.([]any)
	return l
}

// jsonString returns a scalar as compose would read it back.
func jsonString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}

// truthy reports whether a flag is set. Compose's canonical JSON has real
// booleans; anything else that is not plainly false or empty counts as set,
// so that a value compose might read as true is never waved through.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "", "false", "0", "no", "off", "n":
			return false
		}
	case json.Number:
		return v.String() != "0"
	}
	return true
}

func (c *checker) checkProject() {
	if n := jsonString(c.p["name"]); n != c.name {
		c.add("name", "project name %q is not the service name %q", n, c.name)
	}
	if x, ok := c.p["x-pgo"]; ok {
		m, isMap := x.(map[string]any)
		if !isMap {
			c.add("x-pgo", "x-pgo must be a mapping with only the key reload")
		}
		for _, k := range sortedKeys(m) {
			if k != "reload" {
				c.add("x-pgo."+k, "x-pgo key %q is not allowed; only reload is", k)
			} else if _, ok := m[k].(bool); !ok {
				c.add("x-pgo.reload", "x-pgo reload must be true or false")
			}
		}
	}
	if _, ok := c.p["models"]; ok {
		c.add("models", "models are not allowed")
	}
	c.checkNetworks()
	c.checkVolumes()
	c.checkFileObjects("secrets")
	c.checkFileObjects("configs")
}

// ownName is the engine name compose gives a project's own resource; an
// explicit name: that differs may be another project's volume or network.
func (c *checker) ownName(key string) string { return c.name + "_" + key }

func (c *checker) checkNetworks() {
	nets := jsonObject(c.p["networks"])
	own, external := 0, 0
	for _, key := range sortedKeys(nets) {
		n := jsonObject(nets[key])
		path := "networks." + key
		name := jsonString(n["name"])
		if truthy(n["external"]) {
			external++
			switch {
			case name == "host" || name == "bridge" || name == "none":
				c.add(path, "network %q: external network %q is not allowed", key, name)
			case len(c.r.Service.Networks) > 0 && !containsString(c.r.Service.Networks, name):
				c.add(path, "network %q: external network %q is not allowed; allowed: %s", key, name, strings.Join(c.r.Service.Networks, ", "))
			}
			continue
		}
		own++
		if name != "" && name != c.ownName(key) {
			c.add(path+".name", "network %q: name %q is not allowed: a project's networks are named %s_<key>", key, name, c.name)
		}
		if d := jsonString(n["driver"]); d != "" && d != "bridge" {
			c.add(path+".driver", "network %q: driver %q is not allowed; only bridge", key, d)
		}
		for _, opt := range sortedKeys(jsonObject(n["driver_opts"])) {
			if !safeNetworkOpts[opt] {
				c.add(path+".driver_opts", "network %q: driver option %q is not allowed", key, opt)
			}
		}
		c.checkLabels(path+".labels", jsonObject(n["labels"]))
	}
	if len(c.r.Service.Networks) > 0 && external > 0 && own == 0 {
		c.add("networks", "a project on an external network needs a network of its own too")
	}
}

// safeNetworkOpts are bridge options that cannot attach the network to
// something that exists outside the project (com.docker.network.bridge.name can).
var safeNetworkOpts = map[string]bool{
	"com.docker.network.driver.mtu":                  true,
	"com.docker.network.bridge.enable_icc":           true,
	"com.docker.network.bridge.enable_ip_masquerade": true,
	"com.docker.network.container_iface_prefix":      true,
}

func (c *checker) checkVolumes() {
	vols := jsonObject(c.p["volumes"])
	for _, key := range sortedKeys(vols) {
		v := jsonObject(vols[key])
		path := "volumes." + key
		if truthy(v["external"]) {
			c.add(path+".external", "volume %q: external volume %q is not allowed: it is outside the project", key, jsonString(v["name"]))
			continue
		}
		if name := jsonString(v["name"]); name != "" && name != c.ownName(key) {
			c.add(path+".name", "volume %q: name %q is not allowed: a project's volumes are named %s_<key>", key, name, c.name)
		}
		if d := jsonString(v["driver"]); d != "" && d != "local" {
			c.add(path+".driver", "volume %q: driver %q is not allowed; only local", key, d)
		}
		if len(jsonObject(v["driver_opts"])) > 0 {
			c.add(path+".driver_opts", "volume %q: driver_opts are not allowed (they can mount any host path)", key)
		}
		c.checkLabels(path+".labels", jsonObject(v["labels"]))
	}
}

func (c *checker) checkFileObjects(kind string) {
	objs := jsonObject(c.p[kind])
	for _, key := range sortedKeys(objs) {
		o := jsonObject(objs[key])
		path := kind + "." + key
		if o["environment"] != nil {
			c.add(path+".environment", "%s %q: %s from the environment are not allowed", kind[:len(kind)-1], key, kind)
		}
		if truthy(o["external"]) {
			c.add(path+".external", "%s %q: external %s are not allowed", kind[:len(kind)-1], key, kind)
		}
		if d := jsonString(o["driver"]); d != "" {
			c.add(path+".driver", "%s %q: driver %q is not allowed", kind[:len(kind)-1], key, d)
		}
		if d := jsonString(o["template_driver"]); d != "" {
			c.add(path+".template_driver", "%s %q: template_driver %q is not allowed", kind[:len(kind)-1], key, d)
		}
	}
}

// checkLabels refuses labels compose itself uses to tell projects apart.
func (c *checker) checkLabels(path string, labels map[string]any) {
	for _, k := range sortedKeys(labels) {
		if strings.HasPrefix(k, "com.docker.compose.") {
			c.add(path, "label %q is reserved for compose", k)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// checkService applies the per-service rules.
func (c *checker) checkService(name string, s map[string]any) {
	path := "services." + name
	at := func(key string) string { return path + "." + key }

	if truthy(s["privileged"]) {
		c.add(at("privileged"), "privileged is not allowed")
	}
	if truthy(jsonObject(s["build"])["privileged"]) {
		c.add(at("build.privileged"), "privileged build is not allowed")
	}
	for _, hook := range []string{"post_start", "pre_stop"} {
		for i, h := range jsonList(s[hook]) {
			if truthy(jsonObject(h)["privileged"]) {
				c.add(fmt.Sprintf("%s[%d].privileged", at(hook), i), "privileged %s hook is not allowed", hook)
			}
		}
	}
	for i, w := range jsonList(jsonObject(s["develop"])["watch"]) {
		if truthy(jsonObject(jsonObject(w)["exec"])["privileged"]) {
			c.add(fmt.Sprintf("%s[%d].exec.privileged", at("develop.watch"), i), "privileged develop.watch exec is not allowed")
		}
	}

	c.checkNetworkMode(at("network_mode"), jsonString(s["network_mode"]))
	for _, ns := range []string{"pid", "ipc", "uts", "cgroup", "userns_mode"} {
		c.checkNamespace(at(ns), ns, jsonString(s[ns]))
	}
	if jsonString(s["cgroup_parent"]) != "" {
		c.add(at("cgroup_parent"), "cgroup_parent is not allowed")
	}

	for _, cp := range jsonList(s["cap_add"]) {
		if capName(jsonString(cp)) != "NET_BIND_SERVICE" {
			c.add(at("cap_add"), "cap_add %s is not allowed; only NET_BIND_SERVICE", jsonString(cp))
		}
	}
	for _, key := range []string{"devices", "device_cgroup_rules", "gpus"} {
		if len(jsonList(s[key])) > 0 {
			c.add(at(key), "%s is not allowed", key)
		}
	}
	res := jsonObject(jsonObject(s["deploy"])["resources"])
	for _, kind := range []string{"reservations", "limits"} {
		if len(jsonList(jsonObject(res[kind])["devices"])) > 0 {
			c.add(at("deploy.resources."+kind+".devices"), "device %s are not allowed", kind)
		}
	}
	for _, key := range []string{"runtime", "isolation"} {
		if jsonString(s[key]) != "" {
			c.add(at(key), "%s is not allowed", key)
		}
	}
	if jsonString(jsonObject(s["build"])["isolation"]) != "" {
		c.add(at("build.isolation"), "build isolation is not allowed")
	}
	for _, key := range []string{"use_api_socket", "oom_kill_disable"} {
		if truthy(s[key]) {
			c.add(at(key), "%s is not allowed", key)
		}
	}
	if _, ok := s["provider"]; ok {
		c.add(at("provider"), "provider services are not allowed")
	}
	if len(jsonObject(s["models"])) > 0 {
		c.add(at("models"), "models are not allowed")
	}
	if len(jsonObject(s["storage_opt"])) > 0 {
		c.add(at("storage_opt"), "storage_opt is not allowed")
	}
	if n, err := strconv.ParseInt(jsonString(s["oom_score_adj"]), 10, 64); err == nil && n < 0 {
		c.add(at("oom_score_adj"), "negative oom_score_adj is not allowed")
	}

	for _, opt := range jsonList(s["security_opt"]) {
		if !noNewPrivileges(jsonString(opt)) {
			c.add(at("security_opt"), "security_opt %q is not allowed; only no-new-privileges", jsonString(opt))
		}
	}
	for _, k := range sortedKeys(jsonObject(s["sysctls"])) {
		if !safeSysctls[strings.ReplaceAll(k, "/", ".")] {
			c.add(at("sysctls"), "sysctl %s is not allowed; only the Kubernetes \"safe\" set", k)
		}
	}

	c.checkServiceVolumes(name, at("volumes"), jsonList(s["volumes"]))
	c.checkReferences(at, s)
	if cn := jsonString(s["container_name"]); cn != "" && !c.ownContainer(cn) {
		c.add(at("container_name"), "container_name %q is not allowed: it must start with %q", cn, c.name+"-")
	}
	c.checkBuild(at("build"), jsonObject(s["build"]))
	c.checkPorts(at("ports"), jsonList(s["ports"]))
	c.checkLabels(at("labels"), jsonObject(s["labels"]))
	c.checkBeyondIssue(at, s)
}

// checkBeyondIssue holds rules the issue's list does not name but that reach
// outside the project all the same; each says why.
func (c *checker) checkBeyondIssue(at func(string) string, s map[string]any) {
	// Logging drivers run inside dockerd, as root, in the host's network
	// namespace: syslog, gelf, fluentd and friends can be pointed at any
	// host-local socket or address.
	switch d := jsonString(jsonObject(s["logging"])["driver"]); d {
	case "", "json-file", "local", "journald", "none":
	default:
		c.add(at("logging.driver"), "logging driver %q is not allowed; only json-file, local, journald or none (other drivers send from the host as root)", d)
	}
	// OCI annotations are read by some runtimes (crun's run.oci.*) as options.
	if len(jsonObject(s["annotations"])) > 0 {
		c.add(at("annotations"), "annotations are not allowed: container runtimes act on some of them")
	}
	// On a network shared with other projects, a fixed address or a foreign
	// alias can take over another project's traffic.
	nets := jsonObject(c.p["networks"])
	for _, key := range sortedKeys(jsonObject(s["networks"])) {
		if !truthy(jsonObject(nets[key])["external"]) {
			continue
		}
		n := jsonObject(jsonObject(s["networks"])[key])
		p := at("networks." + key)
		for _, a := range jsonList(n["aliases"]) {
			if !c.ownContainer(jsonString(a)) {
				c.add(p+".aliases", "alias %q on shared network %q is not allowed: it must start with %q", jsonString(a), key, c.name+"-")
			}
		}
		for _, fixed := range []string{"ipv4_address", "ipv6_address", "mac_address", "link_local_ips"} {
			if v, ok := n[fixed]; ok && v != nil {
				c.add(p+"."+fixed, "%s on shared network %q is not allowed", fixed, key)
			}
		}
	}
}

// checkNetworkMode allows no network mode, none, or another service of the project.
func (c *checker) checkNetworkMode(path, mode string) {
	switch {
	case mode == "" || mode == "none":
	case strings.HasPrefix(mode, "service:") && c.services[strings.TrimPrefix(mode, "service:")] != nil:
	default:
		c.add(path, "network_mode %q is not allowed; only none or service:<a service of this project>", mode)
	}
}

// checkNamespace refuses sharing a namespace with the host or with a
// container outside the project.
func (c *checker) checkNamespace(path, key, mode string) {
	m := strings.ToLower(strings.TrimSpace(mode))
	switch {
	case m == "host":
		c.add(path, "%s: host is not allowed", key)
	case strings.HasPrefix(m, "container:"):
		c.add(path, "%s %q is not allowed: it joins a container outside the project", key, mode)
	case strings.HasPrefix(m, "service:") && c.services[strings.TrimPrefix(mode, "service:")] == nil:
		c.add(path, "%s %q is not allowed: no such service in the project", key, mode)
	}
}

func capName(s string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_")
}

// noNewPrivileges accepts no-new-privileges, alone or with a boolean, in
// either the colon or the equals spelling.
func noNewPrivileges(opt string) bool {
	o := strings.ToLower(strings.TrimSpace(opt))
	if o == "no-new-privileges" {
		return true
	}
	for _, sep := range []string{":", "="} {
		if v, ok := strings.CutPrefix(o, "no-new-privileges"+sep); ok {
			return v == "true" || v == "false"
		}
	}
	return false
}

// safeSysctls is the Kubernetes Pod Security Standards "safe" set: namespaced
// sysctls that cannot affect other containers or the host.
var safeSysctls = map[string]bool{
	"kernel.shm_rmid_forced":              true,
	"net.ipv4.ip_local_port_range":        true,
	"net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.tcp_syncookies":             true,
	"net.ipv4.ping_group_range":           true,
	"net.ipv4.ip_local_reserved_ports":    true,
	"net.ipv4.tcp_keepalive_time":         true,
	"net.ipv4.tcp_fin_timeout":            true,
	"net.ipv4.tcp_keepalive_intvl":        true,
	"net.ipv4.tcp_keepalive_probes":       true,
}

// checkServiceVolumes checks the mount types and bind options; where bind
// sources lead is checkPaths' job.
func (c *checker) checkServiceVolumes(service, path string, vols []any) {
	for i, v := range vols {
		m := jsonObject(v)
		p := fmt.Sprintf("%s[%d]", path, i)
		switch t := jsonString(m["type"]); t {
		case "bind":
			switch prop := jsonString(jsonObject(m["bind"])["propagation"]); prop {
			case "", "private", "rprivate":
			default:
				c.add(p, "bind propagation %q is not allowed; only private or rprivate", prop)
			}
		case "volume":
		default:
			c.add(p, "volume type %q is not allowed; only bind and volume", t)
		}
	}
}

// checkReferences keeps volumes_from and external_links inside the project.
func (c *checker) checkReferences(at func(string) string, s map[string]any) {
	for _, v := range jsonList(s["volumes_from"]) {
		ref := jsonString(v)
		name, _, _ := strings.Cut(strings.TrimPrefix(ref, "service:"), ":")
		if strings.HasPrefix(ref, "container:") || c.services[name] == nil {
			c.add(at("volumes_from"), "volumes_from %q is not allowed: only services of this project", ref)
		}
	}
	for _, v := range jsonList(s["external_links"]) {
		container, _, _ := strings.Cut(jsonString(v), ":")
		if !c.ownContainer(container) {
			c.add(at("external_links"), "external_links %q is not allowed: it points outside the project", jsonString(v))
		}
	}
}

// ownContainer reports whether a container name carries the project prefix.
func (c *checker) ownContainer(name string) bool {
	return c.name != "" && (strings.HasPrefix(name, c.name+"-") || strings.HasPrefix(name, c.name+"_"))
}

// checkBuild refuses build features that reach the host or the network
// outside the build: entitlements, host networking, the SSH agent, local caches.
func (c *checker) checkBuild(path string, b map[string]any) {
	if b == nil {
		return
	}
	if len(jsonList(b["entitlements"])) > 0 {
		c.add(path+".entitlements", "build entitlements are not allowed")
	}
	switch n := jsonString(b["network"]); n {
	case "", "default", "none":
	default:
		c.add(path+".network", "build network %q is not allowed", n)
	}
	if len(jsonList(b["ssh"])) > 0 {
		c.add(path+".ssh", "build ssh is not allowed")
	}
	for _, key := range []string{"cache_from", "cache_to"} {
		for _, e := range jsonList(b[key]) {
			if strings.Contains(strings.ToLower(jsonString(e)), "type=local") {
				c.add(path+"."+key, "build %s type=local is not allowed: it reads or writes host paths", key)
			}
		}
	}
}

// checkPorts allows a published host port only when pgo.toml lists it.
func (c *checker) checkPorts(path string, ports []any) {
	for i, p := range ports {
		m := jsonObject(p)
		published := jsonString(m["published"])
		at := fmt.Sprintf("%s[%d]", path, i)
		if published == "" {
			c.add(at, "port %s published on a random host port is not allowed", jsonString(m["target"]))
			continue
		}
		lo, hi, err := portRange(published)
		if err != nil {
			c.add(at, "host port %q is not allowed: %v", published, err)
			continue
		}
		for port := lo; port <= hi; port++ {
			if !c.portAllowed(port) {
				allowed := strings.Join(c.r.Service.Ports, ", ")
				if allowed == "" {
					allowed = "none"
				}
				c.add(at, "host port %d is not allowed (pgo.toml ports: %s)", port, allowed)
				break
			}
		}
	}
}

func (c *checker) portAllowed(port int) bool {
	for _, allowed := range c.r.Service.Ports {
		lo, hi, err := portRange(allowed)
		if err == nil && lo <= port && port <= hi {
			return true
		}
	}
	return false
}

// portRange parses "80" or "8000-8010".
func portRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if lo, err = strconv.Atoi(a); err != nil {
		return 0, 0, fmt.Errorf("not a port number")
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, fmt.Errorf("not a port range")
		}
	}
	if lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("out of range")
	}
	return lo, hi, nil
}
