package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestLinePrefixer(t *testing.T) {
	var lock sync.Mutex
	var out bytes.Buffer
	const hosts, lines = 8, 200
	var wg sync.WaitGroup
	for h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &linePrefixer{w: &out, prefix: fmt.Sprintf("web%d: ", h), lock: &lock}
			var text strings.Builder
			for i := range lines {
				fmt.Fprintf(&text, "line %d of host %d\n", i, h)
			}
			text.WriteString("no newline at the end")
			// Written in pieces that split lines anywhere, as SSH channel reads do.
			data := text.String()
			for len(data) > 0 {
				n := min(len(data), 1+(len(data)*7+h)%13)
				p.Write([]byte(data[:n]))
				data = data[n:]
			}
			p.flush()
		}()
	}
	wg.Wait()
	next := make([]int, hosts)
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var h, i, h2 int
		if _, err := fmt.Sscanf(l, "web%d: line %d of host %d", &h, &i, &h2); err == nil {
			if h != h2 || i != next[h] {
				t.Fatalf("line %q: want line %d of host %d, prefixed by it", l, next[h], h)
			}
			next[h]++
			continue
		}
		if _, err := fmt.Sscanf(l, "web%d: no newline at the end", &h); err != nil || next[h] != lines {
			t.Fatalf("mixed or misplaced line %q", l)
		}
		next[h]++
	}
	for h, n := range next {
		if n != lines+1 {
			t.Errorf("host %d: %d lines, want %d", h, n, lines+1)
		}
	}

	// A line that never ends is written in pieces, each a line, rather than held.
	out.Reset()
	p := &linePrefixer{w: &out, prefix: "web1: ", lock: &lock}
	p.Write(bytes.Repeat([]byte("x"), maxPrefixedLine+10))
	if want := "web1: " + strings.Repeat("x", maxPrefixedLine+10) + "\n"; out.String() != want {
		t.Errorf("long line: %d bytes out, want %d", out.Len(), len(want))
	}
	if p.flush(); strings.Count(out.String(), "\n") != 1 {
		t.Errorf("flush after a long line wrote more")
	}
}
