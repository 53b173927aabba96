package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The messages a new user meets first: each says what to do.

func TestDaemonDurationHint(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "5"}, `"5" needs a unit: 5s, 5m or 5h`},
		{[]string{"--duration", "5x"}, "a duration is a number with a unit, such as 30s, 5m or 1h"},
	} {
		var stdout, stderr bytes.Buffer
		if _, code := parseDaemonFlags(c.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
	var stdout, stderr bytes.Buffer
	parseDaemonFlags([]string{"--max-parallel", "x"}, &stdout, &stderr)
	if strings.Contains(stderr.String(), "unit") {
		t.Errorf("--max-parallel x got a duration hint: %q", stderr.String())
	}
}

func TestCtlPublicKeyForPrivate(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	_, err = parseClientKey(ssh.MarshalAuthorizedKey(sshPub), "/home/a/.ssh/id_pgo.pub")
	want := "key /home/a/.ssh/id_pgo.pub is a public key; give the private one (/home/a/.ssh/id_pgo) to -i"
	if err == nil || err.Error() != want {
		t.Errorf("public key as -i: %v, want %q", err, want)
	}
}
