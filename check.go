package main

import (
	"fmt"
	"io"
)

// runCheck is "pgo check": offline validation of pgo.toml and a compose project.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "pgo check: not implemented yet")
	return 2
}
