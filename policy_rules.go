package main

// The rules a rendered project must keep, each named after what it protects.
// Keys pgo does not know were refused before (policy_shape.go); who owns a
// name is policy_names.go's, where host paths lead policy_paths.go's, and
// what the engine holds policy_engine.go's.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// projectRules applies the rules to one rendered project.
type projectRules struct {
	r        renderRequest
	p        map[string]any
	name     string         // project name = pgo service name
	services map[string]any // compose services
	networks map[string]any // the project's top-level networks
	names    namespaces
	vs       []violation
}

// applyRules checks a rendered project against every rule.
func applyRules(p map[string]any, r renderRequest) []violation {
	if r.Service == nil {
		r.Service = &Service{}
	}
	c := &projectRules{r: r, p: p, name: r.Service.Name, services: jsonObject(p["services"]),
		networks: jsonObject(p["networks"]), names: newNamespaces(r.Service.Name, r.Others)}
	c.projectIsTheService()
	c.xPgoKnownSettings()
	if _, ok := p["models"]; ok {
		c.add("models", "models are not allowed")
	}
	c.networksStayApart()
	c.volumesStayInProject()
	c.fileObjectsFromCheckout("secrets")
	c.fileObjectsFromCheckout("configs")
	for _, name := range slices.Sorted(maps.Keys(c.services)) {
		c.service(name, jsonObject(c.services[name]))
	}
	if r.Service.Swarm {
		c.swarmRules()
	}
	return c.vs
}

func (c *projectRules) add(path, format string, args ...any) {
	c.vs = append(c.vs, violation{Path: path, Service: serviceOf(path), Msg: fmt.Sprintf(format, args...)})
}

// service applies the per-service rules.
func (c *projectRules) service(name string, s map[string]any) {
	at := func(key string) string { return "services." + name + "." + key }
	c.noPrivilege(at, s)
	c.namespacesStayOwn(at, s)
	c.hostKernelOutOfReach(at, s)
	c.confinementStays(at, s)
	c.sysctlsStayNamespaced(at, s)
	c.mountTypesKnown(at, jsonList(s["volumes"]))
	c.referencesStayInProject(at, s)
	c.buildStaysInside(at("build"), jsonObject(s["build"]))
	c.imagesInOwnNamespace(name, at, s)
	c.containerNamesOwn(name, at, s)
	c.sharedNetworkClaims(name, at, s)
	c.portsGranted(at("ports"), jsonList(s["ports"]))
	c.composeLabelsReserved(at("labels"), jsonObject(s["labels"]))
	c.loggingStaysLocal(at, s)
	c.noRuntimeAnnotations(at, s)
}

// projectIsTheService: compose tells projects apart by name, and pgo names
// each after its service.
func (c *projectRules) projectIsTheService() {
	if n := jsonString(c.p["name"]); n != c.name {
		c.add("name", "project name %q is not the service name %q", n, c.name)
	}
}

// xPgoKnownSettings keeps pgo's own extension to the settings it has:
// reload, and health_timeout, which may only lower pgo.toml's.
func (c *projectRules) xPgoKnownSettings() {
	x, ok := c.p["x-pgo"]
	if !ok {
		return
	}
	m, isMap := x.(map[string]any)
	if !isMap {
		c.add("x-pgo", "x-pgo must be a mapping with the keys reload and health_timeout")
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "reload":
			if _, ok := m[k].(bool); !ok {
				c.add("x-pgo.reload", "x-pgo reload must be true or false")
			}
		case "health_timeout":
			if d, err := time.ParseDuration(jsonString(m[k])); err != nil || d <= 0 {
				c.add("x-pgo.health_timeout", "x-pgo health_timeout %q is not a duration such as 30s or 2m", jsonString(m[k]))
			}
		default:
			c.add("x-pgo."+k, "x-pgo key %q is not allowed; only reload and health_timeout are", k)
		}
	}
}

// ownName is the engine name compose gives a project's own resource; an
// explicit name: that differs may be another project's volume or network.
func (c *projectRules) ownName(key string) string { return c.name + "_" + key }

