package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

const daemonUsage = `Usage: pgod [flags]   (or: pgo daemon [flags])

Runs every service of the config: clones its repository, checks its compose
project against the policy, deploys it with "docker compose up" as its user and
keeps tracking its branch. Runs as root.

Flags:
    -c, --config FILE      config file (default /etc/pgo.toml)
        --config-repo URL  follow pgo.toml from this git repository instead of
                           --config: each new commit of --config-branch
                           (default main) is checked as a reload, then applied;
                           a URL with a token goes in $PGOD_CONFIG_REPO instead
        --config-file PATH the config's path in that repository (default pgo.toml)
        --config-interval D how often to ask it for a new commit (default 1m)
        --config-signers FILE
                           apply only config commits signed (git's
                           gpg.format=ssh) by a key in FILE, authorized_keys
                           lines
        --name NAME        this host's name in services' hosts lists
                           (default the machine's host name)
    -d, --dir DIR          checkouts and state (default /var/lib/pgo)
        --datadir DIR      per-service data directories (default /data)
    -s, --ssh ADDR         SSH control plane address (default :2222)
    -m, --metrics ADDR     /metrics and /healthz address (default 127.0.0.1:9112);
                           metrics name every service, branch and commit
        --webhooks ADDR    /hook/NAME address, the one the forge reaches, such
                           as :9113 (default: none, webhooks are off); the same
                           ADDR as --metrics serves all three on one listener
    -t, --duration D       poll interval per service (default 5m)
        --max-parallel N   compose pulls and ups at once across services (default 4)
        --hostkey FILE     SSH host key (default <dir>/.pgo/ssh_host_ed25519_key)
        --docker PATH      docker binary (default docker)
        --docker-socket P  the engine's API socket, read (never written) for
                           containers, images and events, so idle polls start
                           no docker process (default /var/run/docker.sock;
                           "" asks the docker binary instead)
        --mount-cmd PATH   mount binary for NFS shares (default mount)
        --operators DIR    operator keys, *.pub, that drive every service and
                           may run *//status (default /etc/pgo/operators)
        --debug            log the commands run, secrets redacted
    -v, --version          print the version and exit
    -h, --help             print this text
`

// daemonFlags are pgod's settings, the only configuration besides pgo.toml.
type daemonFlags struct {
	config, dir, datadir string
	name                 string // this host, as services' hosts lists name it
	configRepo           string // git URL pgod follows its config from; "" reads config
	configBranch         string
	configFile           string        // the config's path inside configRepo
	configInterval       time.Duration // how often configRepo is asked for a new commit
	configSigners        string        // authorized_keys file of the keys that may sign its commits; "" for none
	sshAddr, metricsAddr string
	webhooksAddr         string
	hostKey, docker      string
	dockerSocket         string // the engine's API, read for containers, images and events; "" to ask docker
	mountCmd             string
	operators            string // directory of operator keys
	duration             time.Duration
	maxParallel          int
	debug, version       bool
}

// parseDaemonFlags parses args; it returns a non-negative exit code when pgod
// should stop right away (help, version, a bad flag).
func parseDaemonFlags(args []string, stdout, stderr io.Writer) (*daemonFlags, int) {
	f := &daemonFlags{}
	fs := flag.NewFlagSet("pgod", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	both := func(p *string, short, long, def string) {
		fs.StringVar(p, short, def, "")
		fs.StringVar(p, long, def, "")
	}
	both(&f.config, "c", "config", "/etc/pgo.toml")
	fs.StringVar(&f.configRepo, "config-repo", "", "")
	fs.StringVar(&f.configBranch, "config-branch", "main", "")
	fs.StringVar(&f.configFile, "config-file", "pgo.toml", "")
	fs.DurationVar(&f.configInterval, "config-interval", time.Minute, "")
	fs.StringVar(&f.configSigners, "config-signers", "", "")
	fs.StringVar(&f.name, "name", "", "")
	both(&f.dir, "d", "dir", "/var/lib/pgo")
	both(&f.sshAddr, "s", "ssh", ":2222")
	both(&f.metricsAddr, "m", "metrics", "127.0.0.1:9112")
	fs.StringVar(&f.webhooksAddr, "webhooks", "", "")
	fs.StringVar(&f.datadir, "datadir", "/data", "")
	fs.StringVar(&f.hostKey, "hostkey", "", "")
	fs.StringVar(&f.docker, "docker", "docker", "")
	fs.StringVar(&f.dockerSocket, "docker-socket", "/var/run/docker.sock", "")
	fs.StringVar(&f.mountCmd, "mount-cmd", "mount", "")
	fs.StringVar(&f.operators, "operators", defaultOperatorsDir, "")
	fs.DurationVar(&f.duration, "t", 5*time.Minute, "")
	fs.DurationVar(&f.duration, "duration", 5*time.Minute, "")
	fs.IntVar(&f.maxParallel, "max-parallel", 4, "")
	fs.BoolVar(&f.debug, "debug", false, "")
	fs.BoolVar(&f.version, "v", false, "")
	fs.BoolVar(&f.version, "version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, daemonUsage)
			return nil, 0
		}
		fmt.Fprintf(stderr, "pgod: %v%s\n%s", err, durationHint(err), daemonUsage)
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgod: unexpected argument %q\n%s", fs.Arg(0), daemonUsage)
		return nil, 2
	}
	if f.version {
		fmt.Fprintf(stdout, "pgo %s\n", version)
		return nil, 0
	}
	switch {
	case f.duration < time.Second:
		fmt.Fprintf(stderr, "pgod: --duration %s is too short, at least 1s\n", f.duration)
		return nil, 2
	case f.maxParallel < 1:
		fmt.Fprintf(stderr, "pgod: --max-parallel must be at least 1\n")
		return nil, 2
	}
	if f.configRepo == "" {
		f.configRepo = os.Getenv(configRepoEnv)
	} else if _, cred := splitCredentials(f.configRepo); cred != nil {
		fmt.Fprintf(stderr, "pgod: --config-repo holds credentials, and every local user can read pgod's command line; give the URL in the environment instead, as %s (systemctl edit pgod: EnvironmentFile= naming a file only root reads)\n", configRepoEnv)
		return nil, 2
	}
	if msg := configRepoProblem(f); msg != "" {
		fmt.Fprintf(stderr, "pgod: %s\n", msg)
		return nil, 2
	}
	if f.name == "" {
		host, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "pgod: cannot read the host name (%v); give it with --name\n", err)
			return nil, 2
		}
		f.name = host
	}
	f.dir = filepath.Clean(f.dir)
	f.datadir = filepath.Clean(f.datadir)
	f.operators = filepath.Clean(f.operators)
	if f.hostKey == "" {
		f.hostKey = filepath.Join(f.dir, ".pgo", "ssh_host_ed25519_key")
	}
	return f, -1
}

