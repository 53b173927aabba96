package main

import (
	"bytes"
	"io"
	"sync"
)

// maxPrefixedLine is how much a writer may take without a newline before it
// is written out as a line of its own, so that memory stays bounded.
const maxPrefixedLine = 64 << 10

// linePrefixer writes what it is given as whole lines, each starting with
// prefix, to w. Writers of several sources at once (pgoctl's hosts, the
// services of a swarm's logs -f) share lock, so that a line is written in
// one piece and lines of different sources never mix.
type linePrefixer struct {
	w       io.Writer
	prefix  string
	lock    *sync.Mutex
	partial []byte // the start of a line whose newline has not come yet
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.lock.Lock()
	defer p.lock.Unlock()
	var out []byte
	rest := b
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		out = p.line(out, rest[:i])
		rest = rest[i+1:]
	}
	p.partial = append(p.partial, rest...)
	if len(p.partial) >= maxPrefixedLine {
		out = p.line(out, nil)
	}
	if len(out) > 0 {
		if _, err := p.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// line appends the prefix, what is pending, end and a newline to out.
func (p *linePrefixer) line(out, end []byte) []byte {
	out = append(out, p.prefix...)
	out = append(out, p.partial...)
	out = append(out, end...)
	p.partial = p.partial[:0]
	return append(out, '\n')
}

// flush writes a last line that lacked its newline, with one.
func (p *linePrefixer) flush() error {
	p.lock.Lock()
	defer p.lock.Unlock()
	if len(p.partial) == 0 {
		return nil
	}
	_, err := p.w.Write(p.line(nil, nil))
	return err
}
