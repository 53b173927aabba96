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

// Reference figures from issue 8: the reference implementation, measured
// with the same substitute docker.
const (
	refColdSeconds = 4.8
	refColdCPU     = 3.1
	refColdRSS     = 63 // MB
	refIdleRSS     = 33 // MB
	refPingMs      = 11
	refBinaryMB    = 34
	betterBy       = 2   // aim: at least twice as good as the reference
	sshWithin      = 1.5 // pgod's SSH path against OpenSSH
)

// coldStarts starts pgod on fresh state -repeats times and measures how long
// until every service's "compose up" was called, the CPU that took and the
// peak RSS. The last daemon is left running for the other phases.
func (b *bench) coldStarts(measure bool) *daemon {
	repeats := b.o.repeats
	if !measure {
		repeats = 1
	}
	var secs, cpu, self, hwm []float64
	var d *daemon
	for r := 1; r <= repeats; r++ {
		if d != nil {
			d.stop()
		}
		var err error
		if d, err = b.startDaemon(fmt.Sprintf("run%d", r)); err != nil {
			b.fail("cold start", err)
			return nil
		}
		if b.o.profile && r == 1 {
			go b.saveProfile(d, fmt.Sprintf("/debug/pprof/profile?seconds=%d", b.o.profileSecs), "cold.cpu.pprof")
		}
		last, err := b.waitAllUp(d)
		if err != nil {
			b.fail(fmt.Sprintf("cold start N=%d", b.o.services), err)
			d.stop()
			return nil
		}
		p, err := d.stat()
		if err != nil {
			b.fail("cold start", err)
			d.stop()
			return nil
		}
		secs = append(secs, last.Sub(d.started).Seconds())
		cpu = append(cpu, p.cpu().Seconds())
		self = append(self, p.self.Seconds())
		hwm = append(hwm, mb(p.hwm))
		log.Printf("cold start %d: %.2fs, %.2f CPU s (pgod %.2f), peak RSS %.1f MB",
			r, secs[r-1], cpu[r-1], self[r-1], hwm[r-1])
	}
	if measure {
		n := b.o.services
		b.rows = append(b.rows,
			samplesRow(fmt.Sprintf("cold start N=%d: all deployed", n), "s", secs, refColdSeconds, betterBy),
			samplesRow(fmt.Sprintf("cold start N=%d: CPU (pgod+children)", n), "CPU s", cpu, refColdCPU, betterBy),
			samplesRow(fmt.Sprintf("cold start N=%d: CPU of pgod itself", n), "CPU s", self, 0, 0),
			samplesRow(fmt.Sprintf("cold start N=%d: peak RSS (VmHWM)", n), "MB", hwm, refColdRSS, betterBy),
		)
		b.note("docker calls per service in the last cold start (substitute's log): %s", d.calls.perService(n))
		b.coldCPU, b.coldDockerCalls = median(cpu), float64(d.calls.total())
		if counts, err := d.commandCounts(); err == nil {
			b.note("commands per service in the last cold start (pgod's pgo_command_count): %s", perService(counts, nil, float64(n)))
		} else {
			b.note("pgo_command_count: %v", err)
		}
	}
	return d
}