// configRepoEnv holds the config repository's URL when --config-repo is not
// given: a URL with a token belongs where only root can read it.
const configRepoEnv = "PGOD_CONFIG_REPO"

// configRepoProblem says what is wrong with the --config-* flags, or "".
func configRepoProblem(f *daemonFlags) string {
	switch {
	case f.configRepo == "" && f.configSigners != "":
		return "--config-signers is for --config-repo: give the repository too"
	case f.configRepo == "":
		return ""
	case repositoryProblem(f.configRepo) != "":
		return "--config-repo " + repositoryProblem(f.configRepo)
	case !validBranch(f.configBranch):
		return fmt.Sprintf("--config-branch %q is not a valid git branch name", f.configBranch)
	case relPathProblem(f.configFile) != "":
		return fmt.Sprintf("--config-file %q %s", f.configFile, relPathProblem(f.configFile))
	case f.configInterval < time.Second:
		return fmt.Sprintf("--config-interval %s is too short, at least 1s", f.configInterval)
	case f.configSigners != "" && !filepath.IsAbs(f.configSigners):
		return fmt.Sprintf("--config-signers %q: give an absolute path", f.configSigners)
	}
	return ""
}

// durationHint adds to a flag error about a duration without a unit
// ("-t 5") what the flag package leaves out: which unit to give.
func durationHint(err error) string {
	msg := err.Error()
	_, value, ok := strings.Cut(msg, "invalid value \"")
	if !ok || !strings.Contains(msg, "for flag -t:") && !strings.Contains(msg, "for flag -duration:") {
		return ""
	}
	value, _, _ = strings.Cut(value, "\"")
	if _, perr := strconv.Atoi(value); perr != nil {
		return "; a duration is a number with a unit, such as 30s, 5m or 1h"
	}
	return fmt.Sprintf("; %q needs a unit: %ss, %sm or %sh", value, value, value, value)
}

// Daemon is pgod: the workers of all services and the listeners around them.
type Daemon struct {
	flags   *daemonFlags
	log     *slog.Logger
	metrics *metrics
	health  *health
	slots   chan struct{} // bounds compose pulls and ups across services

	// engine reads the engine's state over its socket, and view keeps the
	// containers' picture by its events; both nil when pgod asks docker
	// instead (--docker-socket "", or nothing answers there at start).
	engine *engineAPI
	view   *containerView

	mu      sync.Mutex // guards cfg, workers and locks
	cfg     *Config
	workers map[string]*worker
	locks   map[string]*serviceLock // by service name, kept across reloads

	stopping context.Context // done once pgod is stopping; nil in tests that never start it
	caddy    *trigger        // asks the Caddy loop to write the snippets and reload
	notifier *notifier       // tells people what happened (notify.go)
	audit    *auditTrail     // config reloads, for the journal and the metrics

	operators operatorKeys // read at start and on every reload

	// configs is where the config comes from when pgod follows a
	// repository (--config-repo); nil when it reads --config.
	configs       *configRepo
	configCommit  atomic.Pointer[string] // the config repository's commit that runs
	configRefused string                 // its last commit that did not pass; only the main loop uses it
	configFetch   string                 // the last error reaching the repository, said once; main loop only
}

// runDaemon is pgod's main.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	flags, code := parseDaemonFlags(args, stdout, stderr)
	if code >= 0 {
		return code
	}
	d := &Daemon{
		flags:   flags,
		log:     newLogger(stderr, flags.debug),
		health:  newHealth(),
		slots:   make(chan struct{}, flags.maxParallel),
		workers: map[string]*worker{},
		locks:   map[string]*serviceLock{},
		caddy:   newTrigger(),
	}
	d.metrics = newMetrics(d.statuses)
	d.notifier = newNotifier(d.log, d.metrics)
	d.audit = newAuditTrail(d.log, d.metrics)
	// pgod's heap is small and steady; collecting at half the default growth
	// keeps its resident size down on a host with hundreds of services.
	debug.SetGCPercent(50)
	if err := d.start(); err != nil {
		fmt.Fprintf(stderr, "pgod: %v\n", err)
		return 1
	}
	return 0
}

// start checks that pgod can do its job, then runs until SIGTERM or SIGINT.
func (d *Daemon) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.stopping = ctx
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it runs each service as its own user")
	}
	if d.flags.dir == "/" {
		return errors.New("--dir is /; give it a directory of its own, such as /var/lib/pgo")
	}
	if d.flags.configRepo != "" {
		configs, err := newConfigRepo(d.flags.configRepo, d.flags.configBranch, d.flags.configFile, d.flags.configSigners, d.flags.dir, d.log,
			func(cmd string, err error) { d.metrics.command("", cmd, err) })
		if err != nil {
			return err
		}
		d.configs = configs
	}
	vctx, vcancel := context.WithTimeout(ctx, commandTimeout)
	v, err := composeVersion(vctx, d.flags.docker)
	vcancel()
	if err != nil {
		return err
	}
	for _, dir := range []string{d.flags.dir, d.flags.datadir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(d.flags.dir, ".pgo"), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(d.flags.dir, ".pgo"), 0o700); err != nil {
		return err
	}
	// The config repository is cloned under <dir>/.pgo.
	cfg, accounts, err := d.firstConfig(ctx)
	if err != nil {
		return err
	}
	d.watchEngine(ctx)
	if err := mountPinsDir(pinsDir(d.flags.dir)); err != nil {
		return err
	}
	hostKey, err := loadOrCreateHostKey(d.flags.hostKey)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	sshLn, err := net.Listen("tcp", d.flags.sshAddr)
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	listeners, err := d.listenHTTP()
	if err != nil {
		return err
	}
	d.log.Info(fmt.Sprintf("pgod %s starting as host %s: compose %s, %s, ssh on %s, %s",
		version, d.flags.name, v, describeServices(cfg), sshLn.Addr(), describeListeners(listeners)))
	d.warnWebhooksOff(cfg)

	d.loadOperators()
	srv := newSSHServer(d, hostKey, d.log, d.metrics)
	var listenerDied atomic.Bool
	go func() {
		if err := srv.serve(ctx, sshLn); err != nil && ctx.Err() == nil {
			d.log.Error("ssh server stopped: " + err.Error())
			listenerDied.Store(true)
			cancel()
		}
	}()
	for _, l := range listeners {
		httpSrv := &http.Server{
			Handler:           l.handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			MaxHeaderBytes:    64 << 10,
		}
		go func() {
			// A listener that dies takes what it serves with it: pgod
			// stops and says why, and systemd starts it again. The
			// services' containers keep running meanwhile.
			if err := httpSrv.Serve(l.ln); !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
				d.log.Error(l.serves + " listener stopped: " + err.Error())
				listenerDied.Store(true)
			}
			cancel()
		}()
		defer httpSrv.Close()
	}
	go d.caddyLoop(ctx)

	d.removeStale(ctx, cfg)
	d.apply(ctx, cfg, accounts)
	go d.reportStart(ctx, d.allWorkers())
	d.loop(ctx)
	cancel() // pgod is stopping: workers and listeners see it at once (isStopping)
	d.stopAll()
	nctx, ncancel := context.WithTimeout(context.Background(), 5*time.Second)
	d.notifier.close(nctx) // what is queued goes out, for a few seconds at most
	ncancel()
	if listenerDied.Load() {
		return errors.New("a listener stopped (see the log above); containers keep running")
	}
	d.log.Info("pgod stopped; containers keep running")
	return nil
}

// watchEngine starts reading the engine over its socket, or says why pgod
// asks docker instead.
func (d *Daemon) watchEngine(ctx context.Context) {
	if d.flags.dockerSocket == "" {
		return
	}
	api := newEngineAPI(d.flags.dockerSocket)
	pctx, cancel := context.WithTimeout(ctx, commandTimeout)
	err := api.ping(pctx)
	cancel()
	if err != nil {
		d.log.Warn(fmt.Sprintf("the engine does not answer on %s (%v): asking docker at every look instead; set --docker-socket to the engine's socket", d.flags.dockerSocket, err))
		return
	}
	d.engine = api
	d.view = newContainerView(api, d.log, d.containerRemoved)
	go d.view.run(ctx)
}

// containerRemoved has the service of project repair it now: one of its
// containers was removed.
func (d *Daemon) containerRemoved(project string) {
	if w := d.worker(project); w != nil {
		w.removed.fireFor("drift")
	}
}

