package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// savedState is what pgod remembers of a service across restarts, in
// <dir>/.pgo/<name>/state.json next to the project files it names.
type savedState struct {
	Deployed   string    // commit whose project (deployed.json) runs
	DeployedAt time.Time // when it was deployed
	Validated  string    // commit checked out, whose project (validated.json) passed the policy
	// Build identities (build.go) of the deployed and the validated
	// project: part of what runs, as the projects are.
	DeployedBuilds  map[string]string
	ValidatedBuilds map[string]string
	Upstream        string            // last commit seen on the branch
	LastSync        time.Time         // last successful ls-remote
	LastDeploy      time.Time         // last deploy attempt
	LastResult      string            // resultOK, ...
	LastError       string            // last failure, secrets redacted
	Attempt         attempt           // the last deploy attempt, with the last log lines of a container that failed it
	Rejected        string            // last commit refused by the policy; not retried
	Rejection       []string          // its violations
	RejectedBy      string            // the rules it was judged by (see rulesID); judged again under others
	Failed          string            // last commit whose deploy failed; retried only on request
	BadImages       map[string]string // service -> image ID an image update rolled back; not tried again
	ReloadErr       string            // last Caddy reload failure
	Frozen          *freezeMark       // set while the service does not follow its branch
	Waiting         waiting           // frozen: the upstream head as judged
}

// statePaths are the files of one service under <dir>/.pgo/<name>; the
// history of its deploy attempts (history.go) is there too.
type statePaths struct{ dir string }

func (p statePaths) state() string     { return filepath.Join(p.dir, "state.json") }
func (p statePaths) deployed() string  { return filepath.Join(p.dir, "deployed.json") }
func (p statePaths) validated() string { return filepath.Join(p.dir, "validated.json") }
func (p statePaths) history() string   { return filepath.Join(p.dir, "history.jsonl") }

func loadState(p statePaths) (savedState, error) {
	var s savedState
	data, err := os.ReadFile(p.state())
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(data, &s)
}

func saveState(p statePaths, s savedState) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p.state(), data, 0o600)
}

// readOptional returns a file's content, or nil when it does not exist.
func readOptional(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
