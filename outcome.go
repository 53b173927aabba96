package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// An op that deploys (git pull, up, restart) ends with a deployError when
// what the client asked for does not run: CI scripts tell the outcomes apart
// by the exit status, people by the one line on standard error.

// Exit statuses of ops whose deploy did not end with the asked-for commit
// running and healthy. The rest of the range is sysexits(3)'s; see ops.go.
const (
	exitRejected  = 65  // EX_DATAERR: the policy refused the commit; what ran before runs on
	exitFailed    = 70  // a deploy step failed (pull, up); rolled back when something ran before
	exitUnhealthy = 71  // a container crashed, restarted repeatedly or was unhealthy at the deadline; rolled back
	exitTimeout   = 124 // as timeout(1): a deadline passed before the containers were ready; rolled back
	exitFrozen    = 78  // EX_CONFIG: the service is frozen; the head was judged, nothing deployed
)

// resultUnhealthy and resultTimeout are deploy results next to those of
// control.go; resultFrozen is no deploy's: a frozen service deployed nothing.
const (
	resultUnhealthy = "unhealthy"
	resultTimeout   = "timeout"
	resultFrozen    = "frozen"
)

// deployError is a deploy's outcome other than success, already recorded,
// or the answer of a frozen service, which attempted nothing.
type deployError struct {
	result string // resultRejected, resultFailed, resultRolledBack, resultUnhealthy, resultTimeout, resultFrozen
	msg    string // one line: what happened to which commit, and why
}

func (e *deployError) Error() string { return e.msg }

func (e *deployError) status() int {
	switch e.result {
	case resultRejected:
		return exitRejected
	case resultUnhealthy:
		return exitUnhealthy
	case resultTimeout:
		return exitTimeout
	case resultFrozen:
		return exitFrozen
	}
	return exitFailed
}

// deployFailure builds a deployError whose message is one line.
func deployFailure(result, format string, args ...any) *deployError {
	msg := fmt.Sprintf(format, args...)
	msg = strings.Join(strings.Fields(msg), " ")
	return &deployError{result: result, msg: msg}
}

// timedOut turns an op's error into a timeout when its deadline passed:
// the command that was cut short only says it was killed.
func timedOut(ctx context.Context, err error) error {
	var de *deployError
	if err == nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	if errors.As(err, &de) && de.result == resultTimeout {
		return err
	}
	return deployFailure(resultTimeout, "timeout: the op's deadline (%s) passed: %v", syncTimeout, err)
}
