package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The engine keeps a bind mount's source as a path and resolves it, following
// symlinks, every time it creates or starts the container: at pgod's up, at
// the ops' start and restart, and at its own restart policy, which pgod never
// sees. Every component of a source in the checkout or the data directory is
// the team's to change after the check (its commits move the checkout, its
// containers write the data directory), so a symlink swapped in later would
// mount whatever it points to.
//
// pgod therefore never hands the engine such a path. Before compose creates or
// starts containers, it opens each source one component at a time, refusing
// symlinks (O_NOFOLLOW at every step: the kernel decides, not a check that may
// be stale), and bind-mounts the directory or file it opened onto a pin:
// <dir>/.pgo/pins/<service>/<hash>, in a directory only root can reach and no
// container ever sees. The project compose runs names the pins, so what the
// engine resolves later is a root-owned path nobody else can change, leading
// to the very inode pgod opened. A container may rename or replace its source
// afterwards; the pin keeps what was opened.
//
// The pins live on a tmpfs: after a reboot they are gone, and the engine
// refuses to start containers whose source is missing (pins are handed over
// with create_host_path off) until pgod has pinned again, rather than start
// them on an empty directory.

// oPath is Linux's O_PATH, which the syscall package does not name: an fd
// that only names an inode, enough to stat it and to bind-mount it.
const oPath = 0x200000

// pinsDir is where the pins of all services live, below --dir.
func pinsDir(stateDir string) string { return filepath.Join(stateDir, ".pgo", "pins") }

// mountPinsDir mounts the tmpfs for the pins unless it is mounted already.
func mountPinsDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if _, mounted, err := mountAt(mountinfoPath, resolved); err != nil || mounted {
		return err
	}
	if err := syscall.Mount("pgo-pins", resolved, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=0700,size=1m"); err != nil {
		return fmt.Errorf("mount a tmpfs for bind pins at %s: %w", resolved, err)
	}
	return nil
}

// pinner pins the bind sources of one service.
type pinner struct {
	dir   string   // <dir>/.pgo/pins/<service>
	roots []string // the checkout and the data directory: sources below them are pinned
}

// pinRoot is a service directory as projects name it and as the kernel has it.
type pinRoot struct{ named, real string }

// resolvedRoots resolves the roots' own symlinks: those are the host's
// (/var/lib may lead elsewhere), not the team's. A root that does not exist
// yet has nothing below it to pin.
func (p *pinner) resolvedRoots() []pinRoot {
	var out []pinRoot
	for _, r := range p.roots {
		if real, err := filepath.EvalSymlinks(r); err == nil {
			out = append(out, pinRoot{filepath.Clean(r), real}, pinRoot{real, real})
		}
	}
	return out
}

// pinSource is one host path of a project that the engine bind-mounts.
type pinSource struct {
	path   string // as the project names it, "$$" unescaped
	create bool   // the engine would create it when missing (short syntax)
	set    func(pin string)
}

// pinProject replaces every bind source below the roots in a decoded project
// by its pin. With mount set it also makes the pins (a command is about to
// create or start containers); without, the project only names them, so that
// every compose command sees the same project.
func (p *pinner) pinProject(proj map[string]any, mount bool) error {
	roots := p.resolvedRoots()
	for _, src := range pinSources(proj) {
		root, rel, ok := rootOf(roots, src.path)
		if !ok {
			continue // outside the service's directories: the policy judged it, nobody else can change it
		}
		pin := p.pinPath(src.path)
		if mount {
			if err := p.pin(root, rel, pin, src.create); err != nil {
				return fmt.Errorf("bind source %s: %w", src.path, err)
			}
		}
		src.set(pin)
	}
	return nil
}

// pinSources lists the service volumes of type bind and the file secrets
// and configs (compose bind-mounts those too) of a decoded project.
func pinSources(proj map[string]any) []pinSource {
	var out []pinSource
	services := jsonObject(proj["services"])
	for _, name := range sortedKeys(services) {
		for _, v := range jsonList(jsonObject(services[name])["volumes"]) {
			m := jsonObject(v)
			if jsonString(m["type"]) != "bind" {
				continue
			}
			bind := jsonObject(m["bind"])
			out = append(out, pinSource{
				path:   strings.ReplaceAll(jsonString(m["source"]), "$$", "$"),
				create: truthy(bind["create_host_path"]),
				set: func(pin string) {
					m["source"] = pin
					if bind == nil {
						bind = map[string]any{}
						m["bind"] = bind
					}
					bind["create_host_path"] = false
				},
			})
		}
	}
	for _, kind := range []string{"secrets", "configs"} {
		objs := jsonObject(proj[kind])
		for _, key := range sortedKeys(objs) {
			o := jsonObject(objs[key])
			if f := jsonString(o["file"]); f != "" {
				out = append(out, pinSource{path: strings.ReplaceAll(f, "$$", "$"), set: func(pin string) { o["file"] = pin }})
			}
		}
	}
	return out
}

