package main

import (
	"bytes"
	"errors"
	"sync"
)

// tailBuffer keeps the last max bytes written to it: a child's output (a
// compose build, git, a render) can be any size, and the root daemon only
// ever shows its last lines.
type tailBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool // something was dropped from the front
}

// maxTail is what pgod keeps of one command's standard error.
const maxTail = 64 << 10

func newTail(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		p = p[len(p)-t.max:]
		t.buf, t.truncated = t.buf[:0], true
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf, t.truncated = append(t.buf[:0], t.buf[over:]...), true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String is what is kept, without a line cut at the front.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if t.truncated {
		for i := 0; i < len(s); i++ {
			if s[i] == '\n' {
				return s[i+1:]
			}
		}
	}
	return s
}

// cappedBuffer keeps what is written to it up to max bytes; past that it
// refuses the write and calls full, once. (No embedded bytes.Buffer: its
// ReadFrom would let io.Copy past the cap.)
type cappedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
	full func()
}

var errCapped = errors.New("output limit reached")

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.buf.Write(p[:max(room, 0)])
		if !c.over && c.full != nil {
			c.full()
		}
		c.over = true
		return 0, errCapped
	}
	return c.buf.Write(p)
}

func (c *cappedBuffer) Bytes() []byte  { return c.buf.Bytes() }
func (c *cappedBuffer) String() string { return c.buf.String() }
