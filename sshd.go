package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/crypto/ssh"
)

// sshServer is pgod's own SSH server: public keys only, exec requests only.
type sshServer struct {
	ctl     controller
	hostKey ssh.Signer
	log     *slog.Logger
	metrics *metrics
}

func newSSHServer(ctl controller, hostKey ssh.Signer, log *slog.Logger, m *metrics) *sshServer {
	return &sshServer{ctl: ctl, hostKey: hostKey, log: log, metrics: m}
}

// serve accepts connections on ln until ctx is done.
func (s *sshServer) serve(ctx context.Context, ln net.Listener) error {
	return fmt.Errorf("sshServer.serve: not implemented yet")
}

// loadOrCreateHostKey reads the ed25519 host key at path, creating it (0600) on first use.
func loadOrCreateHostKey(path string) (ssh.Signer, error) {
	return nil, fmt.Errorf("loadOrCreateHostKey: not implemented yet")
}