// networksStayApart keeps a project off other projects' networks and the
// engine's shared ones, and its own networks plain bridges.
func (c *projectRules) networksStayApart() {
	own, external := 0, 0
	for _, key := range slices.Sorted(maps.Keys(c.networks)) {
		n := jsonObject(c.networks[key])
		path := "networks." + key
		if truthy(n["external"]) {
			external++
			c.externalNetworkAllowed(path, key, jsonString(n["name"]))
			continue
		}
		own++
		c.ownNetwork(path, key, n)
	}
	if len(c.r.Service.Networks) > 0 && external > 0 && own == 0 {
		c.add("networks", "a project on an external network needs a network of its own too")
	}
}

// externalNetworkAllowed: an external network is one pgo.toml lists; with no
// list, any network except the engine's own and other services' ones.
func (c *projectRules) externalNetworkAllowed(path, key, name string) {
	listed := c.r.Service.Networks
	switch {
	case name == "host" || name == "bridge" || name == "none":
		c.add(path, "network %q: external network %q is not allowed: it is the engine's own, shared with containers of every project", key, name)
	case len(listed) > 0 && !slices.Contains(listed, name):
		c.add(path, "network %q: external network %q is not allowed; allowed: %s", key, name, strings.Join(listed, ", "))
	case len(listed) == 0 && c.names.foreign(name) != "":
		c.add(path, "network %q: external network %q is not allowed: it belongs to service %q; a project joins another service's network only when its pgo.toml networks lists it", key, name, c.names.foreign(name))
	}
}

// ownResourceName keeps the engine name of a project's network or volume
// the project's: <name>_<key>, and not in another service's namespace.
func (c *projectRules) ownResourceName(kind, path, key string, r map[string]any) {
	if name := jsonString(r["name"]); name != "" && name != c.ownName(key) {
		c.add(path+".name", "%s %q: name %q is not allowed: a project's %ss are named %s_<key>; drop name:", kind, key, name, kind, c.name)
	} else if o := c.names.foreign(c.ownName(key)); o != "" {
		c.add(path, "%s %q: compose names it %s, which belongs to service %q; rename the key", kind, key, c.ownName(key), o)
	}
}

// ownNetwork keeps a project's own network its own: named after the
// project, a plain bridge, with no addresses the project picks.
func (c *projectRules) ownNetwork(path, key string, n map[string]any) {
	c.ownResourceName("network", path, key, n)
	driver, safeOpts := "bridge", safeNetworkOpts
	if c.r.Service.Swarm {
		driver, safeOpts = "overlay", safeOverlayOpts // a task's node may be any node of the swarm
	}
	if d := jsonString(n["driver"]); d != "" && d != driver {
		c.add(path+".driver", "network %q: driver %q is not allowed; only %s", key, d, driver)
	}
	for _, opt := range slices.Sorted(maps.Keys(jsonObject(n["driver_opts"]))) {
		if !safeOpts[opt] {
			c.add(path+".driver_opts", "network %q: driver option %q is not allowed", key, opt)
		}
	}
	// A subnet is a route on the host: one the project picks can take over
	// the host's traffic to a network of the same addresses.
	ipam := jsonObject(n["ipam"])
	if d := jsonString(ipam["driver"]); d != "" && d != "default" {
		c.add(path+".ipam.driver", "network %q: ipam driver %q is not allowed", key, d)
	}
	if len(jsonList(ipam["config"])) > 0 {
		c.add(path+".ipam.config", "network %q: ipam config (subnet, gateway, ip_range) is not allowed: a subnet the project picks becomes a route on the host and can take over the host's traffic to those addresses; drop it, the engine picks one from its address pools", key)
	}
	c.composeLabelsReserved(path+".labels", jsonObject(n["labels"]))
}