// waitAllUp waits until every service had a "compose up" since pgod started
// and returns the time of the last of those first ups.
func (b *bench) waitAllUp(d *daemon) (time.Time, error) {
	pending := map[string]bool{}
	for _, n := range b.names {
		pending[n] = true
	}
	var last time.Time
	err := d.waitFor(b.o.deadline, func() bool {
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
		return last, fmt.Errorf("%d of %d services deployed: %w", len(b.names)-len(pending), len(b.names), err)
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

// idle measures CPU per poll cycle with no upstream change, RSS after those
// cycles, then CPU per cycle with one service changing each cycle; the
// changes also give the push-to-deploy latency via poll.
func (b *bench) idle(d *daemon) {
	t := b.o.interval
	// The window is a measurement interval, not a synchronisation: let the
	// tail of the cold start (first polls, status checks) pass first.
	time.Sleep(2 * time.Second)
	if b.o.profile {
		go b.saveProfile(d, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(t.Seconds())*b.o.cycles), "idle.cpu.pprof")
	}
	countsBefore, _ := d.commandCounts()
	d.calls.read()
	callsBefore := d.calls.total()
	quiet, quietSelf, err := b.cycleCPU(d, b.o.cycles, nil)
	if err != nil {
		b.fail("idle", err)
		return
	}
	p, _ := d.stat()
	b.note("idle RSS %.1f MB = %.1f MB anonymous (heap, stacks) + %.1f MB file-backed (the binary's pages)", mb(p.rss), mb(p.anon), mb(p.file))
	b.idleCPU = median(quiet)
	d.calls.read()
	b.idleDockerCalls = float64(d.calls.total()-callsBefore) / float64(b.o.cycles)
	b.note("docker calls per service per idle cycle (substitute's log): %.2f", b.idleDockerCalls/float64(b.o.services))
	b.rows = append(b.rows,
		samplesRow(fmt.Sprintf("idle N=%d -t %s: CPU per cycle, no change", b.o.services, t), "CPU s", quiet, 0, 0),
		samplesRow("idle: CPU of pgod itself per cycle", "CPU s", quietSelf, 0, 0),
		valueRow(fmt.Sprintf("idle N=%d: RSS after %d cycles", b.o.services, b.o.cycles), "MB", mb(p.rss), "", refIdleRSS, betterBy),
	)
	if counts, err := d.commandCounts(); err == nil && countsBefore != nil {
		b.note("commands per service per idle cycle (pgo_command_count): %s",
			perService(counts, countsBefore, float64(b.o.services*b.o.cycles)))
	}
	// One service changes per cycle: prepare the commits outside the window.
	changed := make([]string, b.o.changeCycles)
	for c := range changed {
		changed[c] = b.names[len(b.names)-1-c%len(b.names)]
		if err := b.commitChange(changed[c]); err != nil {
			b.fail("idle with change", err)
			return
		}
	}
	// Each push lands at a random moment of its cycle: pushing on the cycle
	// boundary would always hit the same phase of the services' poll timers.
	offsets := rand.New(rand.NewPCG(8, 8))
	pushedAt := make([]time.Time, b.o.changeCycles)
	busy, _, err := b.cycleCPU(d, b.o.changeCycles, func(c int) error {
		time.Sleep(time.Duration(offsets.Int64N(int64(t * 9 / 10))))
		pushedAt[c] = time.Now()
		return b.push(changed[c])
	})
	if err != nil {
		b.fail("idle with change", err)
		return
	}
	b.rows = append(b.rows, samplesRow(fmt.Sprintf("idle N=%d: CPU per cycle, 1 change/cycle", b.o.services), "CPU s", busy, 0, 0))
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
	b.rows = append(b.rows, samplesRow(fmt.Sprintf("push to up via poll (fraction of -t %s)", t), "x -t", frac, 0, 0))
	b.note("push to up via poll, seconds: %s", summary(abs))
}

// cycleCPU samples pgod's CPU, with its children and alone, at each of
// cycles poll intervals; onCycle runs at the start of each.
func (b *bench) cycleCPU(d *daemon, cycles int, onCycle func(cycle int) error) (total, self []float64, err error) {
	prev, err := d.stat()
	if err != nil {
		return nil, nil, err
	}
	next := time.Now()
	for c := 0; c < cycles; c++ {
		next = next.Add(b.o.interval)
		if onCycle != nil {
			if err := onCycle(c); err != nil {
				return nil, nil, err
			}
		}
		time.Sleep(time.Until(next))
		if !d.alive() {
			return nil, nil, fmt.Errorf("pgod exited\n%s", d.logTail())
		}
		s, err := d.stat()
		if err != nil {
			return nil, nil, err
		}
		total = append(total, (s.cpu() - prev.cpu()).Seconds())
		self = append(self, (s.self - prev.self).Seconds())
		prev = s
	}
	return total, self, nil
}

// pushWebhook pushes a change and announces it like GitHub would, then
// times push to "compose up".
func (b *bench) pushWebhook(d *daemon) {
	var lat, hookToUp []float64
	for i := 0; i < b.o.hooks; i++ {
		name := b.names[(len(b.names)/2+i)%len(b.names)]
		if err := b.commitChange(name); err != nil {
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
	b.rows = append(b.rows, samplesRow("push to up via webhook (git push included)", "ms", lat, 0, 0))
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

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }
