package main

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is one running pgod.
type daemon struct {
	cmd     *exec.Cmd
	started time.Time
	dir     string // -d, its log is pgod.log beside it
	sshAddr string
	metrics string // host:port of the metrics listener (webhooks)
	pprof   string // host:port of net/http/pprof in a profiling build
	calls   *callLog
	exited  chan struct{}
}

// daemonSpec is what one pgod runs against.
type daemonSpec struct {
	fleet  *fleet
	root   string        // a directory of its own: -d, --datadir and pgod.log go in it
	docker string        // --docker
	extra  []string      // more flags: --docker-socket
	fake   bool          // the substitute docker: reset to "no containers", its log followed
	poll   time.Duration // -t
}

// substitute is the spec of a pgod on the substitute docker (and its Engine
// API socket, when pgod has the flag) in a new directory under the scratch one.
func (b *bench) substitute(f *fleet, run string) daemonSpec {
	s := daemonSpec{fleet: f, root: filepath.Join(b.o.work, run), docker: b.o.docker, fake: true, poll: b.o.interval}
	if b.socketFlag {
		s.extra = []string{"--docker-socket", b.fakeSocket}
	}
	return s
}

// startDaemon runs pgod on a fresh state directory.
func (b *bench) startDaemon(spec daemonSpec) (*daemon, error) {
	root := spec.root
	if spec.fake {
		if err := os.RemoveAll(filepath.Join(b.fakeDir, "state")); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{filepath.Join(root, "dir"), filepath.Join(root, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	d := &daemon{dir: filepath.Join(root, "dir"), sshAddr: freeAddr(), metrics: freeAddr(), exited: make(chan struct{})}
	if spec.fake {
		calls, err := openCallLog(filepath.Join(b.fakeDir, "docker.log"))
		if err != nil {
			return nil, err
		}
		d.calls = calls
	}
	args := []string{
		"-c", spec.fleet.config, "-d", d.dir, "--datadir", filepath.Join(root, "data"),
		"-s", d.sshAddr, "-m", d.metrics, "--webhooks", d.metrics, "-t", spec.poll.String(), "--docker", spec.docker,
	}
	if b.o.maxParallel > 0 {
		args = append(args, "--max-parallel", strconv.Itoa(b.o.maxParallel))
	}
	args = append(args, spec.extra...)
	logf, err := os.Create(filepath.Join(root, "pgod.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(b.pgod, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if b.o.profile {
		d.pprof = freeAddr()
		d.cmd.Env = append(os.Environ(), "PGO_BENCH_PPROF="+d.pprof)
	}
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		d.cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	b.onExit(d.stop)
	return d, nil
}

// freeAddr picks a loopback port nobody listens on now.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // loopback without a free port: nothing here can work
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop ends pgod with SIGTERM as systemd would, SIGKILL if it lingers, then
// unmounts what it left mounted below its directory: the tmpfs of bind pins
// outlives pgod on purpose (containers keep their sources across a restart),
// but not the bench.
func (d *daemon) stop() {
	if d.alive() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	unmountBelow(filepath.Dir(d.dir))
}

// unmountBelow detaches every mount at or below dir, deepest first.
func unmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// Field 5 is the mount point, with spaces and the like octal-escaped.
		if p := unescapeMountinfo(f[4]); p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			log.Printf("unmount %s: %v", p, err)
		}
	}
}

func unescapeMountinfo(s string) string {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// logTail is the end of pgod's log, for error messages.
func (d *daemon) logTail() string {
	data, _ := os.ReadFile(filepath.Join(filepath.Dir(d.dir), "pgod.log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// procStat is a snapshot of pgod's cost from /proc.
type procStat struct {
	self, children time.Duration // user+system CPU; children: reaped git and docker processes
	rss, hwm       int64         // bytes
	anon, file     int64         // bytes of rss: heap and stacks; the mapped binary and libraries
}

func (p procStat) cpu() time.Duration { return p.self + p.children }

// clockTick is USER_HZ, 100 on every Linux architecture Go supports here.
const clockTick = 10 * time.Millisecond

func (d *daemon) stat() (procStat, error) {
	var p procStat
	pid := d.cmd.Process.Pid
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// Fields after the command name, which may hold spaces: state is field 3,
	// utime 14, stime 15, cutime 16, cstime 17.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 15 {
		return p, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	tick := func(i int) time.Duration {
		n, _ := strconv.ParseInt(fields[i-3], 10, 64)
		return time.Duration(n) * clockTick
	}
	p.self = tick(14) + tick(15)
	p.children = tick(16) + tick(17)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			p.rss = kb << 10
		case "VmHWM":
			p.hwm = kb << 10
		case "RssAnon":
			p.anon = kb << 10
		case "RssFile":
			p.file = kb << 10
		}
	}
	return p, nil
}

// callLog follows the substitute docker's log: "<unix-nanos> <project> <args>".
type callLog struct {
	r       *bufio.Reader
	f       *os.File
	partial string
	ups     map[string][]time.Time // project -> times of its "compose up" calls
	subs    map[string]int         // compose subcommand -> calls
}

// openCallLog starts following the log from its current end.
func openCallLog(path string) (*callLog, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return nil, err
	}
	return &callLog{r: bufio.NewReader(f), f: f, ups: map[string][]time.Time{}, subs: map[string]int{}}, nil
}

// read takes in the lines written since the last read.
func (c *callLog) read() {
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.partial += line // a line still being written; finish it next time
			return
		}
		c.add(c.partial + line)
		c.partial = ""
	}
}

