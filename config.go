package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is a parsed and validated pgo.toml.
type Config struct {
	Path     string            // file it was read from, for error messages
	Services []*Service        // in file order; after keepHost only this host's
	Notify   []*NotifyEndpoint // [[notify]]: endpoints that get every service's events, and pgod's own

	// Elsewhere are the services keepHost took out: their hosts lists name
	// other hosts. Their names stay reserved on this engine too.
	Elsewhere []*Service

	data []byte // the file as read, for the config repository to keep
}

// Service is one [[services]] table of pgo.toml.
type Service struct {
	Name          string            // unique; directory and compose project name
	User          string            // Unix user the compose project runs as
	Repository    string            // git URL; may hold credentials, never print it: use RedactedRepository
	Branch        string            // default "main"
	Registries    []string          // "[user:]token@host"
	Compose       string            // compose file relative to the checkout; "" means the standard names
	Env           []string          // "NAME=VALUE", added to compose's environment; values are secrets
	URLs          map[string]string // host name -> "service:port"
	Networks      []string          // external networks the project may join; empty means any
	Import        string            // Caddyfile snippet to write into the checkout
	Reload        string            // "host:name//exec ..." run after the snippet changed
	Mount         string            // "nfs://host/path" mounted at <datadir>/<name>
	Ports         []string          // host ports the project may publish
	WebhookSecret string            // enables POST /hook/<name>; a secret
	Notify        []*NotifyEndpoint // the service's own endpoints, on top of the config's
	HealthTimeout time.Duration     // how long a deploy's containers have to be ready; 0 means defaultHealthTimeout
	UpdateImages  bool              // pull every poll and redeploy services whose image moved
	SignedCommits bool              // deploy only commits signed by a key of ssh/ of the deployed commit
	Signers       []string          // authorized_keys lines that may sign the first deploy
	Hosts         []string          // the hosts that run it; empty means every host the config is used on
	Swarm         bool              // deploy with docker stack deploy on the swarm this host manages (swarm.go)
	Placement     []string          // placement constraints added to every swarm service's, as "node.labels.team==shop"

	Line int // line of the [[services]] header in the config file
}

// serviceKeys are the keys a [[services]] table may have, in the order the documentation lists them.
var serviceKeys = []string{
	"name", "user", "repository", "branch", "registries", "compose", "env", "urls",
	"networks", "import", "reload", "mount", "ports", "webhook_secret", "notify",
	"health_timeout", "update_images", "signed_commits", "signers", "hosts", "swarm", "placement",
}

// topKeys are the keys pgo.toml may have at its top level.
var topKeys = []string{"services", "notify"}

// NotifyEndpoint is one [[notify]] table, or one table of a service's notify:
// where to send events, and in which format.
type NotifyEndpoint struct {
	Name    string   // names the endpoint in logs and metrics; never its URL
	URL     string   // where events are POSTed; a secret: Slack, Discord and ntfy hold the token in it
	Format  string   // notifySlack, notifyDiscord, notifyNtfy or notifyJSON
	Secret  string   // json only: the HMAC-SHA256 key of X-Pgo-Signature; a secret
	Events  []string // event kinds to send; empty means all
	Service string   // "" for a [[notify]] table (every service); else the only service whose events it gets

	Line int // line of the table's header (or of the inline table)
}

// notifyKeys are the keys of a notify table, in the order the documentation lists them.
var notifyKeys = []string{"name", "url", "format", "secret", "events"}

// minWebhookSecret is the shortest webhook_secret accepted: anyone who guesses it can trigger deploys.
const minWebhookSecret = 16

// loadConfig reads, parses and validates a pgo.toml.
func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // names the path already
	}
	return parseConfig(path, data)
}

// parseConfig parses and validates the contents of a pgo.toml; path is for
// error messages. All errors are reported, in file order, joined.
func parseConfig(path string, data []byte) (*Config, error) {
	root, err := parseTOMLFile(path, data)
	if err != nil {
		return nil, err
	}
	c := &configChecker{path: path}
	cfg := &Config{Path: path}
	for _, key := range root.Keys {
		v := root.Values[key]
		switch key {
		case "services":
			cfg.Services = c.services(v)
		case "notify":
			cfg.Notify = c.notifyEndpoints(v, "")
		default:
			c.errorf(v.Line, "", "%s", unknownKey(key, v.Line, topKeys))
		}
	}
	c.crossCheck(cfg.Services)
	c.nameEndpoints(cfg)
	if len(c.errs) > 0 {
		return nil, c.err()
	}
	return cfg, nil
}

