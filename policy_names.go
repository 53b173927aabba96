package main

// Names are shared. Container names, network names, volume names and image
// tags are one namespace per engine, and on a network several projects join,
// every DNS name any container claims answers for all of them. Compose names
// a project's things after the project ("<project>-<service>-1",
// "<project>_default"), pgo names each project after its service, and Caddy
// routes a service's traffic to "<service>-<compose service>-1". So a name
// belongs to the configured service it starts with: "shop", "shop-…",
// "shop_…" and "shop.…" are shop's. When one service's name starts another's
// ("shop" and "shop-web"), the longer one owns what it starts.

import "strings"

// namespaces knows which configured service a name belongs to.
type namespaces struct {
	self   string   // the project being checked
	others []string // the other configured services
}

func newNamespaces(self string, others []string) namespaces {
	n := namespaces{self: strings.ToLower(self)}
	for _, o := range others {
		if o = strings.ToLower(o); o != "" && o != n.self {
			n.others = append(n.others, o)
		}
	}
	return n
}

// owner returns the configured service whose namespace holds name, "" when
// none does. DNS is case-blind, so names are too.
func (n namespaces) owner(name string) string {
	name = strings.ToLower(name)
	best := ""
	for _, s := range append([]string{n.self}, n.others...) {
		if s != "" && len(s) > len(best) && inNamespace(name, s) {
			best = s
		}
	}
	return best
}

// foreign returns the other service that owns name, "" when the name is the
// project's own or nobody's.
func (n namespaces) foreign(name string) string {
	if o := n.owner(name); o != n.self {
		return o
	}
	return ""
}

// own reports whether name is in the project's own namespace.
func (n namespaces) own(name string) bool { return n.self != "" && n.owner(name) == n.self }

// inNamespace reports whether name is service or starts with service and a separator.
func inNamespace(name, service string) bool {
	rest, ok := strings.CutPrefix(name, service)
	return ok && (rest == "" || strings.ContainsRune("-_.", rune(rest[0])))
}

// ownImage reports whether an image reference is one the project may build
// or tag: no registry host, and a first path component in the project's
// namespace, "<name>-…" or "<name>_…", or "<name>/…" with more after it. A
// bare "<name>" is not: it is Docker Hub's official image of that name.
func (n namespaces) ownImage(ref string) bool {
	host, path := imageRepo(ref)
	if host != "" || path == "" {
		return false
	}
	first, rest, nested := strings.Cut(path, "/")
	if first == n.self {
		return nested && rest != ""
	}
	return n.own(first)
}

// imageRepo splits an image reference into its registry host ("" for Docker
// Hub) and its repository path without tag or digest, in the short form
// Docker prints (no "docker.io/", no "library/").
func imageRepo(ref string) (host, path string) {
	ref, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(ref)), "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	first, rest, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host, ref = first, rest
	}
	if host == "docker.io" || host == "index.docker.io" {
		host = ""
	}
	if host == "" {
		ref = strings.TrimPrefix(ref, "library/")
	}
	return host, ref
}
