package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// coldStarts measures each fleet size of -cold-n: pgod started on empty
// state, with -cold-t, until every service's first "compose up", taking
// turns with the git clone floor (floor, pgo, floor, pgo, ...), each pass in
// directories of its own. Then it starts the daemon the other phases use, on
// -n's fleet with -t (unmeasured), and returns it running.
func (b *bench) coldStarts(measure bool) *daemon {
	if measure {
		for _, n := range b.coldNs {
			d := b.coldStartsAt(b.fleets[n])
			if d == nil {
				return nil
			}
			d.stop()
		}
	}
	d, err := b.startDaemon(b.substitute(b.main, "main-pgo"))
	if err == nil {
		_, err = b.waitAllUp(d, b.main, b.o.deadline*time.Duration(max(1, b.main.n()/200)))
	}
	if err != nil {
		b.fail(fmt.Sprintf("start of N=%d -t %s", b.main.n(), b.o.interval), err)
		if d != nil {
			d.stop()
		}
		return nil
	}
	return d
}

// coldStartsAt measures cold starts of f's fleet and returns the last daemon,
// still running (nil when one failed).
func (b *bench) coldStartsAt(f *fleet) *daemon {
	n := f.n()
	repeats := b.o.repeats
	if n > 200 {
		repeats = b.o.largeRepeats
	}
	figure := fmt.Sprintf("cold start N=%d -t %s", n, b.o.coldInterval)
	var secs, cpu, self, hwm, floorSecs, floorCPU, wallRatio, cpuRatio, load []float64
	var d *daemon
	for r := 1; r <= repeats; r++ {
		if d != nil {
			d.stop()
		}
		fl, err := b.cloneFloor(f, filepath.Join(b.o.work, fmt.Sprintf("cold%d-%d-floor", n, r)))
		if err != nil {
			b.fail(figure+": git clone floor", err)
			return nil
		}
		floorSecs, floorCPU = append(floorSecs, fl.wall.Seconds()), append(floorCPU, fl.cpu.Seconds())
		spec := b.substitute(f, fmt.Sprintf("cold%d-%d-pgo", n, r))
		spec.poll = b.o.coldInterval
		if d, err = b.startDaemon(spec); err != nil {
			b.fail(figure, err)
			return nil
		}
		if b.o.profile && r == 1 && n == b.o.services {
			go b.saveProfile(d, fmt.Sprintf("/debug/pprof/profile?seconds=%d", b.o.profileSecs), "cold.cpu.pprof")
		}
		last, err := b.waitAllUp(d, f, b.o.deadline*time.Duration(max(1, n/200)))
		if err != nil {
			b.fail(figure, err)
			d.stop()
			return nil
		}
		p, err := d.stat()
		if err != nil {
			b.fail(figure, err)
			d.stop()
			return nil
		}
		load = append(load, loadNow())
		secs = append(secs, last.Sub(d.started).Seconds())
		cpu = append(cpu, p.cpu().Seconds())
		self = append(self, p.self.Seconds())
		hwm = append(hwm, mib(p.hwm))
		wallRatio = append(wallRatio, secs[r-1]/floorSecs[r-1])
		cpuRatio = append(cpuRatio, cpu[r-1]/floorCPU[r-1])
		log.Printf("%s, %d of %d: %.2fs (floor %.2fs), %.2f CPU s (floor %.2f; pgod %.2f), peak RSS %.1f MiB, load %.2f",
			figure, r, repeats, secs[r-1], floorSecs[r-1], cpu[r-1], floorCPU[r-1], self[r-1], hwm[r-1], load[r-1])
	}
	l := loads(load)
	clones := fmt.Sprintf("git clone ×%d, %d at once", n, b.parallel)
	rss := samplesRow(figure+": peak RSS (VmHWM)", "MiB", hwm)
	switch n {
	case 200:
		rss = rss.within(quotedPeakRSS)
	case 800:
		rss = rss.within(quotedPeakRSS8)
	}
	for _, r := range []row{
		ratioRow(figure+": wall time, pgo / "+clones, wallRatio).within(coldWithin),
		ratioRow(figure+": CPU, pgo / "+clones, cpuRatio).within(coldWithin),
		samplesRow(figure+": all deployed (wall)", "s", secs),
		samplesRow(fmt.Sprintf("  floor N=%d: %s (wall)", n, clones), "s", floorSecs),
		samplesRow(figure+": CPU (pgod+children)", "CPU s", cpu),
		samplesRow(fmt.Sprintf("  floor N=%d: %s (CPU)", n, clones), "CPU s", floorCPU),
		samplesRow(figure+": CPU of pgod itself", "CPU s", self),
		rss,
	} {
		r.load = l
		b.add(r)
	}
	b.note("docker calls per service in the last cold start at N=%d (substitute's log): %s", n, d.calls.perService(n))
	if counts, err := d.commandCounts(); err == nil {
		b.note("commands per service in the last cold start at N=%d (pgod's pgo_command_count): %s", n, perService(counts, nil, float64(n)))
	} else {
		b.note("pgo_command_count: %v", err)
	}
	return d
}

