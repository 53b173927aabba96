package main

import (
	"fmt"
	"io"
)

// runDaemon is pgod.
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "pgod: not implemented yet")
	return 2
}