func (c *callLog) add(line string) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return
	}
	sub := subcommand(f[2:])
	c.subs[sub]++
	if sub == "compose up" {
		c.ups[f[1]] = append(c.ups[f[1]], time.Unix(0, ns))
	}
}

// subcommand names a docker call: "compose up", "compose config", "login", ...
func subcommand(args []string) string {
	if len(args) == 0 {
		return ""
	}
	if args[0] != "compose" {
		return args[0]
	}
	takesValue := map[string]bool{"-p": true, "--project-name": true, "-f": true, "--file": true,
		"--project-directory": true, "--env-file": true, "--profile": true, "--ansi": true,
		"--progress": true, "--parallel": true}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return "compose " + a
		}
		if takesValue[a] {
			i++
		}
	}
	return "compose"
}

// firstUpAfter is the first "up" of project at or after t.
func (c *callLog) firstUpAfter(project string, t time.Time) (time.Time, bool) {
	for _, u := range c.ups[project] {
		if !u.Before(t) {
			return u, true
		}
	}
	return time.Time{}, false
}

// waitFor polls the log until done says so, pgod exits, or the deadline passes.
func (d *daemon) waitFor(deadline time.Duration, done func() bool) error {
	return d.waitEvery(deadline, 5*time.Millisecond, done)
}

// waitEvery is waitFor asking done every interval.
func (d *daemon) waitEvery(deadline, every time.Duration, done func() bool) error {
	end := time.Now().Add(deadline)
	for {
		if d.calls != nil {
			d.calls.read()
		}
		if done() {
			return nil
		}
		if !d.alive() {
			return fmt.Errorf("pgod exited: %v\n%s", d.cmd.ProcessState, d.logTail())
		}
		if time.Now().After(end) {
			return fmt.Errorf("not within %s", deadline)
		}
		time.Sleep(every)
	}
}

// waitUp waits for the first "up" of project at or after t.
func (d *daemon) waitUp(project string, t time.Time, deadline time.Duration) (time.Time, error) {
	var up time.Time
	err := d.waitFor(deadline, func() bool {
		var ok bool
		up, ok = d.calls.firstUpAfter(project, t)
		return ok
	})
	if err != nil {
		return up, fmt.Errorf("%s: no compose up: %w", project, err)
	}
	return up, nil
}

// fetchProfile saves a pprof endpoint of a profiling build of pgod to file.
func (d *daemon) fetchProfile(path, file string) error {
	if err := waitListening(d.pprof, 5*time.Second); err != nil {
		return err
	}
	resp, err := http.Get("http://" + d.pprof + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// commandCounts reads pgod's pgo_command_count from /metrics, summed over
// services: "git clone" -> 200, "compose up" -> 200, ...
func (d *daemon) commandCounts() (map[string]float64, error) {
	return d.serviceCommandCounts("")
}

// serviceCommandCounts is commandCounts of one service, or of all with "".
// pgod counts the commands it runs for a service, not every docker call.
func (d *daemon) serviceCommandCounts(service string) (map[string]float64, error) {
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	counts := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "pgo_command_count{") {
			continue
		}
		labels, value, _ := strings.Cut(strings.TrimPrefix(line, "pgo_command_count{"), "} ")
		if service != "" && labelValue(labels, "service") != service {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		counts[labelValue(labels, "cmd")+" "+labelValue(labels, "subcmd")] += n
	}
	return counts, sc.Err()
}

// labelValue finds name="value" in a Prometheus label list (values here have no quotes or commas).
func labelValue(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// perService formats counts (or their growth since before) per service.
func perService(counts, before map[string]float64, n float64) string {
	var keys []string
	for k, v := range counts {
		if v-before[k] > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, (counts[k]-before[k])/n))
	}
	return strings.Join(parts, ", ")
}
