package main

import (
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// exitHooks run when the driver ends, normally or on SIGINT/SIGTERM, last
// registered first: a phase that starts something (a server, containers on
// the real engine) registers how to undo it, so nothing outlives the run.
type exitHooks struct {
	mu  sync.Mutex
	fns []func()
}

func (b *bench) onExit(fn func()) {
	b.exit.mu.Lock()
	defer b.exit.mu.Unlock()
	b.exit.fns = append(b.exit.fns, fn)
}

// runExitHooks runs and forgets the hooks registered so far.
func (b *bench) runExitHooks() {
	b.exit.mu.Lock()
	fns := b.exit.fns
	b.exit.fns = nil
	b.exit.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// exitOnSignal runs the hooks when the driver is interrupted, then exits
// as a shell would after the signal.
func (b *bench) exitOnSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Printf("%s: cleaning up", s)
		b.runExitHooks()
		os.Exit(130)
	}()
}