// loop waits for signals and config changes.
func (d *Daemon) loop(ctx context.Context) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	every := 2 * time.Second // a look at the file's stamp
	if d.configs != nil {
		every = d.flags.configInterval
	}
	watch := time.NewTicker(every)
	defer watch.Stop()
	seen := fileStamp(d.flags.config)
	for {
		d.health.beat("main", 30*time.Second)
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				d.log.Info("received " + sig.String() + ", stopping")
				return
			}
			if d.configs != nil {
				d.log.Info("received SIGHUP, fetching " + d.configs.describe())
				d.followConfig(ctx, true)
				continue
			}
			d.log.Info("received SIGHUP, reloading " + d.flags.config)
			d.reload(ctx)
			seen = fileStamp(d.flags.config)
		case <-watch.C:
			if d.configs != nil {
				d.followConfig(ctx, false)
			} else if now := fileStamp(d.flags.config); now != seen {
				seen = now
				d.log.Info(d.flags.config + " changed, reloading")
				d.reload(ctx)
			}
		}
	}
}

// fileStamp identifies a file's version well enough to notice an edit.
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
}

// reload reads the operator keys and the config again; an invalid config
// leaves everything running as it is.
func (d *Daemon) reload(ctx context.Context) {
	d.loadOperators()
	cfg, err := loadConfig(d.flags.config)
	if err == nil {
		var accounts map[string]*account
		if accounts, err = d.hostConfig(cfg); err == nil {
			changes := d.changes(cfg)
			d.apply(ctx, cfg, accounts)
			d.audit.reload(changes)
			d.warnWebhooksOff(cfg)
			return
		}
	}
	d.log.Error("config not reloaded, the running one stays: " + err.Error())
	d.audit.reload(reloadResult{err: err})
}

// firstConfig is the config pgod starts with and the accounts of this
// host's services: --config, or the head of the config repository when it
// passes, else the last good config an earlier run kept.
func (d *Daemon) firstConfig(ctx context.Context) (*Config, map[string]*account, error) {
	if d.configs == nil {
		cfg, err := loadConfig(d.flags.config)
		if err != nil {
			return nil, nil, err
		}
		accounts, err := d.hostConfig(cfg)
		d.runsConfig("")
		return cfg, accounts, err
	}
	fctx, cancel := context.WithTimeout(ctx, commandTimeout)
	cfg, accounts, commit, err := d.fetchConfig(fctx)
	cancel()
	if err == nil {
		if err := d.configs.keep(commit, cfg.data); err != nil {
			return nil, nil, err
		}
		d.runsConfig(commit)
		return cfg, accounts, nil
	}
	data, saved, serr := d.configs.saved()
	if serr != nil {
		return nil, nil, fmt.Errorf("%w; and %w", err, serr)
	}
	d.log.Warn(fmt.Sprintf("%v; starting from the last good config, commit %s", err, short(saved)))
	if commit != "" {
		d.configRefused = commit
	}
	if cfg, accounts, err = d.checkRepoConfig(saved, data); err != nil {
		return nil, nil, err
	}
	d.runsConfig(saved)
	return cfg, accounts, nil
}

// hostConfig keeps of cfg what this host runs and looks up the accounts of
// those services' users.
func (d *Daemon) hostConfig(cfg *Config) (map[string]*account, error) {
	cfg.keepHost(d.flags.name)
	return d.accounts(cfg)
}

