package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

const checkUsage = `Usage: pgo check [-c FILE [--no-users]] [-s SERVICE] [--datadir DIR] [PATH]

Checks offline what pgod would check.

With -c and no PATH, checks the config as pgod would on this host, that the
users of its services exist included (--no-users leaves that out, for a config
checked away from its host, as in CI): prints one line per service (name,
user, repository with credentials hidden, branch) or every error.

With a PATH (default "."), renders the compose project in PATH with
"docker compose config", as pgod would, and checks it against the security
policy. The service's settings come from the config given with -c (the one
named by -s, or the only one), and so do the names of the other services,
whose names the project may not claim; without -c, PATH is checked as a
service named after its directory with the default policy, no exceptions, and
no other services known (pgod may still refuse a name another service owns).
Each violation is printed as "compose.yaml:LINE: service "web": REASON".
A secrets.env.age beside the compose file is checked to be a well-formed age
file with an ssh-ed25519 recipient, never decrypted: the render runs without
its variables.
Rendering needs prlimit (util-linux), which bounds compose's memory.

Flags:
  -c, --config FILE     pgo.toml to read
  -s, --service NAME    the service of the config to check PATH as; without -c,
                        the name to check it under
      --no-users        with -c alone: do not look up the services' users here
      --datadir DIR     pgod's data directory; bind mounts may use DIR/NAME
                        (default /data)
  -h, --help            print this text

Exit status: 0 all is well (or only warnings, for a service with user "root"),
1 the config is invalid or the project violates the policy, 2 it could not be
checked (bad flags, no Compose v2, unreadable files).
`

// checkFlags are the flags of "pgo check".
type checkFlags struct {
	config     string
	service    string
	datadir    string
	path       string
	pathSet    bool // PATH was given; without it and with -c only the config is checked
	noUsers    bool // --no-users: the config is checked away from its host
	serviceSet bool // -s was given
}

// renderFunc renders and validates one checkout; renderProject, or a fake in tests.
type renderFunc func(context.Context, renderRequest) ([]byte, []violation, error)

// lookupFunc looks up a service's user on this host; a fake in tests.
type lookupFunc func(name string) (*account, error)

// runCheck is "pgo check": offline validation of pgo.toml and a compose project.
func runCheck(args []string, stdout, stderr io.Writer) int {
	return check(args, stdout, stderr, renderProject, lookupAccount)
}

// check is runCheck with the renderer and the user lookup passed in, so
// tests can run it without Docker and without the users of their configs.
func check(args []string, stdout, stderr io.Writer, render renderFunc, lookup lookupFunc) int {
	f, code := parseCheckFlags(args, stdout, stderr)
	if f == nil {
		return code
	}
	var cfg *Config
	if f.config != "" {
		data, err := os.ReadFile(f.config)
		if err != nil {
			fmt.Fprintf(stderr, "pgo check: %v\n", err)
			return 2
		}
		if cfg, err = parseConfig(f.config, data); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if !f.pathSet && !f.serviceSet {
			if !f.noUsers && missingUsers(cfg, lookup, stderr) {
				return 1
			}
			printServices(stdout, cfg)
			return 0
		}
	}
	svc, trusted, err := checkService(cfg, f, lookup)
	if err != nil {
		fmt.Fprintf(stderr, "pgo check: %v\n", err)
		return 2
	}
	return checkProject(f, cfg, svc, trusted, stdout, stderr, render)
}

// parseCheckFlags parses the arguments; a nil result means exit with the code.
func parseCheckFlags(args []string, stdout, stderr io.Writer) (*checkFlags, int) {
	f := &checkFlags{path: "."}
	fs := flag.NewFlagSet("pgo check", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed below, once
	fs.StringVar(&f.config, "c", "", "")
	fs.StringVar(&f.config, "config", "", "")
	fs.StringVar(&f.service, "s", "", "")
	fs.StringVar(&f.service, "service", "", "")
	fs.StringVar(&f.datadir, "datadir", "/data", "")
	fs.BoolVar(&f.noUsers, "no-users", false, "")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, checkUsage)
			return nil, 0
		}
		fmt.Fprintf(stderr, "pgo check: %v\n%s", err, checkUsage)
		return nil, 2
	}
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "s" || fl.Name == "service" {
			f.serviceSet = true
		}
	})
	switch len(paths) {
	case 0:
	case 1:
		f.path, f.pathSet = paths[0], true
	default:
		fmt.Fprintf(stderr, "pgo check: one PATH at most, got %d\n%s", len(paths), checkUsage)
		return nil, 2
	}
	if f.datadir == "" || !filepath.IsAbs(f.datadir) {
		fmt.Fprintf(stderr, "pgo check: --datadir must be an absolute path\n%s", checkUsage)
		return nil, 2
	}
	return f, 0
}

// parseInterspersed parses flags that may come before or after the
// positional arguments ("pgo check . -c pgo.toml"), which the flag package
// alone stops at; everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// missingUsers prints, for each service whose user pgod could not use on
// this host, what is wrong and how to fix it; it reports whether there was any.
func missingUsers(cfg *Config, lookup lookupFunc, stderr io.Writer) bool {
	found := false
	for _, s := range cfg.Services {
		if _, err := lookup(s.User); err != nil {
			fmt.Fprintln(stderr, accountError(cfg, s, err))
			found = true
		}
	}
	return found
}

// printServices prints one line per service: name, user, repository (credentials hidden), branch.
func printServices(w io.Writer, cfg *Config) {
	for _, s := range cfg.Services {
		line := fmt.Sprintf("%s %s %s %s", s.Name, s.User, s.RedactedRepository(), s.Branch)
		fmt.Fprintln(w, redact(line, s.secrets()))
	}
}