// rootOf finds the service directory a source lies in and its path below it.
func rootOf(roots []pinRoot, source string) (root string, rel []string, ok bool) {
	clean := filepath.Clean(source)
	for _, r := range roots {
		if clean == r.named {
			return r.real, nil, true
		}
		if rest, found := strings.CutPrefix(clean, r.named+"/"); found {
			return r.real, strings.Split(rest, "/"), true
		}
	}
	return "", nil, false
}

// pinPath names the pin of a source: stable, so that compose sees the same
// project for the same commit and recreates nothing.
func (p *pinner) pinPath(source string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(source)))
	return filepath.Join(p.dir, hex.EncodeToString(sum[:12]))
}

// pin opens root/rel without following a symlink anywhere below root,
// creating missing directories the way the engine would (root-owned, 0755)
// when create is set, and bind-mounts what it opened at pin, replacing an
// older pin.
func (p *pinner) pin(root string, rel []string, pin string, create bool) error {
	fd, err := openBeneath(root, rel, create)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return err
	}
	isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
	if !isDir && st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return errors.New("is neither a directory nor a regular file")
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	if err := unpin(pin); err != nil {
		return err
	}
	if isDir {
		err = os.Mkdir(pin, 0o700)
	} else {
		err = os.WriteFile(pin, nil, 0o600)
	}
	if err != nil {
		return err
	}
	// The magic link /proc/self/fd/N names exactly the opened inode: the
	// mount cannot be redirected by anything that happens to the path.
	if err := syscall.Mount("/proc/self/fd/"+strconv.Itoa(fd), pin, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin at %s: %w", pin, err)
	}
	return syscall.Mount("", pin, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_NOSUID|syscall.MS_NODEV, "")
}

// openBeneath opens root/rel[0]/rel[1]/... with O_NOFOLLOW at every step, so
// a symlink anywhere below root ends the walk with an error instead of being
// followed. Missing directories are made when create is set.
func openBeneath(root string, rel []string, create bool) (int, error) {
	fd, err := syscall.Open(root, oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for i, name := range rel {
		if name == "" || name == "." || name == ".." {
			syscall.Close(fd)
			return -1, fmt.Errorf("path element %q is not allowed", name)
		}
		next, err := syscall.Openat(fd, name, oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.ENOENT) && create {
			if err = syscall.Mkdirat(fd, name, 0o755); err == nil || errors.Is(err, syscall.EEXIST) {
				next, err = syscall.Openat(fd, name, oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
			}
		}
		if err == nil {
			var st syscall.Stat_t
			if err = syscall.Fstat(next, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
				syscall.Close(next)
				err = fmt.Errorf("%s is a symlink, which pgod never follows in a service's directories", filepath.Join(rel[:i+1]...))
			}
		}
		syscall.Close(fd)
		if err != nil {
			if errors.Is(err, syscall.ENOENT) {
				return -1, fmt.Errorf("%s does not exist", filepath.Join(rel[:i+1]...))
			}
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// unpin detaches and removes a pin, if there is one.
func unpin(pin string) error {
	for {
		err := syscall.Unmount(pin, syscall.MNT_DETACH)
		if err != nil {
			break // EINVAL: not a mount point (any more); ENOENT: no pin
		}
	}
	if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// unpinAll removes every pin of a service, for a service that is removed.
func unpinAll(dir string) error {
	err := unpinExcept(dir, nil)
	if rmErr := os.Remove(dir); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	return err
}

// unpinUnused removes the pins of a service that project does not name, after
// a deploy: the containers that used them are gone.
func (p *pinner) unpinUnused(project []byte) error {
	proj, err := decodeProject(project)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, src := range pinSources(proj) {
		keep[filepath.Base(p.pinPath(src.path))] = true
	}
	return unpinExcept(p.dir, keep)
}

// unpinExcept removes the pins in dir whose names keep does not hold.
func unpinExcept(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !keep[e.Name()] {
			errs = append(errs, unpin(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}
