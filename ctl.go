package main

import (
	"fmt"
	"io"
)

// runCtl is pgoctl: it runs one op on a service over SSH and returns its exit status.
func runCtl(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "pgoctl: not implemented yet")
	return 2
}
