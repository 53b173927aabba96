package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// PTYs and terminals with nothing but syscall: the server allocates a PTY for
// "exec -it", the client puts its own terminal in raw mode.

// winSize is a terminal's size in characters.
type winSize struct {
	cols, rows uint16
}

// winsize is struct winsize of ioctl_tty(2).
type winsize struct {
	rows, cols, xpixel, ypixel uint16
}

// ioctl runs one ioctl on f without putting f in blocking mode (as f.Fd() would).
func ioctl(f *os.File, req uint, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// openPTY allocates a pseudo-terminal: the master for us, the slave for the command.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("pty: %w", err)
	}
	var unlock int32
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty: unlock: %w", err)
	}
	var n uint32
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty: number: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	slave, err = os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty: %w", err)
	}
	return master, slave, nil
}

// setWinSize sets the size of the terminal f (either side of a PTY).
func setWinSize(f *os.File, ws winSize) error {
	w := winsize{rows: ws.rows, cols: ws.cols}
	return ioctl(f, syscall.TIOCSWINSZ, unsafe.Pointer(&w))
}

// getWinSize reads the size of the terminal f.
func getWinSize(f *os.File) (winSize, error) {
	var w winsize
	err := ioctl(f, syscall.TIOCGWINSZ, unsafe.Pointer(&w))
	return winSize{cols: w.cols, rows: w.rows}, err
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	return ioctl(f, syscall.TCGETS, unsafe.Pointer(&t)) == nil
}

// makeRaw puts the terminal f in raw mode, as cfmakeraw(3) does, and returns
// a function that restores the previous mode.
func makeRaw(f *os.File) (restore func(), err error) {
	var old syscall.Termios
	if err := ioctl(f, syscall.TCGETS, unsafe.Pointer(&old)); err != nil {
		return nil, err
	}
	raw := old
	raw.Iflag &^= syscall.IGNBRK | syscall.BRKINT | syscall.PARMRK | syscall.ISTRIP | syscall.INLCR | syscall.IGNCR | syscall.ICRNL | syscall.IXON
	raw.Oflag &^= syscall.OPOST
	raw.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
	raw.Cflag &^= syscall.CSIZE | syscall.PARENB
	raw.Cflag |= syscall.CS8
	raw.Cc[syscall.VMIN] = 1
	raw.Cc[syscall.VTIME] = 0
	if err := ioctl(f, syscall.TCSETS, unsafe.Pointer(&raw)); err != nil {
		return nil, err
	}
	return func() { _ = ioctl(f, syscall.TCSETS, unsafe.Pointer(&old)) }, nil
}

// runInPTY runs cmd as the session leader of a new PTY whose master is wired
// to the client: its input to the master, the master's output to the
// client's stdout (a terminal has one output stream), window changes to the
// PTY. It returns when cmd has ended and its output has been delivered.
func runInPTY(cmd *exec.Cmd, o *opRun) error {
	master, slave, err := openPTY()
	if err != nil {
		return err
	}
	defer master.Close()
	if o.pty.size.cols > 0 && o.pty.size.rows > 0 {
		_ = setWinSize(master, o.pty.size)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if cr := credential(cmd); cr != nil {
		// The terminal belongs to whoever uses it, as with sshd.
		if err := slave.Chown(int(cr.Uid), int(cr.Gid)); err != nil {
			slave.Close()
			return fmt.Errorf("pty: %w", err)
		}
	}
	// A new session with the PTY as controlling terminal, so ^C and job
	// control work inside. account.command set Setpgid and maybe a
	// Credential: keep the credential; drop Setpgid, which setsid makes
	// both unnecessary (the session leader leads its group, so killing the
	// group still ends everything) and impossible (EPERM).
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = false
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0 // stdin in the child
	cmd.WaitDelay = waitDelay
	if cmd.Cancel == nil {
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
	if err := cmd.Start(); err != nil {
		slave.Close()
		return err
	}
	// Our copy of the slave must go, or reading the master never sees the end.
	slave.Close()

	output := make(chan struct{})
	go func() {
		defer close(output)
		copyPTYOutput(o.stdout, master)
	}()
	if o.stdin != nil {
		go func() { _, _ = io.Copy(master, o.stdin) }()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case ws, ok := <-o.winch:
				if !ok {
					return
				}
				_ = setWinSize(master, ws)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	wg.Wait()
	// The output the command wrote before it ended is still in the master.
	select {
	case <-output:
	case <-time.After(waitDelay):
	}
	return commandStatus(err)
}

// copyPTYOutput copies the master's output until the slave side is gone.
// Linux reports that as EIO: the normal end here, so the error is dropped.
func copyPTYOutput(w io.Writer, master *os.File) {
	_, _ = io.Copy(w, master)
}

func credential(cmd *exec.Cmd) *syscall.Credential {
	if cmd.SysProcAttr == nil {
		return nil
	}
	return cmd.SysProcAttr.Credential
}