// fetchConfig asks the config repository for its head and checks the
// config it holds as a reload does. It returns nil and no error when the
// head is one of skip. On an error, commit is the head whose config did not
// pass, or "" when the repository could not be read.
func (d *Daemon) fetchConfig(ctx context.Context, skip ...string) (cfg *Config, accounts map[string]*account, commit string, err error) {
	head, err := d.configs.head(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	if slices.Contains(skip, head) {
		return nil, nil, "", nil
	}
	data, err := d.configs.read(ctx, head)
	if err != nil {
		return nil, nil, "", err
	}
	if err := d.configs.verify(ctx, head); err != nil {
		return nil, nil, head, err
	}
	if cfg, accounts, err = d.checkRepoConfig(head, data); err != nil {
		return nil, nil, head, err
	}
	return cfg, accounts, head, nil
}

// checkRepoConfig parses and checks data, the config commit holds, as a
// reload does, and keeps what this host runs.
func (d *Daemon) checkRepoConfig(commit string, data []byte) (*Config, map[string]*account, error) {
	cfg, err := parseConfig(d.configs.label(commit), data)
	if err != nil {
		return nil, nil, err
	}
	accounts, err := d.hostConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	cfg.data = data
	return cfg, accounts, nil
}

// followConfig applies the config repository's head when it is new and
// passes; a head that did not pass is not judged again until it moves, or
// until force (SIGHUP) asks. What runs stays on any failure.
func (d *Daemon) followConfig(ctx context.Context, force bool) {
	var skip []string
	if force {
		d.loadOperators() // as a reload of a file does
	} else {
		skip = []string{d.runningConfig(), d.configRefused}
	}
	fctx, cancel := context.WithTimeout(ctx, commandTimeout)
	cfg, accounts, commit, err := d.fetchConfig(fctx, skip...)
	cancel()
	switch {
	case err != nil && commit == "":
		// Said once, not at every poll of a repository that is down.
		if msg := err.Error(); msg != d.configFetch {
			d.configFetch = msg
			d.log.Warn(msg + "; the running config stays and pgod asks again in " + d.flags.configInterval.String())
		}
		return
	case err != nil:
		d.configFetch = ""
		d.configRefused = commit
		d.log.Error(fmt.Sprintf("config commit %s not applied, the running one stays: %v", short(commit), err))
		d.audit.reload(reloadResult{err: err})
		return
	case cfg == nil:
		d.configFetch = ""
		return
	}
	d.configFetch = ""
	if err := d.configs.keep(commit, cfg.data); err != nil {
		d.log.Error("config commit " + short(commit) + " not applied, the running one stays: " + err.Error())
		return
	}
	if !force {
		d.loadOperators()
	}
	changes := d.changes(cfg)
	d.apply(ctx, cfg, accounts)
	d.runsConfig(commit)
	d.log.Info("config commit " + short(commit) + " applied")
	d.audit.reload(changes)
	d.warnWebhooksOff(cfg)
}

// runsConfig records the config repository's commit that runs, for the
// status and the metrics.
func (d *Daemon) runsConfig(commit string) {
	d.configCommit.Store(&commit)
	d.metrics.runsConfig(d.flags.name, commit)
}

// runningConfig is the config repository's commit that runs; "" when pgod
// reads --config.
func (d *Daemon) runningConfig() string {
	if c := d.configCommit.Load(); c != nil {
		return *c
	}
	return ""
}

// describeServices says how many services this host runs of the config's.
func describeServices(cfg *Config) string {
	if len(cfg.Elsewhere) == 0 {
		return fmt.Sprintf("%d services", len(cfg.Services))
	}
	return fmt.Sprintf("%d of the config's %d services (the others' hosts lists name other hosts)",
		len(cfg.Services), len(cfg.Services)+len(cfg.Elsewhere))
}

// changes counts the services cfg adds, removes and changes against the running config.
func (d *Daemon) changes(cfg *Config) reloadResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	var r reloadResult
	running := map[string]*Service{}
	if d.cfg != nil {
		for _, s := range d.cfg.Services {
			running[s.Name] = s
		}
	}
	for _, s := range cfg.Services {
		old, ok := running[s.Name]
		switch {
		case !ok:
			r.added++
		case !sameService(old, s):
			r.changed++
		}
		delete(running, s.Name)
	}
	r.removed = len(running)
	return r
}

// accounts looks up every service's user; pgod refuses a config naming a user that does not exist.
func (d *Daemon) accounts(cfg *Config) (map[string]*account, error) {
	accounts := map[string]*account{}
	for _, s := range cfg.Services {
		if accounts[s.User] != nil {
			continue
		}
		a, err := lookupAccount(s.User)
		if err != nil {
			return nil, accountError(cfg, s, err)
		}
		if err := d.ensureHome(a); err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		accounts[s.User] = a
	}
	return accounts, nil
}

// accountError says that s's user cannot be used, where the config names
// it, and, for a user that does not exist, how to create one.
func accountError(cfg *Config, s *Service, err error) error {
	msg := err.Error()
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		msg = fmt.Sprintf("user %s does not exist on this host; create it with: adduser --system --group %s", s.User, s.User)
	}
	return &configError{Path: cfg.Path, Line: s.Line, Service: fmt.Sprintf("service %q", s.Name), Msg: msg}
}

// ensureHome gives an account without a usable home one under <dir>/.home,
// where docker keeps its config and registry logins. A home inside a data
// directory or a checkout is refused: a container or a commit could plant
// ~/.docker/cli-plugins/docker-compose there, and pgod runs it with the
// docker group.
func (d *Daemon) ensureHome(a *account) error {
	if err := d.homeOutOfReach(a); err != nil {
		return err
	}
	if fi, err := os.Stat(a.Home); err == nil && fi.IsDir() {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid == a.UID || a.root()) {
			return nil
		}
	}
	homes := filepath.Join(d.flags.dir, ".home")
	if err := os.MkdirAll(homes, 0o755); err != nil {
		return err
	}
	a.Home = filepath.Join(homes, a.Name)
	if err := os.MkdirAll(a.Home, 0o700); err != nil {
		return err
	}
	return os.Chown(a.Home, int(a.UID), int(a.GID))
}

// homeOutOfReach refuses a home that lies where teams write: under --datadir,
// or under --dir other than pgod's own <dir>/.home.
func (d *Daemon) homeOutOfReach(a *account) error {
	home, err := resolveHostPath(filepath.Clean(a.Home))
	if err != nil || a.Home == "" || !filepath.IsAbs(a.Home) {
		return nil // no usable home: pgod makes one under <dir>/.home
	}
	for _, dir := range []string{d.flags.datadir, d.flags.dir} {
		root, err := resolveHostPath(dir)
		if err != nil {
			continue
		}
		if pathWithin(home, root) && !pathWithin(home, filepath.Join(root, ".home")) {
			return fmt.Errorf("user %s: home %s is inside %s, where services' containers or commits write; give the user a home elsewhere (or none: pgod then uses %s)",
				a.Name, a.Home, dir, filepath.Join(d.flags.dir, ".home", a.Name))
		}
	}
	return nil
}