// checkService picks the service PATH is checked as: from the config, or a
// default one named after PATH, run by the current user, with no exceptions.
// trusted is true for a config service whose user is uid 0, as pgod
// decides it: violations are only warned about. Where the user does not
// exist (a check away from the host), the name root stands for uid 0.
func checkService(cfg *Config, f *checkFlags, lookup lookupFunc) (svc *Service, trusted bool, err error) {
	if cfg != nil {
		svc, err := pickService(cfg, f.service)
		if err != nil {
			return nil, false, err
		}
		if a, err := lookup(svc.User); err == nil {
			return svc, a.root(), nil
		}
		return svc, svc.User == "root", nil
	}
	name := f.service
	if name == "" {
		abs, err := filepath.Abs(f.path)
		if err != nil {
			return nil, false, err
		}
		name = sanitizeServiceName(filepath.Base(abs))
	}
	if !validServiceName(name) {
		return nil, false, fmt.Errorf("service name %q is not allowed: use at most 63 lowercase letters, digits, \"-\" and \"_\"", name)
	}
	u, err := user.Current()
	if err != nil {
		return nil, false, fmt.Errorf("current user: %w", err)
	}
	return &Service{Name: name, User: u.Username, Branch: "main"}, false, nil
}

func pickService(cfg *Config, name string) (*Service, error) {
	if name != "" {
		for _, s := range cfg.Services {
			if s.Name == name {
				return s, nil
			}
		}
		return nil, fmt.Errorf("%s has no service %q", cfg.Path, name)
	}
	switch len(cfg.Services) {
	case 0:
		return nil, fmt.Errorf("%s has no services", cfg.Path)
	case 1:
		return cfg.Services[0], nil
	}
	names := make([]string, len(cfg.Services))
	for i, s := range cfg.Services {
		names[i] = s.Name
	}
	return nil, fmt.Errorf("%s has %d services (%s): pick one with -s", cfg.Path, len(names), strings.Join(names, ", "))
}

// sanitizeServiceName makes a directory name into a service name: lowercase,
// other characters replaced by "-", starting with a letter or digit.
func sanitizeServiceName(dir string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(dir))
	name = strings.TrimLeft(name, "-_")
	if len(name) > 63 {
		name = name[:63]
	}
	if name == "" {
		return "pgo"
	}
	return name
}

// otherServices names the services of the config other than svc; nil without a config.
func otherServices(cfg *Config, svc *Service) []string {
	if cfg == nil {
		return nil
	}
	var others []string
	for _, s := range cfg.Services {
		if s != svc {
			others = append(others, s.Name)
		}
	}
	return others
}

// checkProject renders and validates PATH as the service and prints the violations.
func checkProject(f *checkFlags, cfg *Config, svc *Service, trusted bool, stdout, stderr io.Writer, render renderFunc) int {
	checkout, err := filepath.Abs(f.path)
	if err == nil {
		err = isDir(checkout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pgo check: %v\n", err)
		return 2
	}
	// Compose runs in a process group of its own, out of reach of the
	// terminal's ^C and of a kill of pgo: the cancelled context ends it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	secrets := svc.secrets()
	project, violations, err := render(ctx, renderRequest{
		Service:  svc,
		Checkout: checkout,
		DataDir:  filepath.Join(f.datadir, svc.Name),
		Docker:   "docker",
		Trusted:  trusted,
		Others:   otherServices(cfg, svc),
	})
	if err != nil {
		fmt.Fprintf(stderr, "pgo check: service %q: %s\n", svc.Name, redact(err.Error(), secrets))
		return 2
	}
	// pgo check has no host key: it says whether the committed secrets are
	// a well-formed age file for an SSH key, and the render ran without them.
	sealed, sealedOK := secretsCheck(checkout, svc)
	if sealed != "" {
		fmt.Fprintln(stdout, sealed)
	}
	prefix := ""
	if trusted {
		prefix = "warning: "
	}
	for _, v := range violations {
		fmt.Fprintln(stdout, prefix+redact(v.String(), secrets))
	}
	routes := deadRoutes(cfg, svc, project)
	for _, r := range routes {
		fmt.Fprintln(stdout, r)
	}
	switch {
	case len(routes) > 0, len(violations) > 0 && !trusted, !sealedOK:
		return 1
	case len(violations) == 0:
		fmt.Fprintf(stdout, "%s: ok, service %q passes the policy\n", f.path, svc.Name)
	}
	return 0
}

// deadRoutes says which of svc's urls name a compose service the rendered
// project does not have: Caddy would route them to nowhere.
func deadRoutes(cfg *Config, svc *Service, project []byte) []string {
	if len(svc.URLs) == 0 {
		return nil
	}
	var p struct {
		Services map[string]json.RawMessage `json:"services"`
	}
	if err := json.Unmarshal(project, &p); err != nil || p.Services == nil {
		return nil // the policy has said what is wrong with it
	}
	var dead []string
	for _, host := range slices.Sorted(maps.Keys(svc.URLs)) {
		name, _, _ := strings.Cut(svc.URLs[host], ":")
		if _, ok := p.Services[name]; !ok {
			msg := fmt.Sprintf("urls: %s routes to compose service %q, which the project does not have; services: %s",
				host, name, strings.Join(slices.Sorted(maps.Keys(p.Services)), ", "))
			dead = append(dead, (&configError{Path: cfg.Path, Line: svc.Line, Service: fmt.Sprintf("service %q", svc.Name), Msg: msg}).Error())
		}
	}
	return dead
}

func isDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	return nil
}
