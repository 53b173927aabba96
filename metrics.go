package main

import "net/http"

// metrics counts what pgod does, for /metrics. The zero value is not usable; use newMetrics.
type metrics struct {
	statuses func() []serviceStatus // snapshot of every service, for the gauges
}

// newMetrics returns metrics whose per-service gauges come from statuses.
func newMetrics(statuses func() []serviceStatus) *metrics {
	return &metrics{statuses: statuses}
}

// command counts one external command run for service (reference: pgo_command_count, pgo_command_error_count).
func (m *metrics) command(service, command string, err error) {}

// deploy counts a deploy attempt's result (resultOK, resultRejected, ...).
func (m *metrics) deploy(service, result string) {}

// sshSession counts one SSH session's result ("ok", "error", "unauthorized", ...).
func (m *metrics) sshSession(service, result string) {}

// ServeHTTP writes the Prometheus text format.
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {}