// startReportWait bounds how long pgod waits for the first syncs before it
// reports a start with errors.
const startReportWait = 10 * time.Minute

// reportStart sends one started_with_errors notification naming the
// services of workers that could not prepare (clone, NFS mount) at their
// first sync: a host that rebooted into a broken state says so.
func (d *Daemon) reportStart(ctx context.Context, workers []*worker) {
	if failed := d.startErrors(ctx, workers, startReportWait); len(failed) > 0 {
		d.notifier.notify(event{Kind: eventStartedWithErrors, Reason: strings.Join(failed, "; ")})
	}
}

// startErrors waits up to wait for the first sync of each of workers and
// says, sorted, which could not prepare and why; nil when pgod is stopping.
func (d *Daemon) startErrors(ctx context.Context, workers []*worker, wait time.Duration) []string {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var failed []string
	for _, w := range workers {
		select {
		case <-ctx.Done():
			if d.isStopping() {
				return nil
			}
			failed = append(failed, fmt.Sprintf("service %q: no first sync within %s", w.svc.Name, wait))
			continue
		case <-w.firstSync:
		}
		if w.startErr != "" {
			failed = append(failed, fmt.Sprintf("service %q: %s", w.svc.Name, redact(w.startErr, w.svc.secrets())))
		}
	}
	slices.Sort(failed)
	return failed
}

// apply starts, stops or re-tracks workers so that they match cfg. A service
// whose settings did not change keeps its worker untouched.
func (d *Daemon) apply(ctx context.Context, cfg *Config, accounts map[string]*account) {
	d.notifier.reload(cfg)
	d.mu.Lock()
	old := d.workers
	d.cfg = cfg
	d.workers = map[string]*worker{}
	var start []*worker
	for _, s := range cfg.Services {
		if w, ok := old[s.Name]; ok && sameService(w.svc, s) {
			d.workers[s.Name] = w
			delete(old, s.Name)
			continue
		}
		lock := d.locks[s.Name]
		if lock == nil {
			lock = newServiceLock()
			d.locks[s.Name] = lock
		}
		w := newWorker(d, s, accounts[s.User], lock)
		d.workers[s.Name] = w
		start = append(start, w)
	}
	d.mu.Unlock()

	for name, w := range old {
		w.stop()
		if _, still := d.workers[name]; still {
			d.log.Info("[" + name + "] config changed, tracking again")
			continue
		}
		if elsewhere := slices.IndexFunc(cfg.Elsewhere, func(s *Service) bool { return s.Name == name }); elsewhere >= 0 {
			d.log.Info(fmt.Sprintf("[%s] its hosts are now %s, not this one (%s); bringing it down",
				name, strings.Join(cfg.Elsewhere[elsewhere].Hosts, ", "), d.flags.name))
		} else {
			d.log.Info("[" + name + "] removed from the config, bringing it down")
		}
		d.health.forget("worker/" + name)
		// Off the main loop: the service's lock may be held by an SSH op of
		// the old worker, and signals must still be answered meanwhile.
		go d.lockFor(name).hold(ctx, "removal", func() error {
			d.remove(ctx, cfg, name, w.svc.Mount != "")
			return nil
		})
	}
	for _, w := range start {
		if err := w.restore(); err != nil {
			w.log.Error("cannot restore state: " + err.Error())
		}
		wctx, cancel := context.WithCancel(ctx)
		w.cancel = cancel
		go w.run(wctx)
	}
	d.caddy.fire()
}

// otherServices names the configured services other than name: the
// namespaces on the engine that name's project may not claim.
func (d *Daemon) otherServices(name string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var others []string
	if d.cfg != nil {
		// Those of other hosts too: a service may move here, and hosts
		// may share an engine.
		for _, s := range slices.Concat(d.cfg.Services, d.cfg.Elsewhere) {
			if s.Name != name {
				others = append(others, s.Name)
			}
		}
	}
	return others
}

// isStopping reports whether pgod is on its way out (SIGTERM, a dead listener).
func (d *Daemon) isStopping() bool { return d.stopping != nil && d.stopping.Err() != nil }

// lockFor returns the lock of the service called name, made on first use.
func (d *Daemon) lockFor(name string) *serviceLock {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.locks[name] == nil {
		d.locks[name] = newServiceLock()
	}
	return d.locks[name]
}

// sameService compares two configs of one service, ignoring where they
// stood in the file and which other hosts run it too.
func sameService(a, b *Service) bool {
	x, y := *a, *b
	x.Line, y.Line = 0, 0
	x.Hosts, y.Hosts = nil, nil
	return reflect.DeepEqual(x, y)
}