// runsOn reports whether host runs the service: it is named in hosts, by
// its whole name or by its first label ("web1" for web1.example.org), case
// aside; a service without hosts runs everywhere.
func (s *Service) runsOn(host string) bool {
	if len(s.Hosts) == 0 {
		return true
	}
	short, _, _ := strings.Cut(host, ".")
	for _, h := range s.Hosts {
		if strings.EqualFold(h, host) || strings.EqualFold(h, short) {
			return true
		}
	}
	return false
}

// keepHost leaves in Services only what host runs, and moves the rest to
// Elsewhere.
func (cfg *Config) keepHost(host string) {
	var here []*Service
	for _, s := range cfg.Services {
		if s.runsOn(host) {
			here = append(here, s)
		} else {
			cfg.Elsewhere = append(cfg.Elsewhere, s)
		}
	}
	cfg.Services = here
}

// parseTOMLFile parses data, the contents of path; an error names the path
// and, where it has one, the line.
func parseTOMLFile(path string, data []byte) (*tomlTable, error) {
	root, err := parseTOML(data)
	if err != nil {
		var te *tomlError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s:%d: %w", path, te.Line, err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return root, nil
}

// configError is one problem in pgo.toml, with the file, line and service it concerns.
type configError struct {
	Path    string
	Line    int
	Service string // `service "web"`, or `service #2` when it has no usable name; "" for the file
	Msg     string
}

func (e *configError) Error() string {
	if e.Service == "" {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.Path, e.Line, e.Service, e.Msg)
}

// configChecker collects every problem in a config, rather than stopping at the first.
type configChecker struct {
	path string
	errs []*configError
}

func (c *configChecker) errorf(line int, service, format string, args ...any) {
	c.errs = append(c.errs, &configError{Path: c.path, Line: line, Service: service, Msg: fmt.Sprintf(format, args...)})
}

// err joins the errors in file order.
func (c *configChecker) err() error {
	sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].Line < c.errs[j].Line })
	errs := make([]error, len(c.errs))
	for i, e := range c.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func (c *configChecker) services(v *tomlValue) []*Service {
	if v.Kind != tomlKindArray {
		c.errorf(v.Line, "", "services must be an array of tables ([[services]]), not %s", v.Kind)
		return nil
	}
	var services []*Service
	for i, elem := range v.Array {
		if elem.Kind != tomlKindTable {
			c.errorf(elem.Line, "", "services[%d] must be a table, not %s", i, elem.Kind)
			continue
		}
		services = append(services, c.service(i, elem))
	}
	return services
}

// service decodes and checks one [[services]] table; i is its index, for
// naming a service that has no usable name.
func (c *configChecker) service(i int, v *tomlValue) *Service {
	t := v.Table
	s := &Service{Line: v.Line, Branch: "main"}
	label := fmt.Sprintf("service #%d", i+1)
	if name, ok := t.Values["name"]; ok && name.Kind == tomlKindString {
		label = fmt.Sprintf("service %q", name.Str)
	}
	sc := &serviceChecker{configChecker: c, label: label}
	for _, key := range t.Keys {
		sc.key(s, key, t.Values[key])
	}
	for _, required := range []string{"name", "user", "repository"} {
		if _, ok := t.Values[required]; !ok {
			sc.errorf(v.Line, "%s is required", required)
		}
	}
	if sign, ok := t.Values["signed_commits"]; ok && s.SignedCommits {
		if signers, listed := t.Values["signers"]; !listed || signers.Kind == tomlKindArray && len(signers.Array) == 0 {
			sc.errorf(sign.Line, `signed_commits needs signers for the first deploy: list the public keys that may sign it, as in signers = ["ssh-ed25519 AAAA... alice@laptop"]; later commits are checked against the keys under ssh/ of the deployed commit`)
		}
	}
	if s.Swarm {
		sc.swarmConflicts(t)
	} else if p, ok := t.Values["placement"]; ok {
		sc.errorf(p.Line, "placement needs swarm = true: it constrains where Swarm runs the tasks")
	}
	for _, ep := range s.Notify {
		ep.Service = s.Name
	}
	return s
}

