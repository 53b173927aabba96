package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Files pgod writes whole and reads without following links.

// writeFileAtomic writes data to a temporary file next to path, syncs it and
// renames it over path, then syncs the directory: readers see the old file
// or the new one, whole, also after a crash.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return renameInto(path, data, perm, nil, true)
}

// replaceFile is writeFileAtomic without its syncs, for a file pgod makes
// again whenever it finds it missing or different: a cold start of hundreds
// of services pays for every sync. owner, when set, gets the file.
func replaceFile(path string, data []byte, perm os.FileMode, owner *account) error {
	return renameInto(path, data, perm, owner, false)
}

// renameInto writes data to a temporary file next to path, with perm and
// owner, and renames it over path; durable syncs the file before and the
// directory after the rename.
func renameInto(path string, data []byte, perm os.FileMode, owner *account, durable bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil && owner != nil {
		err = tmp.Chown(int(owner.UID), int(owner.GID))
	}
	if err == nil && durable {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if durable {
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

// readNoFollow reads a regular file of at most max bytes that is not a
// symlink; the checkout's .git belongs to the service's user.
func readNoFollow(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("%s is not a regular file of at most %d bytes", path, max)
	}
	return io.ReadAll(io.LimitReader(f, max))
}