// stop ends the worker's loop and waits for its running operation to finish.
func (w *worker) stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
}

func (d *Daemon) stopAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.workers {
		w.stop()
	}
}

// removeStale brings down services that have a checkout under --dir but are
// no longer in the config. Their data directories stay.
func (d *Daemon) removeStale(ctx context.Context, cfg *Config) {
	known := map[string]bool{}
	for _, s := range cfg.Services {
		known[s.Name] = true
	}
	entries, _ := os.ReadDir(d.flags.dir)
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || known[name] || strings.HasPrefix(name, ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.flags.dir, name, ".git")); err != nil {
			continue
		}
		d.log.Info("[" + name + "] not in the config any more, bringing it down")
		d.remove(ctx, cfg, name, true)
	}
}

// remove brings a service's project down as root (its user may be gone too)
// and deletes its checkout and state; the data directory is kept. It says
// what it removed. The caller holds the service's lock; cfg is the config
// that no longer runs the service here.
func (d *Daemon) remove(ctx context.Context, cfg *Config, name string, unmountData bool) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	state := statePaths{filepath.Join(d.flags.dir, ".pgo", name)}
	d.removeStack(ctx, cfg, name)
	args := []string{"compose", "-p", name}
	project, _ := readOptional(state.deployed())
	if project != nil {
		args = append(args, "-f", "-")
	}
	args = append(args, "down", "--remove-orphans")
	var a *account
	cmd := a.command(ctx, a.baseEnv(), d.flags.docker, args...)
	if project != nil {
		cmd.Stdin = strings.NewReader(string(project))
	}
	out := newTail(maxTail)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		d.log.Error(fmt.Sprintf("[%s] compose down: %v: %s", name, err, lastLines(strings.TrimSpace(out.String()), 3)))
		return
	}
	containers, networks := composeRemoved(out.String())
	networks = append(networks, d.removeNetworks(ctx, name)...)
	if unmountData {
		if err := unmount(ctx, "umount", filepath.Join(d.flags.datadir, name)); err != nil {
			d.log.Warn(fmt.Sprintf("[%s] unmount: %v", name, err))
		}
	}
	if err := unpinAll(filepath.Join(pinsDir(d.flags.dir), name)); err != nil {
		d.log.Error(fmt.Sprintf("[%s] bind pins: %v", name, err))
	}
	for _, p := range []string{filepath.Join(d.flags.dir, name), state.dir, filepath.Join(d.flags.dir, name+".stop"),
		filepath.Join(d.flags.dir, ".gitconfig", name)} {
		if err := os.RemoveAll(p); err != nil {
			d.log.Error(fmt.Sprintf("[%s] %v", name, err))
		}
	}
	d.log.Info(fmt.Sprintf("[%s] removed: %s; its data directory stays", name, describeRemoved(containers, networks)))
}

// composeRemoved reads from compose down's progress lines
// (" Container web-1  Removed") the containers and networks it removed.
func composeRemoved(out string) (containers, networks []string) {
	// A map rather than a switch: comparing with the constants compiles to
	// 8-byte pieces like "Containe", which lintian takes for a misspelling.
	kinds := map[string]*[]string{"Container": &containers, "Network": &networks}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "Removed" {
			continue
		}
		if names := kinds[f[0]]; names != nil {
			*names = append(*names, f[1])
		}
	}
	return containers, networks
}

// removeNetworks removes the networks compose down left: down removes only
// the networks the project file it is given declares, so one an earlier
// commit declared, or one of a deploy that failed, would stay for good.
// They carry the project's label, which only this service's project can
// have. It returns the names it removed.
func (d *Daemon) removeNetworks(ctx context.Context, name string) []string {
	var a *account // root: the service's user may be gone
	ls := a.engineCommand(ctx, a.baseEnv(), d.flags.docker, "network", "ls", "--filter", "label=com.docker.compose.project="+name, "--format", "{{.Name}}")
	errOut := newTail(maxTail)
	ls.Stderr = errOut
	list, err := ls.Output()
	if err != nil {
		d.log.Warn(fmt.Sprintf("[%s] listing its networks: %v: %s", name, err, lastLines(strings.TrimSpace(errOut.String()), 3)))
		return nil
	}
	var removed []string
	for _, network := range strings.Fields(string(list)) {
		rm := a.engineCommand(ctx, a.baseEnv(), d.flags.docker, "network", "rm", network)
		if out, err := rm.CombinedOutput(); err != nil {
			d.log.Warn(fmt.Sprintf("[%s] network %s stays: %v: %s", name, network, err, lastLines(strings.TrimSpace(string(out)), 3)))
			continue
		}
		removed = append(removed, network)
	}
	return removed
}

// describeRemoved says what remove removed: "1 container (shop-web-1), 2 networks (shop_default, shop_old)".
func describeRemoved(containers, networks []string) string {
	if len(containers) == 0 && len(networks) == 0 {
		return "no containers or networks were left"
	}
	var parts []string
	for _, g := range []struct {
		noun  string
		names []string
	}{{"container", containers}, {"network", networks}} {
		switch len(g.names) {
		case 0:
		case 1:
			parts = append(parts, fmt.Sprintf("1 %s (%s)", g.noun, g.names[0]))
		default:
			parts = append(parts, fmt.Sprintf("%d %ss (%s)", len(g.names), g.noun, strings.Join(g.names, ", ")))
		}
	}
	return strings.Join(parts, ", ")
}