// safeNetworkOpts are bridge options that cannot attach the network to
// something that exists outside the project (com.docker.network.bridge.name can).
var safeNetworkOpts = map[string]bool{
	"com.docker.network.driver.mtu":                  true,
	"com.docker.network.bridge.enable_icc":           true,
	"com.docker.network.bridge.enable_ip_masquerade": true,
	"com.docker.network.container_iface_prefix":      true,
}

// safeOverlayOpts are the overlay options of a project on Swarm: IPsec
// between the nodes, and the MTU.
var safeOverlayOpts = map[string]bool{
	"encrypted":                     true,
	"com.docker.network.driver.mtu": true,
}

// volumesStayInProject keeps named volumes the project's own: local,
// named after the project, with no driver options (they can mount any host
// path).
func (c *projectRules) volumesStayInProject() {
	vols := jsonObject(c.p["volumes"])
	for _, key := range slices.Sorted(maps.Keys(vols)) {
		v := jsonObject(vols[key])
		path := "volumes." + key
		if truthy(v["external"]) {
			c.add(path+".external", "volume %q: external volume %q is not allowed: it is outside the project", key, jsonString(v["name"]))
			continue
		}
		c.ownResourceName("volume", path, key, v)
		if d := jsonString(v["driver"]); d != "" && d != "local" {
			c.add(path+".driver", "volume %q: driver %q is not allowed; only local", key, d)
		}
		if len(jsonObject(v["driver_opts"])) > 0 {
			c.add(path+".driver_opts", "volume %q: driver_opts are not allowed (they can mount any host path); bind a directory of the checkout or the data directory instead", key)
		}
		c.composeLabelsReserved(path+".labels", jsonObject(v["labels"]))
	}
}

// fileObjectsFromCheckout: secrets and configs come from files (checked by
// the host-path rules) or inline content, never from pgod's environment or
// the engine.
func (c *projectRules) fileObjectsFromCheckout(kind string) {
	objs := jsonObject(c.p[kind])
	one := strings.TrimSuffix(kind, "s")
	for _, key := range slices.Sorted(maps.Keys(objs)) {
		o := jsonObject(objs[key])
		path := kind + "." + key
		if o["environment"] != nil {
			c.add(path+".environment", "%s %q: %s from the environment are not allowed", one, key, kind)
		}
		if truthy(o["external"]) {
			c.add(path+".external", "%s %q: external %s are not allowed", one, key, kind)
		}
		if d := jsonString(o["driver"]); d != "" {
			c.add(path+".driver", "%s %q: driver %q is not allowed", one, key, d)
		}
		if d := jsonString(o["template_driver"]); d != "" {
			c.add(path+".template_driver", "%s %q: template_driver %q is not allowed", one, key, d)
		}
	}
}

// composeLabelsReserved refuses labels compose and Swarm themselves use to
// tell projects, stacks and their images apart.
func (c *projectRules) composeLabelsReserved(path string, labels map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		switch {
		case strings.HasPrefix(k, "com.docker.compose."):
			c.add(path, "label %q is reserved for compose", k)
		case strings.HasPrefix(k, "com.docker.stack."), strings.HasPrefix(k, "com.docker.swarm."):
			// pgod finds a stack's services and networks by them (swarm.go)
			c.add(path, "label %q is reserved for Docker Swarm", k)
		}
	}
}

// noPrivilege: a privileged container, build or hook is root on the host.
func (c *projectRules) noPrivilege(at func(string) string, s map[string]any) {
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
}

