package main

// What the engine holds, asked right before "up". Projects share one
// engine: a network another project made can be joined by name, and an
// image another project built sits under whatever tag it gave it, where the
// next "up" of anyone who names that tag runs it (pgod pulls only missing
// images). The static rules keep names apart; these catch what was made
// behind them, by a trusted (root) service, before the rules existed, or by
// the operator's own compose projects.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// engineInspector runs "docker ARGS..." against the engine the project runs
// on, as the service's user with the engine's group, and returns its
// standard output.
type engineInspector func(ctx context.Context, args ...string) ([]byte, error)

// accountEngine is the engineInspector of a service's account: docker with
// env, as the account, with the docker group.
func accountEngine(a *account, env []string, docker string) engineInspector {
	return func(ctx context.Context, args ...string) ([]byte, error) {
		cmd := a.engineCommand(ctx, env, docker, args...)
		stderr := newTail(4 << 10)
		cmd.Stderr = stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, lastLines(strings.TrimSpace(stderr.String()), 2))
		}
		return out, nil
	}
}

// composeProjectLabel is the label compose puts on everything it creates,
// images it builds included, naming the project.
const composeProjectLabel = "com.docker.compose.project"

// engineRules checks one project against what the engine holds.
type engineRules struct {
	ctx    context.Context
	engine engineInspector
	name   string
	r      renderRequest
	vs     []violation
}

// checkEngine refuses external networks and images that another compose
// project made, unless pgo.toml names the network.
func checkEngine(ctx context.Context, p map[string]any, r renderRequest, engine engineInspector) []violation {
	if r.Service == nil || engine == nil {
		return nil
	}
	e := &engineRules{ctx: ctx, engine: engine, name: r.Service.Name, r: r}
	e.externalNetworksNotAnothers(jsonObject(p["networks"]))
	e.imagesNotPlanted(jsonObject(p["services"]))
	return e.vs
}

func (e *engineRules) add(path, format string, args ...any) {
	e.vs = append(e.vs, violation{Path: path, Service: serviceOf(path), Msg: fmt.Sprintf(format, args...)})
}

// inspect asks the engine about one object; nil when it has none (or
// cannot say, in which case "up" will not get far either).
func (e *engineRules) inspect(kind, name string) map[string]any {
	out, err := e.engine(e.ctx, kind, "inspect", name)
	var objs []any
	if err != nil || json.Unmarshal(out, &objs) != nil || len(objs) != 1 {
		return nil
	}
	return jsonObject(objs[0])
}

// externalNetworksNotAnothers: an external network that compose made for
// another project is that project's, whatever its name, unless this
// service's pgo.toml lists it by name.
func (e *engineRules) externalNetworksNotAnothers(nets map[string]any) {
	for _, key := range slices.Sorted(maps.Keys(nets)) {
		n := jsonObject(nets[key])
		name := jsonString(n["name"])
		if !truthy(n["external"]) || name == "" || slices.Contains(e.r.Service.Networks, name) {
			continue
		}
		net := e.inspect("network", name)
		labels := jsonObject(net["Labels"])
		owner := jsonString(labels[composeProjectLabel])
		if owner == "" {
			owner = jsonString(labels[stackLabel]) // made by docker stack deploy
		}
		if owner != "" && owner != e.name {
			e.add("networks."+key, "network %q: external network %q belongs to compose project %q; a project joins another's network only when its pgo.toml networks lists it", key, name, owner)
		}
	}
}

// imagesNotPlanted: an image present on the engine under a service's tag,
// built by compose for another project and never pulled from a registry
// under that name, is another team's build in this project's clothes, and
// so is a base the service's build starts from (a build uses the engine's
// image of that name). The operator's own images (docker build, no compose
// label) and pulled ones run.
func (e *engineRules) imagesNotPlanted(services map[string]any) {
	for _, name := range slices.Sorted(maps.Keys(services)) {
		s := jsonObject(services[name])
		ref := jsonString(s["image"])
		if ref == "" && s["build"] != nil {
			ref = e.name + "-" + name
		}
		if builder := e.plantedBy(ref); builder != "" {
			e.add("services."+name+".image", "image %s on this engine was built by compose project %q, not pulled from a registry; pgod does not run another project's build. Ask the operator to remove it (docker image rm %s) so that it is pulled again", ref, builder, ref)
		}
		if b := jsonObject(s["build"]); b != nil {
			for _, base := range baseImages(b, e.r.Checkout) {
				if builder := e.plantedBy(base); builder != "" {
					e.add("services."+name+".build", "build base image %s on this engine was built by compose project %q, not pulled from a registry; pgod does not build on another project's build. Ask the operator to remove it (docker image rm %s) so that it is pulled again", base, builder, base)
				}
			}
		}
	}
}

