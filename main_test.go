package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestModes(t *testing.T) {
	for _, c := range []struct {
		argv       []string
		code       int
		out, inErr string
	}{
		{[]string{"pgo", "version"}, 0, "pgo " + version, ""},
		{[]string{"pgod", "--version"}, 0, "pgo " + version, ""},
		{[]string{"/usr/bin/pgod", "-v"}, 0, "pgo " + version, ""},
		{[]string{"pgoctl", "-h"}, 0, "--known-hosts", ""},
		{[]string{"pgo", "ctl", "--help"}, 0, "PGOCTL_HOSTKEY", ""},
		{[]string{"pgo", "check", "-h"}, 0, "--datadir", ""},
		{[]string{"pgo", "daemon", "-h"}, 0, "--max-parallel", ""},
		{[]string{"pgo", "status", "-h"}, 0, "without pgod running", ""},
		{[]string{"pgo", "frobnicate"}, 2, "", `pgo: unknown command "frobnicate"`},
		{[]string{"pgo"}, 2, "", "Usage:"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(c.argv, &stdout, &stderr)
		if code != c.code || !strings.Contains(stdout.String(), c.out) || !strings.Contains(stderr.String(), c.inErr) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", c.argv, code, stdout.String(), stderr.String())
		}
	}
}

// TestHelpNamesEveryFlag keeps "pgo help" in step with the flags each mode parses.
func TestHelpNamesEveryFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"pgo", "help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("pgo help: exit %d", code)
	}
	help := stdout.String()
	for _, flag := range []string{
		"--config", "--dir", "--datadir", "--ssh", "--metrics", "--duration", "--max-parallel",
		"--hostkey", "--docker", "--mount-cmd", "--operators", "--debug", "--version", // pgod
		"-i KEYFILE", "-p PORT", "--known-hosts", "PGOCTL_ID", "PGOCTL_HOSTKEY", // pgoctl
		"-s SERVICE", // pgo check
		"pgo status [-c CONFIG] [-d DIR]",
	} {
		if !strings.Contains(help, flag) {
			t.Errorf("pgo help does not name %s", flag)
		}
	}
}