// namespacesStayOwn refuses sharing a namespace with the host or with a
// container outside the project.
func (c *projectRules) namespacesStayOwn(at func(string) string, s map[string]any) {
	switch mode := jsonString(s["network_mode"]); {
	case mode == "" || mode == "none":
	case strings.HasPrefix(mode, "service:") && c.services[strings.TrimPrefix(mode, "service:")] != nil:
	default:
		c.add(at("network_mode"), "network_mode %q is not allowed; only none or service:<a service of this project> (drop network_mode for the project's own network)", mode)
	}
	for _, key := range []string{"pid", "ipc", "uts", "cgroup", "userns_mode"} {
		mode := jsonString(s[key])
		m := strings.ToLower(strings.TrimSpace(mode))
		switch {
		case m == "host":
			c.add(at(key), "%s: host is not allowed", key)
		case strings.HasPrefix(m, "container:"):
			c.add(at(key), "%s %q is not allowed: it joins a container outside the project; use service:<a service of this project>", key, mode)
		case strings.HasPrefix(m, "service:") && c.services[strings.TrimPrefix(mode, "service:")] == nil:
			c.add(at(key), "%s %q is not allowed: no such service in the project", key, mode)
		}
	}
	if jsonString(s["cgroup_parent"]) != "" {
		c.add(at("cgroup_parent"), "cgroup_parent is not allowed")
	}
}

// defaultCapabilities are the capabilities Docker gives every container:
// cap_drop: [ALL] and then adding some of these back grants nothing new.
var defaultCapabilities = map[string]bool{
	"CHOWN": true, "DAC_OVERRIDE": true, "FSETID": true, "FOWNER": true, "MKNOD": true,
	"NET_RAW": true, "SETGID": true, "SETUID": true, "SETFCAP": true, "SETPCAP": true,
	"NET_BIND_SERVICE": true, "SYS_CHROOT": true, "KILL": true, "AUDIT_WRITE": true,
}