// swarmHints says why each key is refused next to swarm = true.
var swarmHints = map[string]string{
	"urls":          "Caddy on this host cannot reach the tasks on a swarm's overlay network; publish a port (ports) and route to it instead",
	"import":        "the Caddyfile snippet routes to containers on this host, and a swarm's tasks are on an overlay network Caddy cannot reach",
	"mount":         "an NFS share mounted on this host is not on the other nodes, where the tasks may run; use a volume of the project",
	"update_images": "it runs docker compose; a stack deploy resolves the images itself (run pgoctl up to redeploy)",
}

// placementRE is a Swarm placement constraint: node.<attribute> or
// engine.labels.<name>, == or !=, a value.
var placementRE = regexp.MustCompile(`^(node|engine)\.[A-Za-z0-9_.-]+ *(==|!=) *[A-Za-z0-9_.:/-]+$`)

// swarmConflicts refuses the keys that cannot be kept on a swarm service.
func (sc *serviceChecker) swarmConflicts(t *tomlTable) {
	for _, key := range t.Keys {
		v := t.Values[key]
		if hint, ok := swarmHints[key]; ok && !(v.Kind == tomlKindBool && !v.Bool) {
			sc.errorf(v.Line, "%s is not allowed with swarm = true: %s", key, hint)
		}
	}
}

// serviceChecker reports problems of one service.
type serviceChecker struct {
	*configChecker
	label string
}

func (sc *serviceChecker) errorf(line int, format string, args ...any) {
	sc.configChecker.errorf(line, sc.label, format, args...)
}