// httpListener is one HTTP listener and what it serves.
type httpListener struct {
	ln      net.Listener
	serves  string // "metrics and health", "webhooks", or both, for messages
	handler http.Handler
}

// listenHTTP opens the metrics listener and, when --webhooks is set, the
// webhook one: metrics name every service, branch and commit, so they stay
// on loopback by default, while webhooks face the forge. One address given
// to both serves both on one listener.
func (d *Daemon) listenHTTP() ([]httpListener, error) {
	m, h := d.flags.metricsAddr, d.flags.webhooksAddr
	if h == m {
		ln, err := net.Listen("tcp", m)
		if err != nil {
			return nil, fmt.Errorf("metrics and webhooks: %w", err)
		}
		return []httpListener{{ln, "metrics, health and webhooks", d.httpHandler(true, true)}}, nil
	}
	ln, err := net.Listen("tcp", m)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	listeners := []httpListener{{ln, "metrics and health", d.httpHandler(true, false)}}
	if h != "" {
		hl, err := net.Listen("tcp", h)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("webhooks: %w", err)
		}
		listeners = append(listeners, httpListener{hl, "webhooks", d.httpHandler(false, true)})
	}
	return listeners, nil
}

// describeListeners says where each listener is, for the start line.
func describeListeners(ls []httpListener) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, l.serves+" on "+l.ln.Addr().String())
	}
	if len(ls) == 1 && ls[0].serves == "metrics and health" {
		parts = append(parts, "webhooks off")
	}
	return strings.Join(parts, ", ")
}

// warnWebhooksOff says when services have a webhook secret that no
// listener serves: their pushes then wait for the next poll.
func (d *Daemon) warnWebhooksOff(cfg *Config) {
	if d.flags.webhooksAddr != "" {
		return
	}
	var names []string
	for _, s := range cfg.Services {
		if s.WebhookSecret != "" {
			names = append(names, s.Name)
		}
	}
	if len(names) > 0 {
		d.log.Warn(fmt.Sprintf("webhooks are off but %s set webhook_secret; start pgod with --webhooks ADDR (such as :9113) to serve /hook/NAME",
			strings.Join(names, ", ")))
	}
}

// httpHandler serves metrics and health, webhooks, or both.
func (d *Daemon) httpHandler(metrics, webhooks bool) http.Handler {
	mux := http.NewServeMux()
	if metrics {
		mux.Handle("/metrics", d.metrics)
		mux.Handle("/healthz", d.health)
	}
	if webhooks {
		hooks := webhookHandler(d.hookTarget)
		hooks.count = d.metrics.webhook
		hooks.log = d.log
		mux.Handle("/hook/", hooks)
	}
	return mux
}

func (d *Daemon) hookTarget(name string) (hookTarget, bool) {
	w := d.worker(name)
	if w == nil || w.svc.WebhookSecret == "" {
		return hookTarget{}, false
	}
	return hookTarget{Secret: w.svc.WebhookSecret, Branch: w.svc.Branch, Trigger: w.trigger.fire}, true
}

func (d *Daemon) worker(name string) *worker {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.workers[name]
}

// allWorkers copies the workers out of the lock, so that callers can ask each
// for its state without holding the daemon's lock meanwhile.
func (d *Daemon) allWorkers() []*worker {
	d.mu.Lock()
	defer d.mu.Unlock()
	ws := make([]*worker, 0, len(d.workers))
	for _, w := range d.workers {
		ws = append(ws, w)
	}
	return ws
}

// statuses snapshots every service, sorted by name, for metrics.
func (d *Daemon) statuses() []serviceStatus {
	ws := d.allWorkers()
	sort.Slice(ws, func(i, j int) bool { return ws[i].svc.Name < ws[j].svc.Name })
	out := make([]serviceStatus, len(ws))
	for i, w := range ws {
		out[i] = w.status()
	}
	return out
}

// lookup, knownKey, operator and statuses make the daemon the SSH server's controller.
func (d *Daemon) lookup(name string) serviceControl {
	if w := d.worker(name); w != nil {
		return w
	}
	return nil
}

func (d *Daemon) knownKey(key ssh.PublicKey, remote net.Addr) (string, bool) {
	if k := d.operators.authorized(key, remote); k != nil {
		return k.source, true
	}
	for _, w := range d.allWorkers() {
		if k := w.authorized(key, remote); k != nil {
			return w.svc.Name + " " + k.source, true
		}
	}
	return "", false
}

func (d *Daemon) operator(key ssh.PublicKey, remote net.Addr) *authorizedKey {
	return d.operators.authorized(key, remote)
}

// loadOperators reads the operator keys again and says what it skipped.
func (d *Daemon) loadOperators() {
	for _, p := range d.operators.load(d.flags.operators) {
		d.log.Warn(p)
	}
}