// plantedBy returns the other compose project that built the engine's
// image ref, "" when the engine has none, or it was pulled under that name,
// built by no compose or by this project.
func (e *engineRules) plantedBy(ref string) string {
	if ref == "" || strings.Contains(ref, "@") {
		return "" // a digest names content, which no tag can replace
	}
	img := e.inspect("image", ref)
	if img == nil {
		return "" // pulled or built at "up"
	}
	builder := jsonString(jsonObject(jsonObject(img["Config"])["Labels"])[composeProjectLabel])
	if builder == e.name || pulledAs(img, ref) {
		return ""
	}
	return builder
}

// pulledAs reports whether the image came from a registry under ref's
// repository: its RepoDigests name it.
func pulledAs(img map[string]any, ref string) bool {
	host, path := imageRepo(ref)
	for _, d := range jsonList(img["RepoDigests"]) {
		h, p := imageRepo(jsonString(d))
		if h == host && p == path {
			return true
		}
	}
	return false
}

// baseImages lists the images a build uses, as far as the Dockerfile names
// them plainly: FROM, COPY --from and the # syntax= frontend, and
// docker-image:// additional contexts. Names built from ARGs are left out:
// pgo cannot know them before the build.
func baseImages(b map[string]any, checkout string) []string {
	var refs []string
	for _, v := range jsonObject(b["additional_contexts"]) {
		if ref, ok := strings.CutPrefix(jsonString(v), "docker-image://"); ok {
			refs = append(refs, ref)
		}
	}
	dockerfile := jsonString(b["dockerfile_inline"])
	if dockerfile == "" {
		dockerfile = readDockerfile(b, checkout)
	}
	stages := map[string]bool{}
	plain := func(ref string) bool {
		return ref != "" && !strings.Contains(ref, "$") && !stages[strings.ToLower(ref)] && ref != "scratch"
	}
	for i, line := range strings.Split(dockerfile, "\n") {
		line = strings.TrimSpace(line)
		if i == 0 || strings.HasPrefix(line, "#") {
			if ref, ok := strings.CutPrefix(strings.ReplaceAll(strings.ToLower(line), " ", ""), "#syntax="); ok && plain(ref) {
				refs = append(refs, ref)
			}
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			args := flagless(fields[1:])
			if len(args) == 0 {
				continue
			}
			if plain(args[0]) {
				refs = append(refs, args[0])
			}
			if len(args) >= 3 && strings.EqualFold(args[1], "AS") {
				stages[strings.ToLower(args[2])] = true
			}
		case "COPY", "ADD":
			for _, f := range fields[1:] {
				if ref, ok := strings.CutPrefix(f, "--from="); ok && plain(ref) && strings.Trim(ref, "0123456789") != "" {
					refs = append(refs, ref)
				}
			}
		}
	}
	return refs
}

// flagless drops the --flags before a Dockerfile instruction's arguments.
func flagless(fields []string) []string {
	for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
		fields = fields[1:]
	}
	return fields
}

// readDockerfile reads a build's Dockerfile from the checkout, "" when it
// cannot (the host-path rules say why).
func readDockerfile(b map[string]any, checkout string) string {
	root, err := resolveHostPath(checkout)
	if err != nil {
		return ""
	}
	path := jsonString(b["dockerfile"])
	if path == "" {
		path = "Dockerfile"
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(jsonString(b["context"]), path)
	}
	resolved, err := resolveHostPath(path)
	if err != nil {
		return ""
	}
	rel, ok := strings.CutPrefix(resolved, root+"/")
	if !ok {
		return ""
	}
	data, _, v := readInCheckout(root, rel, true)
	if v != nil {
		return ""
	}
	return string(data)
}
