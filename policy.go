package main

// The policy keeps a team that can push to its repository from getting root
// on the host or reaching another team's containers, data, networks, images
// or traffic. A project goes through it in this order, one file per stage:
//
//	policy_source.go  the raw compose file, before compose reads it: one file
//	                  only, no custom tags, bounded alias and variable expansion
//	policy_render.go  "docker compose config" as the service's user, bounded in
//	                  time, memory and output: the canonical JSON that runs
//	policy_shape.go   every key of that JSON is one pgo knows
//	policy_rules.go   the rules, each named after what it protects
//	policy_names.go   which configured service a name (container, alias,
//	                  network, volume, image) belongs to
//	policy_paths.go   where host paths lead (bind sources, secrets, build
//	                  contexts), symlinks resolved
//	policy_engine.go  what the shared engine holds, right before "up":
//	                  networks and images made by other projects
//
// renderProject runs the first five at a commit's check; checkBeforeUp runs
// the rules, the host paths and the engine again right before "docker compose
// up", because the host and the engine change between the two.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// violation is one policy finding, printed as "compose.yaml:12: service "web": privileged is not allowed".
type violation struct {
	File    string // source file, relative to the checkout; "" when unknown
	Line    int    // line in File; 0 when unknown
	Path    string // canonical key path, e.g. services.web.privileged, when no line is known
	Service string // compose service, "" for project-level findings
	Msg     string
}

func (v violation) String() string {
	where := v.File
	switch {
	case v.File != "" && v.Line > 0:
		where = fmt.Sprintf("%s:%d", v.File, v.Line)
	case v.Path != "":
		where = v.Path
	}
	s := where + ": "
	if v.Service != "" {
		s += fmt.Sprintf("service %q: ", v.Service)
	}
	return s + v.Msg
}

// renderRequest is what rendering and validating one service's checkout needs.
type renderRequest struct {
	Service  *Service
	Checkout string                          // the git checkout, the compose project directory
	DataDir  string                          // <datadir>/<name>; bind mounts may point under it
	Account  *account                        // who runs compose; nil: the caller (pgo check)
	Docker   string                          // docker binary, normally "docker"
	Trusted  bool                            // the user is uid 0: violations are warnings
	Others   []string                        // names of the other configured services, whose names this project may not claim
	Observe  func(command string, err error) // counts the render for metrics; may be nil
}

// renderProject pre-checks the raw compose file, renders it with "docker
// compose config" and validates the canonical JSON. It returns that JSON (to be
// deployed as is) and the violations; err is for when it could not check at all.
//
// Violations from the pre-check stop before rendering: a file that includes or
// extends another file, or carries custom tags, is never handed to compose,
// unless the service is trusted (user root), whose violations are warnings.
func renderProject(ctx context.Context, r renderRequest) (project []byte, violations []violation, err error) {
	if r.Service == nil {
		return nil, nil, fmt.Errorf("renderProject: no service")
	}
	src, err := precheck(r.Checkout, r.Service)
	if err != nil {
		return nil, nil, err
	}
	// A trusted (root) service deploys despite violations, so it still needs
	// its project rendered; anyone else stops here.
	if len(src.violations) > 0 && !r.Trusted {
		return nil, src.violations, nil
	}
	project, violations, err = renderCompose(ctx, r, src.file)
	if err != nil {
		return nil, nil, err
	}
	if project != nil {
		violations = validateProject(project, r)
	}
	src.locate(violations)
	return project, append(src.violations, violations...), nil
}

// validateProject checks canonical compose JSON against the rules and its
// host paths against where the service may reach.
func validateProject(project []byte, r renderRequest) []violation {
	p, err := decodeProject(project)
	if err != nil {
		return []violation{{Msg: fmt.Sprintf("cannot decode the rendered project: %v", err)}}
	}
	vs := checkShape("", p, projectShape, nil)
	vs = append(vs, applyRules(p, r)...)
	return append(vs, checkHostPaths(p, r)...)
}

// checkBeforeUp is the last check, right before "docker compose up" runs the
// validated project. It applies the rules again (the other configured
// services may have changed), resolves every host path again (a symlink
// swapped in since the check is caught here), and asks the engine about the
// networks the project joins and the images it runs, which other projects can
// create or retag in the meantime.
func checkBeforeUp(ctx context.Context, project []byte, r renderRequest, engine engineInspector) []violation {
	vs := validateProject(project, r)
	p, err := decodeProject(project)
	if err != nil {
		return vs
	}
	return append(vs, checkEngine(ctx, p, r, engine)...)
}

// relocate rewrites the host paths of a project rendered in the directory
// from (a staging worktree of the commit) to the directory to (the checkout),
// so that it is the project compose would render there, without rendering
// it again. Compose makes every path it resolves absolute, a whole JSON
// string, so only strings that are from or start with from + "/" change.
// ok is false when from still shows anywhere else, and the caller renders
// in to instead.
func relocate(project []byte, from, to string) (relocated []byte, ok bool) {
	quote := func(s string) []byte { b, _ := json.Marshal(s); return b[:len(b)-1] } // `"s`, unterminated
	qFrom, qTo := quote(from), quote(to)
	out := bytes.ReplaceAll(project, append(slices.Clip(qFrom), '"'), append(slices.Clip(qTo), '"'))
	out = bytes.ReplaceAll(out, append(slices.Clip(qFrom), '/'), append(slices.Clip(qTo), '/'))
	return out, !bytes.Contains(out, qFrom[1:])
}

// recheckPaths resolves the host paths of a validated project again; it is
// the host-path part of checkBeforeUp, for callers that have no engine to ask.
func recheckPaths(project []byte, r renderRequest) []violation {
	p, err := decodeProject(project)
	if err != nil {
		return []violation{{Msg: fmt.Sprintf("cannot decode the rendered project: %v", err)}}
	}
	return checkHostPaths(p, r)
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
