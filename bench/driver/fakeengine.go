package main

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// startFakeEngine serves the substitute's Engine API (bench/fakedocker
// -serve) on a socket beside it, for a pgod with --docker-socket: the
// substitute phases must not reach the real engine. The cleanup stops it.
func (b *bench) startFakeEngine() error {
	sock := filepath.Join(b.fakeDir, "engine.sock")
	logf, err := os.Create(filepath.Join(b.fakeDir, "engine.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(b.o.docker, "-serve", sock)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	b.onExit(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	if err := newEngineClient(sock).ping(10 * time.Second); err != nil {
		return fmt.Errorf("substitute engine: %w", err)
	}
	b.fakeSocket, b.fakePid = sock, cmd.Process.Pid
	log.Printf("substitute Engine API on %s", sock)
	return nil
}

// fakeServerCPU is the CPU the substitute's Engine API server has used: the
// part of the substitute that stands for the engine, not counted in pgod's.
func (b *bench) fakeServerCPU() time.Duration {
	if b.fakePid == 0 {
		return 0
	}
	_, cpu, _ := procCPU(fmt.Sprintf("/proc/%d/stat", b.fakePid))
	return cpu
}