// key decodes and checks one key of a service. Values that may hold secrets are never quoted in errors.
func (sc *serviceChecker) key(s *Service, key string, v *tomlValue) {
	switch key {
	case "name":
		if sc.str(key, v, &s.Name) && !validServiceName(s.Name) {
			sc.errorf(v.Line, "name %q is not allowed: use at most 63 lowercase letters, digits, \"-\" and \"_\", starting with a letter or digit", s.Name)
		}
	case "user":
		if sc.str(key, v, &s.User) && !validUserName(s.User) {
			sc.errorf(v.Line, "user %q is not a valid Unix user name", s.User)
		}
	case "repository":
		if sc.str(key, v, &s.Repository) {
			if msg := repositoryProblem(s.Repository); msg != "" {
				sc.errorf(v.Line, "repository %s", msg)
			}
		}
	case "branch":
		if sc.str(key, v, &s.Branch) && !validBranch(s.Branch) {
			sc.errorf(v.Line, "branch %q is not a valid git branch name", s.Branch)
		}
	case "registries":
		s.Registries = sc.strList(key, v, func(e string) string {
			if _, ok := parseRegistry(e); !ok {
				return `expected "[user:]token@host"`
			}
			return ""
		})
	case "compose", "import":
		field := &s.Compose
		if key == "import" {
			field = &s.Import
		}
		if sc.str(key, v, field) {
			if msg := relPathProblem(*field); msg != "" {
				sc.errorf(v.Line, "%s %q %s", key, *field, msg)
			}
		}
	case "env":
		s.Env = sc.env(v)
	case "urls":
		s.URLs = sc.urls(v)
	case "networks":
		s.Networks = sc.strList(key, v, func(e string) string {
			if !networkNameRE.MatchString(e) {
				return fmt.Sprintf("%q is not a valid network name", e)
			}
			return ""
		})
	case "reload":
		if sc.str(key, v, &s.Reload) && !validReload(s.Reload) {
			sc.errorf(v.Line, `reload %q: expected "host:name//exec SERVICE COMMAND..."`, s.Reload)
		}
	case "mount":
		if sc.str(key, v, &s.Mount) {
			if msg := mountProblem(s.Mount); msg != "" {
				sc.errorf(v.Line, "mount %q: %s", redactURL(s.Mount), msg)
			}
		}
	case "ports":
		s.Ports = sc.ports(v)
	case "webhook_secret":
		if sc.str(key, v, &s.WebhookSecret) && len(s.WebhookSecret) < minWebhookSecret {
			sc.errorf(v.Line, "webhook_secret is too short: use at least %d characters (e.g. openssl rand -hex 32)", minWebhookSecret)
		}
	case "notify":
		s.Notify = sc.notifyEndpoints(v, sc.label)
	case "health_timeout":
		var str string
		if sc.str(key, v, &str) {
			d, err := time.ParseDuration(str)
			if err != nil || d < time.Second || d > maxHealthTimeout {
				sc.errorf(v.Line, "health_timeout %q: expected a duration from 1s to %s, as in \"2m\" or \"30s\"", str, maxHealthTimeout)
			}
			s.HealthTimeout = d
		}
	case "update_images":
		if v.Kind != tomlKindBool {
			sc.errorf(v.Line, "update_images must be true or false, not %s", v.Kind)
		}
		s.UpdateImages = v.Bool
	case "signed_commits":
		if v.Kind != tomlKindBool {
			sc.errorf(v.Line, "signed_commits must be true or false, not %s", v.Kind)
		}
		s.SignedCommits = v.Bool
	case "swarm":
		if v.Kind != tomlKindBool {
			sc.errorf(v.Line, "swarm must be true or false, not %s", v.Kind)
		}
		s.Swarm = v.Bool
	case "placement":
		s.Placement = sc.strList(key, v, func(e string) string {
			if !placementRE.MatchString(e) {
				return fmt.Sprintf("%q is not a placement constraint such as \"node.labels.team==shop\"", e)
			}
			return ""
		})
	case "signers":
		s.Signers = sc.strList(key, v, func(e string) string {
			if strings.ContainsAny(e, "\r\n") {
				return "must be one line, one key an element"
			}
			if _, err := parseKeyLine([]byte(e)); err != nil {
				return fmt.Sprintf("not a public key line: %v (write it as in a .pub file, \"ssh-ed25519 AAAA... alice@laptop\")", err)
			}
			return ""
		})
	case "hosts":
		s.Hosts = sc.strList(key, v, func(e string) string {
			if !hostNameRE.MatchString(e) || strings.HasPrefix(e, "*") {
				return fmt.Sprintf("%q is not a host name", e)
			}
			return ""
		})
		if v.Kind == tomlKindArray && len(v.Array) == 0 {
			sc.errorf(v.Line, "hosts is empty, so no host would run the service: name its hosts, or remove the key to run it on every host")
		}
	default:
		sc.errorf(v.Line, "%s", unknownKey(key, v.Line, serviceKeys))
	}
}

// str stores a string value in dst, or reports what is wrong with it.
func (sc *serviceChecker) str(key string, v *tomlValue, dst *string) bool {
	if v.Kind != tomlKindString {
		sc.errorf(v.Line, "%s must be a string, not %s", key, v.Kind)
		return false
	}
	if strings.ContainsRune(v.Str, 0) {
		sc.errorf(v.Line, "%s must not contain a NUL character", key)
		return false
	}
	*dst = v.Str
	return true
}

// strList decodes an array of strings; check returns what is wrong with an element, or "".
func (sc *serviceChecker) strList(key string, v *tomlValue, check func(string) string) []string {
	if v.Kind != tomlKindArray {
		sc.errorf(v.Line, "%s must be an array of strings, not %s", key, v.Kind)
		return nil
	}
	var list []string
	for i, e := range v.Array {
		var s string
		if !sc.str(fmt.Sprintf("%s[%d]", key, i), e, &s) {
			continue
		}
		if msg := check(s); msg != "" {
			sc.errorf(e.Line, "%s[%d]: %s", key, i, msg)
			continue
		}
		list = append(list, s)
	}
	return list
}

func (sc *serviceChecker) env(v *tomlValue) []string {
	seen := map[string]bool{}
	return sc.strList("env", v, func(e string) string {
		name, _, ok := strings.Cut(e, "=")
		switch {
		case !ok:
			return `expected "NAME=VALUE"` // no quote: without "=" it may be all secret
		case !envNameRE.MatchString(name):
			return fmt.Sprintf("%q is not a valid environment variable name", name)
		case seen[name]:
			return fmt.Sprintf("%s is set twice", name)
		}
		seen[name] = true
		return ""
	})
}

func (sc *serviceChecker) urls(v *tomlValue) map[string]string {
	if v.Kind != tomlKindTable {
		sc.errorf(v.Line, `urls must be a table of "host" = "service:port", not %s`, v.Kind)
		return nil
	}
	urls := map[string]string{}
	for _, host := range v.Table.Keys {
		target := v.Table.Values[host]
		var s string
		if !sc.str(fmt.Sprintf("urls %q", host), target, &s) {
			continue
		}
		if !hostNameRE.MatchString(host) {
			sc.errorf(target.Line, "urls: %q is not a host name", host)
			continue
		}
		if !validServicePort(s) {
			sc.errorf(target.Line, "urls %q: %q is not \"service:port\"", host, s)
			continue
		}
		urls[host] = s
	}
	return urls
}

func (sc *serviceChecker) ports(v *tomlValue) []string {
	if v.Kind != tomlKindArray {
		sc.errorf(v.Line, `ports must be an array of port numbers, e.g. [ "80", "443" ], not %s`, v.Kind)
		return nil
	}
	var ports []string
	seen := map[string]bool{}
	for i, e := range v.Array {
		var port string
		switch e.Kind {
		case tomlKindString:
			port = e.Str
		case tomlKindInteger:
			port = strconv.FormatInt(e.Int, 10)
		default:
			sc.errorf(e.Line, "ports[%d] must be a port number, not %s", i, e.Kind)
			continue
		}
		switch {
		case !validPort(port):
			sc.errorf(e.Line, "ports[%d]: %q is not a port number (1-65535)", i, port)
		case seen[port]:
			sc.errorf(e.Line, "ports[%d]: %s is listed twice", i, port)
		default:
			seen[port] = true
			ports = append(ports, port)
		}
	}
	return ports
}

// notifyEndpoints decodes an array of notify tables: the top level's
// [[notify]] when owner is "", else the notify of the service labelled owner.
func (c *configChecker) notifyEndpoints(v *tomlValue, owner string) []*NotifyEndpoint {
	if v.Kind != tomlKindArray {
		header := "[[notify]]"
		if owner != "" {
			header = "[[services.notify]]"
		}
		c.errorf(v.Line, owner, "notify must be an array of tables (%s), not %s", header, v.Kind)
		return nil
	}
	var endpoints []*NotifyEndpoint
	for i, elem := range v.Array {
		if elem.Kind != tomlKindTable {
			c.errorf(elem.Line, owner, "notify[%d] must be a table, not %s", i, elem.Kind)
			continue
		}
		endpoints = append(endpoints, c.notifyEndpoint(i, elem, owner))
	}
	return endpoints
}

// notifyEndpoint decodes and checks one notify table; i is its index, for
// naming an endpoint that has no usable name.
func (c *configChecker) notifyEndpoint(i int, v *tomlValue, owner string) *NotifyEndpoint {
	t := v.Table
	ep := &NotifyEndpoint{Line: v.Line}
	label := fmt.Sprintf("notify #%d", i+1)
	if name, ok := t.Values["name"]; ok && name.Kind == tomlKindString && validServiceName(name.Str) {
		label = fmt.Sprintf("notify %q", name.Str)
	}
	if owner != "" {
		label = owner + ": " + label
	}
	ec := &serviceChecker{configChecker: c, label: label}
	for _, key := range t.Keys {
		ec.notifyKey(ep, key, t.Values[key])
	}
	for _, required := range []string{"url", "format"} {
		if _, ok := t.Values[required]; !ok {
			ec.errorf(v.Line, "%s is required", required)
		}
	}
	if ep.Secret != "" && ep.Format != "" && ep.Format != notifyJSON {
		ec.errorf(t.Values["secret"].Line, "secret signs json payloads only; slack, discord and ntfy endpoints carry their token in the url")
	}
	return ep
}

// notifyKey decodes and checks one key of a notify table. The url and the
// secret are never quoted: the url of a Slack, Discord or ntfy endpoint is
// its token.
func (sc *serviceChecker) notifyKey(ep *NotifyEndpoint, key string, v *tomlValue) {
	switch key {
	case "name":
		if sc.str(key, v, &ep.Name) && !validServiceName(ep.Name) {
			sc.errorf(v.Line, `name is not allowed: use at most 63 lowercase letters, digits, "-" and "_", starting with a letter or digit`)
			ep.Name = "" // never quoted later: it may be a misplaced url
		}
	case "url":
		if sc.str(key, v, &ep.URL) {
			if msg := notifyURLProblem(ep.URL); msg != "" {
				sc.errorf(v.Line, "url %s", msg)
			}
		}
	case "format":
		var format string
		if sc.str(key, v, &format) {
			if slices.Contains(notifyFormats, format) {
				ep.Format = format
			} else {
				sc.errorf(v.Line, "format %q is not supported%s", format, choiceHint(format, notifyFormats))
			}
		}
	case "secret":
		if sc.str(key, v, &ep.Secret) && len(ep.Secret) < minWebhookSecret {
			sc.errorf(v.Line, "secret is too short: use at least %d characters (e.g. openssl rand -hex 32)", minWebhookSecret)
		}
	case "events":
		seen := map[string]bool{}
		ep.Events = sc.strList(key, v, func(e string) string {
			switch {
			case !slices.Contains(eventKindNames(), e):
				return fmt.Sprintf("%q is not an event%s", e, choiceHint(e, eventKindNames()))
			case seen[e]:
				return fmt.Sprintf("%s is listed twice", e)
			}
			seen[e] = true
			return ""
		})
	default:
		sc.errorf(v.Line, "%s", unknownKey(key, v.Line, notifyKeys))
	}
}

// choiceHint tells someone who wrote value where one of choices belongs what
// to write instead: the closest choice, or else all of them.
func choiceHint(value string, choices []string) string {
	if guess := closestKey(value, choices); guess != "" {
		return fmt.Sprintf("; did you mean %q?", guess)
	}
	return ": use one of " + strings.Join(choices, ", ")
}

// notifyURLProblem says what is wrong with a notify url, or "". Like
// repositoryProblem it never quotes the URL.
func notifyURLProblem(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7F }) >= 0 {
		return "must not contain spaces or control characters"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a valid URL" // url's error would quote it
	case u.Scheme != "https" && u.Scheme != "http":
		return "must start with https:// or http://"
	case u.Host == "":
		return "has no host"
	}
	return ""
}

// nameEndpoints names every endpoint that has no name of its own after its
// place ("notify-2", "web-notify-1"), and refuses a name used twice: logs and
// metrics tell endpoints apart by name alone.
func (c *configChecker) nameEndpoints(cfg *Config) {
	seen := map[string]*NotifyEndpoint{}
	check := func(owner string, ep *NotifyEndpoint) {
		if first, ok := seen[ep.Name]; ok {
			c.errorf(ep.Line, owner, "notify %q: name is already used by the notify table at line %d", ep.Name, first.Line)
			return
		}
		seen[ep.Name] = ep
	}
	for i, ep := range cfg.Notify {
		if ep.Name == "" {
			ep.Name = fmt.Sprintf("notify-%d", i+1)
		}
		check("", ep)
	}
	for _, s := range cfg.Services {
		for j, ep := range s.Notify {
			if ep.Name == "" {
				ep.Name = fmt.Sprintf("%s-notify-%d", s.Name, j+1)
			}
			check(fmt.Sprintf("service %q", s.Name), ep)
		}
	}
}

// crossCheck finds what no single service shows: names used twice, and host names routed twice.
func (c *configChecker) crossCheck(services []*Service) {
	names := map[string]*Service{}
	hosts := map[string]*Service{}
	for i, s := range services {
		label := fmt.Sprintf("service %q", s.Name)
		if s.Name == "" {
			label = fmt.Sprintf("service #%d", i+1)
		}
		if s.Name != "" {
			if first, ok := names[s.Name]; ok {
				c.errorf(s.Line, label, "name is already used by the service at line %d", first.Line)
			} else {
				names[s.Name] = s
			}
		}
		c.prefixClash(s, label, services)
		for _, host := range sortedKeys(s.URLs) {
			h := strings.ToLower(host)
			if first, ok := hosts[h]; ok && first != s {
				c.errorf(s.Line, label, "urls: %q is already routed by service %q (line %d)", host, first.Name, first.Line)
			} else {
				hosts[h] = s
			}
		}
	}
}

