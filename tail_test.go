package main

import (
	"strings"
	"testing"
)

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := newTail(16)
	for i := 0; i < 100; i++ {
		b.Write([]byte("line of output\n"))
	}
	b.Write([]byte("last\n"))
	got := b.String()
	if !strings.HasSuffix(got, "last\n") || len(got) > 16 {
		t.Errorf("tail = %q, want at most 16 bytes ending in the last line", got)
	}
	if strings.HasPrefix(got, "ine") {
		t.Errorf("tail %q starts with a cut line", got)
	}
	small := newTail(1 << 10)
	small.Write([]byte("a\nb\n"))
	if small.String() != "a\nb\n" {
		t.Errorf("short output = %q, want it whole", small.String())
	}
	huge := newTail(8)
	n, _ := huge.Write([]byte(strings.Repeat("x", 100) + "\nyz"))
	if n != 103 || huge.String() != "yz" {
		t.Errorf("one big write: n=%d tail=%q", n, huge.String())
	}
}
