package main

// Config is a parsed and validated pgo.toml.
type Config struct {
	Path     string     // file it was read from, for error messages
	Services []*Service // in file order
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

	Line int // line of the [[services]] header in the config file
}

// loadConfig reads, parses and validates a pgo.toml.
func loadConfig(path string) (*Config, error) {
	panic("loadConfig: not implemented yet")
}