// prefixClash refuses a name that is another service's name followed by "-"
// or "_": compose names resources "<project>_<volume>" and containers
// "<project>-<service>-N", so project "a" with volume "b_c" and project "a_b"
// with volume "c" would share one volume, and a team could reach another's data.
func (c *configChecker) prefixClash(s *Service, label string, services []*Service) {
	for _, other := range services {
		if other == s || other.Name == "" || len(s.Name) <= len(other.Name) {
			continue
		}
		rest, ok := strings.CutPrefix(s.Name, other.Name)
		if ok && (rest[0] == '-' || rest[0] == '_') {
			c.errorf(s.Line, label, "name starts with the name of service %q (line %d) and a separator; compose resource names of the two could clash", other.Name, other.Line)
		}
	}
}

var (
	serviceNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	userNameRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$`)
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	networkNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	composeNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	hostNameRE     = regexp.MustCompile(`^(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	hostPortRE     = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$`)
	scpLikeRE      = regexp.MustCompile(`^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?:[^:]`)
	gitTransportRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*::`)
)

// validServiceName: safe as a directory name and as a compose project name.
func validServiceName(s string) bool { return serviceNameRE.MatchString(s) }

// validUserName accepts what useradd accepts, minus all-digit names, which read as a uid.
func validUserName(s string) bool {
	return userNameRE.MatchString(s) && strings.Trim(s, "0123456789") != ""
}

// repositoryProblem says what is wrong with a git repository location, or "".
// It refuses what would make git run a command (ext::) or read an option (-).
// The message never quotes the location: a mistyped URL may still hold a token.
func repositoryProblem(repo string) string {
	switch {
	case repo == "":
		return "must not be empty"
	case strings.HasPrefix(repo, "-"):
		return `must not start with "-"`
	case gitTransportRE.MatchString(repo):
		return `must not use a git transport ("transport::address")`
	case strings.IndexFunc(repo, func(r rune) bool { return r <= ' ' || r == 0x7F }) >= 0:
		return "must not contain spaces or control characters"
	case strings.HasPrefix(repo, "/"):
		return ""
	case strings.Contains(repo, "://"):
		u, err := url.Parse(repo)
		if err != nil {
			return "is not a valid URL" // url's error would quote the credentials
		}
		switch u.Scheme {
		case "https", "http", "ssh", "git":
			if u.Host == "" {
				return "has no host"
			}
		case "file":
			if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
				return `must be "file:///absolute/path"`
			}
		default:
			return fmt.Sprintf("scheme %q is not supported (use https, http, ssh, git or file)", u.Scheme)
		}
		return ""
	case scpLikeRE.MatchString(repo):
		return ""
	}
	return "must be a URL (https://, ssh://, git://, file://), user@host:path, or an absolute path"
}

// validBranch applies the rules of git check-ref-format to a branch name.
func validBranch(b string) bool {
	if b == "" || b == "@" || strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") ||
		strings.HasSuffix(b, "/") || strings.HasSuffix(b, ".") || strings.HasSuffix(b, ".lock") ||
		strings.Contains(b, "..") || strings.Contains(b, "@{") || strings.Contains(b, "//") {
		return false
	}
	if strings.IndexFunc(b, func(r rune) bool { return r <= ' ' || r == 0x7F || strings.ContainsRune(`~^:?*[\`, r) }) >= 0 {
		return false
	}
	for _, part := range strings.Split(b, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return false
		}
	}
	return true
}

// signerKeys are the service's signers, parsed; each names its place in
// pgo.toml, "pgo.toml signers[0]". parseConfig has checked every line.
func (s *Service) signerKeys() []*authorizedKey {
	var keys []*authorizedKey
	for i, line := range s.Signers {
		k, err := parseKeyLine([]byte(line))
		if err != nil {
			continue
		}
		k.source = fmt.Sprintf("pgo.toml signers[%d]", i)
		keys = append(keys, k)
	}
	return keys
}

// registryLogin is one entry of registries, split.
type registryLogin struct {
	User  string // "" when the entry names none: the service's user is meant
	Token string
	Host  string
}

// parseRegistry splits "[user:]token@host". The host follows the last "@",
// so a token may itself hold an "@".
func parseRegistry(s string) (registryLogin, bool) {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return registryLogin{}, false
	}
	r := registryLogin{Token: s[:at], Host: s[at+1:]}
	if user, token, ok := strings.Cut(r.Token, ":"); ok {
		r.User, r.Token = user, token
		if r.User == "" || strings.IndexFunc(r.User, func(c rune) bool { return c <= ' ' || c == 0x7F }) >= 0 {
			return registryLogin{}, false
		}
	}
	if r.Token == "" || strings.IndexFunc(r.Token, func(c rune) bool { return c < ' ' || c == 0x7F }) >= 0 || !hostPortRE.MatchString(r.Host) {
		return registryLogin{}, false
	}
	return r, true
}

// registryLogins returns the service's registries, the user defaulting to the service's user.
func (s *Service) registryLogins() []registryLogin {
	var logins []registryLogin
	for _, e := range s.Registries {
		r, ok := parseRegistry(e)
		if !ok {
			continue
		}
		if r.User == "" {
			r.User = s.User
		}
		logins = append(logins, r)
	}
	return logins
}

// relPathProblem says why p is not a clean relative path inside the repository, or "".
func relPathProblem(p string) string {
	switch {
	case p == "" || p == ".":
		return "must name a file in the repository"
	case strings.HasPrefix(p, "/"):
		return "must be relative to the repository, not absolute"
	case p == ".." || strings.HasPrefix(p, "../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "/../"):
		return `must stay inside the repository (no ".." component)`
	case strings.ContainsAny(p, "\\\n\r"):
		return "must not contain backslashes or newlines"
	case path.Clean(p) != p:
		return fmt.Sprintf("is not a clean path; write %q", path.Clean(p))
	}
	return ""
}

// validServicePort checks "service:port", the target of a URL.
func validServicePort(s string) bool {
	name, port, ok := strings.Cut(s, ":")
	return ok && composeNameRE.MatchString(name) && validPort(port)
}

// validPort accepts a port number 1-65535 written plainly (no sign, no leading zero).
func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == s
}

// validReload checks pgoctl syntax: "host:name//exec SERVICE COMMAND...".
func validReload(s string) bool {
	_, _, _, err := parseReload(s)
	return err == nil
}

// mountProblem says what is wrong with an nfs://host/path URL, or "".
func mountProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme != "nfs" || u.Opaque != "":
		return `expected "nfs://host/path"`
	case u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "only a host and a path are allowed (no user, port, query or fragment)"
	case !hostNameRE.MatchString(u.Hostname()):
		return "has no valid host name"
	case !strings.HasPrefix(u.Path, "/") || path.Clean(u.Path) != u.Path || strings.ContainsAny(u.Path, ", \t\n"):
		return "needs a clean absolute path"
	}
	return ""
}

// unknownKey describes a key pgo does not know, with the closest known key when there is a plausible one.
func unknownKey(key string, line int, known []string) string {
	msg := fmt.Sprintf("unknown key %q at line %d", key, line)
	if guess := closestKey(key, known); guess != "" {
		msg += fmt.Sprintf("; did you mean %q?", guess)
	}
	return msg
}

// closestKey returns the known key the user most likely meant, or "": one a
// few edits away, or one that the key abbreviates or extends ("repo", "url").
func closestKey(key string, known []string) string {
	k := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	best, bestScore, bestDist := "", 1<<30, 1<<30
	for _, cand := range known {
		dist := editDistance(k, cand)
		score := dist
		if len(k) >= 3 && (strings.HasPrefix(cand, k) || strings.HasPrefix(k, cand) || strings.Contains(cand, k)) {
			score = min(score, 1)
		}
		if score <= max(1, len(cand)/3) && (score < bestScore || score == bestScore && dist < bestDist) {
			best, bestScore, bestDist = cand, score, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours each cost 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
