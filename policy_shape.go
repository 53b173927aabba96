package main

// The shape of compose's canonical JSON as pgo knows it: every key, at every
// level. A key pgo does not know is refused, since each compose release adds
// some and any of them may be a new way to the host.

import (
	"fmt"
	"maps"
	"slices"
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
			for _, k := range slices.Sorted(maps.Keys(v)) {
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
			for _, k := range slices.Sorted(maps.Keys(v)) {
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
