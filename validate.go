package main

import (
	"context"
	"fmt"
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
	Checkout string   // the git checkout, the compose project directory
	DataDir  string   // <datadir>/<name>; bind mounts may point under it
	Account  *account // who runs compose; nil: the caller (pgo check)
	Docker   string   // docker binary, normally "docker"
	Trusted  bool     // user = root: violations are warnings
}

// renderProject pre-checks the raw compose file, renders it with "docker
// compose config" and validates the canonical JSON. It returns that JSON (to be
// deployed as is) and the violations; err is for when it could not check at all.
func renderProject(ctx context.Context, r renderRequest) (project []byte, violations []violation, err error) {
	return nil, nil, fmt.Errorf("renderProject: not implemented yet")
}

// composeVersion returns the Compose v2 version, or an error when compose is missing, v1, or older than 2.40.2.
func composeVersion(ctx context.Context, docker string) (string, error) {
	return "", fmt.Errorf("composeVersion: not implemented yet")
}