// waitAllUp waits until every service had a "compose up" since pgod started
// and returns the time of the last of those first ups.
func (b *bench) waitAllUp(d *daemon, f *fleet, deadline time.Duration) (time.Time, error) {
	pending := map[string]bool{}
	for _, n := range f.names {
		pending[n] = true
	}
	var last time.Time
	err := d.waitFor(deadline, func() bool {
		for n := range pending {
			if up, ok := d.calls.firstUpAfter(n, d.started); ok {
				delete(pending, n)
				if up.After(last) {
					last = up
				}
			}
		}
		return len(pending) == 0
	})
	if err != nil {
		return last, fmt.Errorf("%d of %d services deployed: %w", f.n()-len(pending), f.n(), err)
	}
	return last, nil
}

// total is the number of calls seen.
func (c *callLog) total() int {
	n := 0
	for _, v := range c.subs {
		n += v
	}
	return n
}

// perService sums the calls by subcommand, per service.
func (c *callLog) perService(n int) string {
	var subs []string
	for s := range c.subs {
		subs = append(subs, s)
	}
	sort.Strings(subs)
	var parts []string
	for _, s := range subs {
		parts = append(parts, fmt.Sprintf("%s %.2f", s, float64(c.subs[s])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// idle measures CPU per poll cycle with no upstream change, each window
// after an ls-remote floor pass over the same fleet, RSS after those cycles,
// then CPU per cycle with one service changing each cycle; the changes also
// give the push-to-deploy latency via poll.
func (b *bench) idle(d *daemon) {
	t := b.o.interval
	n := b.main.n()
	// The window is a measurement interval, not a synchronisation: let the
	// tail of the cold start (first polls, status checks) pass first.
	time.Sleep(2 * time.Second)
	if b.o.profile {
		go b.saveProfile(d, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(t.Seconds())*b.o.cycles), "idle.cpu.pprof")
	}
	countsBefore, _ := d.commandCounts()
	d.calls.read()
	callsBefore := d.calls.total()
	fakeBefore := b.fakeServerCPU()
	var floor []float64
	quiet, err := b.cycleCPU(d, b.o.cycles, func(int) error {
		fl, err := b.lsRemoteFloor(b.main)
		floor = append(floor, fl.cpu.Seconds())
		return err
	}, nil, nil)
	if err != nil {
		b.fail("idle", err)
		return
	}
	p, _ := d.stat()
	b.note("idle RSS %.1f MiB = %.1f MiB anonymous (heap, stacks) + %.1f MiB file-backed (the binary's pages)", mib(p.rss), mib(p.anon), mib(p.file))
	d.calls.read()
	b.note("docker CLI calls per service per idle cycle (substitute's log): %.2f", float64(d.calls.total()-callsBefore)/float64(b.o.cycles*n))
	if b.fakeSocket != "" {
		b.note("the substitute's Engine API server used %.3f CPU s per idle cycle (not pgod's; the engine's part)", (b.fakeServerCPU()-fakeBefore).Seconds()/float64(b.o.cycles))
	}
	figure := fmt.Sprintf("idle N=%d -t %s, substitute docker", n, t)
	b.add(
		ratioRow(figure+": CPU per cycle, pgo / git ls-remote floor", ratios(quiet.total, floor)).within(idleWithin).withLoad(quiet.load),
		samplesRow(figure+": CPU per cycle (pgod+children), no change", "CPU s", quiet.total).withLoad(quiet.load),
		samplesRow(fmt.Sprintf("  floor N=%d: git ls-remote ×%d, %d at once (CPU)", n, n, b.parallel), "CPU s", floor).withLoad(quiet.load),
		samplesRow("  idle: CPU of pgod itself per cycle", "CPU s", quiet.self).withLoad(quiet.load),
		valueRow(fmt.Sprintf("idle N=%d: RSS after %d cycles", n, b.o.cycles), "MiB", mib(p.rss), ""),
	)
	if counts, err := d.commandCounts(); err == nil && countsBefore != nil {
		b.note("commands per service per idle cycle (pgo_command_count): %s",
			perService(counts, countsBefore, float64(n*b.o.cycles)))
	}
	b.changeCycles(d)
}

// changeCycles measures CPU per cycle with one service changing each cycle,
// pushed at a random moment of it, and the push-to-up latency through the poll.
func (b *bench) changeCycles(d *daemon) {
	t := b.o.interval
	// One service changes per cycle: prepare the commits outside the window.
	changed := make([]string, b.o.changeCycles)
	for c := range changed {
		changed[c] = b.names[len(b.names)-1-c%len(b.names)]
		if err := b.commitChange(changed[c], b.main.image); err != nil {
			b.fail("idle with change", err)
			return
		}
	}
	// Each push lands at a random moment of its cycle: pushing on the cycle
	// boundary would always hit the same phase of the services' poll timers.
	offsets := rand.New(rand.NewPCG(8, 8))
	pushedAt := make([]time.Time, b.o.changeCycles)
	busy, err := b.cycleCPU(d, b.o.changeCycles, nil, func(c int) error {
		time.Sleep(time.Duration(offsets.Int64N(int64(t * 9 / 10))))
		pushedAt[c] = time.Now()
		return b.push(changed[c])
	}, nil)
	if err != nil {
		b.fail("idle with change", err)
		return
	}
	b.add(samplesRow(fmt.Sprintf("idle N=%d: CPU per cycle, 1 change/cycle", b.main.n()), "CPU s", busy.total).withLoad(busy.load))
	var frac, abs []float64
	for c, name := range changed {
		up, err := d.waitUp(name, pushedAt[c], 3*t)
		if err != nil {
			b.fail("push to deploy via poll", err)
			return
		}
		abs = append(abs, up.Sub(pushedAt[c]).Seconds())
		frac = append(frac, up.Sub(pushedAt[c]).Seconds()/t.Seconds())
	}
	b.add(samplesRow(fmt.Sprintf("push to up via poll (fraction of -t %s)", t), "x -t", frac).withLoad(busy.load))
	b.note("push to up via poll, seconds: %s", summary(abs))
}

// ratios pairs two series sample by sample: a[i]/b[i].
func ratios(a, b []float64) []float64 {
	var r []float64
	for i := range min(len(a), len(b)) {
		r = append(r, a[i]/b[i])
	}
	return r
}

func (r row) withLoad(l []float64) row {
	r.load = loads(l)
	return r
}

// cycles are the samples of cycleCPU, one per window.
type cycles struct {
	total, self, engine, load []float64 // CPU s: pgod+children, pgod alone, the engine's processes
}

// cycleCPU samples pgod's CPU, with its children and alone, and the engine's
// when engine is not nil, over cycles windows of one poll interval each.
// before runs ahead of each window, outside it (a floor pass); during runs
// at the start of each window, inside it.
func (b *bench) cycleCPU(d *daemon, n int, before, during func(cycle int) error, engine func() time.Duration) (cycles, error) {
	var cs cycles
	for c := 0; c < n; c++ {
		if before != nil {
			if err := before(c); err != nil {
				return cs, err
			}
		}
		prev, err := d.stat()
		if err != nil {
			return cs, err
		}
		var engineStart time.Duration
		if engine != nil {
			engineStart = engine()
		}
		end := time.Now().Add(b.o.interval)
		if during != nil {
			if err := during(c); err != nil {
				return cs, err
			}
		}
		time.Sleep(time.Until(end))
		if !d.alive() {
			return cs, fmt.Errorf("pgod exited\n%s", d.logTail())
		}
		s, err := d.stat()
		if err != nil {
			return cs, err
		}
		if engine != nil {
			cs.engine = append(cs.engine, (engine() - engineStart).Seconds())
		}
		cs.total = append(cs.total, (s.cpu() - prev.cpu()).Seconds())
		cs.self = append(cs.self, (s.self - prev.self).Seconds())
		cs.load = append(cs.load, loadNow())
	}
	return cs, nil
}

// pushWebhook pushes a change and announces it like GitHub would, then
// times push to "compose up".
func (b *bench) pushWebhook(d *daemon) {
	var lat, hookToUp []float64
	for i := 0; i < b.o.hooks; i++ {
		name := b.names[(len(b.names)/2+i)%len(b.names)]
		if err := b.commitChange(name, b.main.image); err != nil {
			b.fail("push to deploy via webhook", err)
			return
		}
		head, err := git(filepath.Join(b.clones, name), "rev-parse", "HEAD")
		if err != nil {
			b.fail("push to deploy via webhook", err)
			return
		}
		t0 := time.Now()
		if err := b.push(name); err != nil {
			b.fail("push to deploy via webhook", err)
			return
		}
		hooked := time.Now()
		if err := postGitHubHook(d.metrics, name, strings.TrimSpace(string(head))); err != nil {
			b.fail("push to deploy via webhook", err)
			return
		}
		up, err := d.waitUp(name, t0, b.o.deadline)
		if err != nil {
			b.fail("push to deploy via webhook", err)
			return
		}
		lat = append(lat, up.Sub(t0).Seconds()*1000)
		hookToUp = append(hookToUp, up.Sub(hooked).Seconds()*1000)
	}
	b.add(samplesRow("push to up via webhook (git push included)", "ms", lat))
	b.note("webhook POST to compose up, ms: %s", summary(hookToUp))
}

// postGitHubHook sends a push event signed as GitHub does (X-Hub-Signature-256).
func postGitHubHook(addr, name, head string) error {
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"name":%q,"full_name":"bench/%s"}}`, head, name, name))
	mac := hmac.New(sha256.New, []byte(webhookSecret(name)))
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/hook/"+name, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /hook/%s: %s, want 202", name, resp.Status)
	}
	return nil
}

// mib is bytes in MiB, the one memory unit of the report.
func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }
