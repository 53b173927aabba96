package main

import (
	"slices"
	"strings"
)

// On a network that several projects join (Caddy's proxy network, say),
// Docker's default NET_RAW capability lets any container there send any
// frame: answer ARP for another container's address and take its traffic,
// Caddy's to it included. pgod drops NET_RAW from every service attached to
// such a network, directly or through network_mode: service:…, when it hands
// the project to compose: the engine then enforces it at every start, and
// projects need not know. A service that needs raw sockets (ping) keeps them
// on its own networks.

// sharedNetworks names the networks a service's project shares with other
// projects: the own networks (<name>_<key>) that another configured service
// lists in its networks. External networks are shared by definition.
func (d *Daemon) sharedNetworks(name string) map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	shared := map[string]bool{}
	if d.cfg == nil {
		return shared
	}
	for _, s := range d.cfg.Services {
		if s.Name == name {
			continue
		}
		for _, n := range s.Networks {
			if strings.HasPrefix(n, name+"_") {
				shared[n] = true
			}
		}
	}
	return shared
}

// dropNetRawOnSharedNetworks rewrites a decoded project so that every service
// on an external network, or on one of its own networks in shared, runs
// without NET_RAW.
func dropNetRawOnSharedNetworks(proj map[string]any, shared map[string]bool) {
	nets := jsonObject(proj["networks"])
	isShared := func(key string) bool {
		n := jsonObject(nets[key])
		return truthy(n["external"]) || shared[jsonString(n["name"])]
	}
	services := jsonObject(proj["services"])
	onShared := map[string]bool{}
	for name, s := range services {
		for key := range jsonObject(jsonObject(s)["networks"]) {
			if isShared(key) {
				onShared[name] = true
			}
		}
	}
	// network_mode: service:x shares x's network namespace, so x's networks.
	for changed := true; changed; {
		changed = false
		for name, s := range services {
			other, ok := strings.CutPrefix(jsonString(jsonObject(s)["network_mode"]), "service:")
			if ok && onShared[other] && !onShared[name] {
				onShared[name], changed = true, true
			}
		}
	}
	for name := range onShared {
		dropNetRaw(jsonObject(services[name]))
	}
}

// dropNetRaw removes NET_RAW from a service's capabilities: from cap_add
// (Docker adds after it drops) and by cap_drop, unless ALL is dropped.
func dropNetRaw(s map[string]any) {
	var add []any
	for _, c := range jsonList(s["cap_add"]) {
		if capName(jsonString(c)) != "NET_RAW" {
			add = append(add, c)
		}
	}
	if len(add) > 0 {
		s["cap_add"] = add
	} else {
		delete(s, "cap_add")
	}
	drops := jsonList(s["cap_drop"])
	if slices.ContainsFunc(drops, func(c any) bool { n := capName(jsonString(c)); return n == "ALL" || n == "NET_RAW" }) {
		return
	}
	s["cap_drop"] = append(drops, "NET_RAW")
}