// hostKernelOutOfReach refuses capabilities beyond Docker's defaults,
// devices, other runtimes, the engine's socket, and the OOM settings that
// let one service push the kernel into killing others.
func (c *projectRules) hostKernelOutOfReach(at func(string) string, s map[string]any) {
	for _, cp := range jsonList(s["cap_add"]) {
		if !defaultCapabilities[capName(jsonString(cp))] {
			c.add(at("cap_add"), "cap_add %s is not allowed; only capabilities Docker grants by default (such as NET_BIND_SERVICE, or CHOWN after cap_drop: [ALL])", jsonString(cp))
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
}

func capName(s string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_")
}

// confinementStays refuses security options other than no-new-privileges:
// the rest switch seccomp, AppArmor or SELinux off.
func (c *projectRules) confinementStays(at func(string) string, s map[string]any) {
	for _, opt := range jsonList(s["security_opt"]) {
		if !noNewPrivileges(jsonString(opt)) {
			c.add(at("security_opt"), "security_opt %q is not allowed; only no-new-privileges", jsonString(opt))
		}
	}
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

// sysctlsStayNamespaced allows the sysctls that change only the
// container's own namespaces: net.* (its network namespace; the host's is
// out of reach, network_mode host being refused, and service:x is a
// namespace of the project) and the Kubernetes "safe" ones.
func (c *projectRules) sysctlsStayNamespaced(at func(string) string, s map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(jsonObject(s["sysctls"]))) {
		name := strings.ReplaceAll(k, "/", ".")
		if !strings.HasPrefix(name, "net.") && !safeSysctls[name] {
			c.add(at("sysctls"), "sysctl %s is not allowed; only net.* and kernel.shm_rmid_forced, which stay inside the container", k)
		}
	}
}

// safeSysctls are the sysctls outside net.* of the Kubernetes Pod Security
// Standards "safe" set.
var safeSysctls = map[string]bool{"kernel.shm_rmid_forced": true}

// mountTypesKnown allows binds (where they lead is checked with the host
// paths), volumes and tmpfs; bind propagation would let mounts cross
// between the host and the container.
func (c *projectRules) mountTypesKnown(at func(string) string, vols []any) {
	for i, v := range vols {
		m := jsonObject(v)
		p := fmt.Sprintf("%s[%d]", at("volumes"), i)
		switch t := jsonString(m["type"]); t {
		case "bind":
			switch prop := jsonString(jsonObject(m["bind"])["propagation"]); prop {
			case "", "private", "rprivate":
			default:
				c.add(p, "bind propagation %q is not allowed; only private or rprivate", prop)
			}
		case "volume", "tmpfs":
		default:
			c.add(p, "volume type %q is not allowed; only bind, volume and tmpfs", t)
		}
	}
}

// referencesStayInProject keeps volumes_from and external_links inside the project.
func (c *projectRules) referencesStayInProject(at func(string) string, s map[string]any) {
	for _, v := range jsonList(s["volumes_from"]) {
		ref := jsonString(v)
		name, _, _ := strings.Cut(strings.TrimPrefix(ref, "service:"), ":")
		if strings.HasPrefix(ref, "container:") || c.services[name] == nil {
			c.add(at("volumes_from"), "volumes_from %q is not allowed: only services of this project", ref)
		}
	}
	for _, v := range jsonList(s["external_links"]) {
		container, _, _ := strings.Cut(jsonString(v), ":")
		if !c.names.own(container) {
			c.add(at("external_links"), "external_links %q is not allowed: it points outside the project", jsonString(v))
		}
	}
}

// buildStaysInside refuses build features that reach the host or the
// network outside the build: entitlements, host networking, the SSH agent,
// local caches.
func (c *projectRules) buildStaysInside(path string, b map[string]any) {
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
	c.composeLabelsReserved(path+".labels", jsonObject(b["labels"]))
}

// imagesInOwnNamespace: image tags are one namespace per engine, and other
// projects run what a tag points at (they pull only missing images). A
// service that builds may only name its image, and tag it, in the
// project's own namespace.
func (c *projectRules) imagesInOwnNamespace(name string, at func(string) string, s map[string]any) {
	if s["build"] == nil {
		return
	}
	hint := fmt.Sprintf("name it %s-%s or %s/%s (any tag)", c.name, name, c.name, name)
	image := jsonString(s["image"])
	switch {
	case image == "":
		if def := c.name + "-" + name; !c.names.ownImage(def) {
			c.add(at("build"), "compose names this service's image %s, which belongs to service %q; set image: %s/%s", def, c.names.foreign(def), c.name, name)
		}
	case !c.names.ownImage(image):
		c.add(at("image"), "image %q is not allowed for a service that builds: a build would retag it on the engine every project shares; %s, or drop image: for compose's default %s-%s", image, hint, c.name, name)
	}
	for _, tag := range jsonList(jsonObject(s["build"])["tags"]) {
		if t := jsonString(tag); !c.names.ownImage(t) {
			c.add(at("build.tags"), "build tag %q is not allowed: it would retag an image on the engine every project shares; %s", t, hint)
		}
	}
}

// maxCheckedReplicas bounds how many default container names are checked.
const maxCheckedReplicas = 1000

// containerNamesOwn: container names are one namespace per engine, and
// each is a DNS name on every network its container joins; Caddy routes to
// "<service>-<compose service>-1". A project's containers take no name of
// another service's namespace.
func (c *projectRules) containerNamesOwn(name string, at func(string) string, s map[string]any) {
	if cn := jsonString(s["container_name"]); cn != "" {
		if o := c.names.foreign(cn); o != "" {
			c.add(at("container_name"), "container_name %q is not allowed: it belongs to service %q (container names are one namespace per engine); pick another name, or drop container_name", cn, o)
		}
		return
	}
	for n := 1; n <= min(replicas(s), maxCheckedReplicas); n++ {
		cn := fmt.Sprintf("%s-%s-%d", c.name, name, n)
		if o := c.names.foreign(cn); o != "" {
			c.add("services."+name, "compose names this service's container %s, which belongs to service %q; rename the compose service", cn, o)
			return
		}
	}
}

// replicas is how many containers compose runs for a service.
func replicas(s map[string]any) int {
	n := 1
	for _, v := range []any{s["scale"], jsonObject(s["deploy"])["replicas"]} {
		if r, err := strconv.Atoi(jsonString(v)); err == nil && r > n {
			n = r
		}
	}
	return n
}

// sharedNetworkClaims: on a network other projects join (an external one),
// every name a container answers to answers for all of them, and a fixed
// address can take another's. A service there claims no name of another
// service's namespace (its compose service name, its hostname, its aliases;
// container names are containerNamesOwn's) and no fixed address.
func (c *projectRules) sharedNetworkClaims(name string, at func(string) string, s map[string]any) {
	joined := jsonObject(s["networks"])
	shared := c.sharedNetworks(s)
	if len(shared) == 0 {
		return
	}
	if o := c.names.foreign(name); o != "" {
		c.add("services."+name, "the compose service name %q is a DNS name on shared network %q and belongs to service %q; rename the compose service", name, shared[0], o)
	}
	if h := jsonString(s["hostname"]); h != "" && c.names.foreign(h) != "" {
		c.add(at("hostname"), "hostname %q is a DNS name on shared network %q and belongs to service %q; pick another hostname, or drop it", h, shared[0], c.names.foreign(h))
	}
	if s["mac_address"] != nil {
		c.add(at("mac_address"), "mac_address is not allowed on a service that joins shared network %q: a fixed address there can take another's traffic", shared[0])
	}
	for _, key := range shared {
		n := jsonObject(joined[key])
		p := at("networks." + key)
		for _, a := range jsonList(n["aliases"]) {
			if o := c.names.foreign(jsonString(a)); o != "" {
				c.add(p+".aliases", "alias %q on shared network %q is not allowed: it belongs to service %q", jsonString(a), key, o)
			}
		}
		for _, fixed := range []string{"ipv4_address", "ipv6_address", "mac_address", "link_local_ips"} {
			if v, ok := n[fixed]; ok && v != nil {
				c.add(p+"."+fixed, "%s on shared network %q is not allowed: a fixed address there can take another's traffic; let the engine assign one", fixed, key)
			}
		}
		if len(jsonObject(n["driver_opts"])) > 0 {
			c.add(p+".driver_opts", "driver_opts on shared network %q are not allowed", key)
		}
	}
}

// sharedNetworks returns the external networks a service joins itself.
// (A service in another's network namespace, network_mode service:x,
// answers to none of its own names there.)
func (c *projectRules) sharedNetworks(s map[string]any) []string {
	var shared []string
	for _, key := range slices.Sorted(maps.Keys(jsonObject(s["networks"]))) {
		if truthy(jsonObject(c.networks[key])["external"]) {
			shared = append(shared, key)
		}
	}
	return shared
}

// portsGranted allows a published host port only when pgo.toml lists it:
// host ports are shared by all services, and the operator hands them out.
func (c *projectRules) portsGranted(path string, ports []any) {
	for i, p := range ports {
		m := jsonObject(p)
		published := jsonString(m["published"])
		at := fmt.Sprintf("%s[%d]", path, i)
		if published == "" {
			target := jsonString(m["target"])
			c.add(at, "port %s published on a random host port is not allowed; publish a port pgo.toml grants (\"PORT:%s\"), or use expose: [\"%s\"] to reach it from the project's containers only", target, target, target)
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
				c.add(at, "host port %d is not allowed (pgo.toml ports: %s); the operator hands out host ports", port, allowed)
				break
			}
		}
	}
}

func (c *projectRules) portAllowed(port int) bool {
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

// loggingStaysLocal: logging drivers run inside dockerd, as root, in the
// host's network namespace; syslog, gelf, fluentd and friends can be
// pointed at any host-local socket or address.
func (c *projectRules) loggingStaysLocal(at func(string) string, s map[string]any) {
	switch d := jsonString(jsonObject(s["logging"])["driver"]); d {
	case "", "json-file", "local", "journald", "none":
	default:
		c.add(at("logging.driver"), "logging driver %q is not allowed; only json-file, local, journald or none (other drivers send from the host as root)", d)
	}
}

// noRuntimeAnnotations: OCI annotations are read by some runtimes (crun's
// run.oci.*) as options.
func (c *projectRules) noRuntimeAnnotations(at func(string) string, s map[string]any) {
	if len(jsonObject(s["annotations"])) > 0 {
		c.add(at("annotations"), "annotations are not allowed: container runtimes act on some of them")
	}
}
