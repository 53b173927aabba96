package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
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
//
// Violations from the pre-check stop before rendering: a file that includes or
// extends another file, or carries custom tags, is never handed to compose,
// unless the service is trusted (user root), whose violations are warnings.
func renderProject(ctx context.Context, r renderRequest) (project []byte, violations []violation, err error) {
	if r.Service == nil {
		return nil, nil, fmt.Errorf("renderProject: no service")
	}
	src, err := precheck(r.Checkout, r.Service.Compose)
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

// minCompose is the oldest Compose v2 pgo accepts: older releases lack the
// canonical JSON output and the remote-resource switches pgo relies on.
var minCompose = [3]int{2, 40, 2}

var composeVersionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)`)

// composeVersion returns the Compose v2 version, or an error when compose is missing, v1, or older than 2.40.2.
func composeVersion(ctx context.Context, docker string) (string, error) {
	if docker == "" {
		docker = "docker"
	}
	var a *account // as the caller: the version does not depend on the user
	cmd := a.command(ctx, a.baseEnv(), docker, "compose", "version", "--short")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if _, ok := err.(*exec.ExitError); ok && msg != "" {
			return "", fmt.Errorf("docker compose v2 is required (%s compose version: %s)", docker, firstLineOf(msg))
		}
		return "", fmt.Errorf("docker compose v2 is required: %s compose version: %w", docker, err)
	}
	return checkComposeVersion(strings.TrimSpace(string(out)))
}

// checkComposeVersion checks the output of "docker compose version --short".
func checkComposeVersion(v string) (string, error) {
	m := composeVersionRE.FindStringSubmatch(v)
	if m == nil {
		return "", fmt.Errorf("docker compose: cannot parse version %q; Compose v2 >= %d.%d.%d is required", v, minCompose[0], minCompose[1], minCompose[2])
	}
	var got [3]int
	for i := range got {
		got[i], _ = strconv.Atoi(m[i+1])
	}
	if got[0] < 2 {
		return "", fmt.Errorf("docker compose %s is Compose v1, which pgo does not support; install Compose v2 >= %d.%d.%d", v, minCompose[0], minCompose[1], minCompose[2])
	}
	for i := range got {
		if got[i] != minCompose[i] {
			if got[i] < minCompose[i] {
				return "", fmt.Errorf("docker compose %s is too old; pgo needs Compose v2 >= %d.%d.%d", v, minCompose[0], minCompose[1], minCompose[2])
			}
			break
		}
	}
	return strings.TrimPrefix(m[0], "v"), nil
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
