package main

// The SSH ops of a service on Swarm (swarm = true), the worker's side of
// control.go's swarmControl: ps from the stack's tasks on every node, logs
// from docker service logs, restart as a forced service update, exec into a
// task's container on this node. up and down (service.go) deploy and
// remove the stack; stop and start have no meaning on Swarm, which starts
// again what stops.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

func (w *worker) onSwarm() bool { return w.svc.Swarm }

// swarmOp runs an op of ops.go that would run docker compose.
func (w *worker) swarmOp(ctx context.Context, op string, args parsedArgs, stdout, stderr io.Writer) error {
	project := w.currentProject()
	if project == nil {
		return errNotDeployed
	}
	names, err := stackServiceNames(project)
	if err != nil {
		return err
	}
	services := args.positional
	for _, s := range services {
		if !slices.Contains(names, s) {
			return notFound("service %q has no compose service %q; it has %s", w.svc.Name, s, strings.Join(names, ", "))
		}
	}
	if len(services) == 0 {
		services = names
	}
	switch op {
	case "ps":
		return w.swarmPS(ctx, args, services, stdout, stderr)
	case "logs":
		return w.swarmLogs(ctx, args, services, stdout, stderr)
	case "restart":
		return w.swarmRestart(ctx, args, services, stdout, stderr)
	case "pull":
		cmd, err := w.compose(ctx, append([]string{"pull"}, args.compose()...)...)
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		return runCmd(cmd)
	}
	return badRequest("%s is not supported in swarm mode: Swarm starts again what stops; use down (docker stack rm, kept down) and up (docker stack deploy)", op)
}

// swarmPSFormat is the table docker stack ps prints for ps.
const swarmPSFormat = "table {{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}"

// swarmPS lists the tasks of the stack's services on every node: those
// meant to run, or with -a every task Swarm still keeps.
func (w *worker) swarmPS(ctx context.Context, args parsedArgs, services []string, stdout, stderr io.Writer) error {
	cmdArgs := []string{"stack", "ps", "--no-trunc"}
	if !args.has("--all") {
		cmdArgs = append(cmdArgs, "--filter", "desired-state=running")
	}
	if len(services) < len(w.stackNames()) {
		for _, s := range services {
			cmdArgs = append(cmdArgs, "--filter", "name="+w.svc.Name+"_"+s)
		}
	}
	for _, f := range args.flags {
		switch f.name {
		case "--quiet":
			cmdArgs = append(cmdArgs, "-q")
		case "--format":
			if f.value == "json" {
				cmdArgs = append(cmdArgs, "--format", "json")
			}
		case "--services":
			_, err := fmt.Fprintln(stdout, strings.Join(services, "\n"))
			return err
		case "--status":
			return badRequest("ps --status is not supported in swarm mode: tasks have states of their own; ps -a lists them all")
		}
	}
	if !args.has("--quiet") && !slices.Contains(cmdArgs, "json") {
		cmdArgs = append(cmdArgs, "--format", swarmPSFormat)
	}
	cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, append(cmdArgs, w.svc.Name)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return runCmd(cmd)
}

// stackNames are the compose services of what runs.
func (w *worker) stackNames() []string {
	names, _ := stackServiceNames(w.currentProject())
	return names
}

// swarmLogs prints docker service logs of each service, one after the
// other, or with -f all of them at once, a line at a time.
func (w *worker) swarmLogs(ctx context.Context, args parsedArgs, services []string, stdout, stderr io.Writer) error {
	var flags []string
	for _, f := range args.flags {
		switch f.name {
		case "--follow", "--timestamps":
			flags = append(flags, f.name)
		case "--tail", "--since":
			flags = append(flags, f.name+"="+f.value)
		case "--until":
			return badRequest("logs --until is not supported in swarm mode: docker service logs has no --until")
		}
	}
	run := func(service string, out, errOut io.Writer) error {
		cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker,
			append(append([]string{"service", "logs"}, flags...), w.svc.Name+"_"+service)...)
		cmd.Stdout, cmd.Stderr = out, errOut
		return runCmd(cmd)
	}
	if !args.has("--follow") || len(services) == 1 {
		for _, s := range services {
			if err := run(s, stdout, stderr); err != nil {
				return err
			}
		}
		return nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(services))
	for i, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errOut := &linePrefixer{w: stdout, lock: &mu}, &linePrefixer{w: stderr, lock: &mu}
			errs[i] = run(s, out, errOut)
			out.flush()
			errOut.flush()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// swarmRestart replaces the tasks of services (docker service update
// --force) and waits, as a deploy does, for the stack to converge.
func (w *worker) swarmRestart(ctx context.Context, args parsedArgs, services []string, stdout, stderr io.Writer) error {
	for _, f := range args.flags {
		switch f.name {
		case "--timeout":
			return badRequest("restart -t is not supported in swarm mode: the service's stop_grace_period applies")
		case "--no-deps":
			return badRequest("restart --no-deps is not supported in swarm mode: Swarm restarts only the services named")
		}
	}
	since := time.Now()
	for _, s := range services {
		cmd := w.acct.engineCommand(ctx, w.composeEnv(), w.d.flags.docker, "service", "update", "--force", "--detach", "--quiet", w.svc.Name+"_"+s)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := runCmd(cmd); err != nil {
			return err
		}
		w.say(stdout, "restarting %s_%s", w.svc.Name, s)
	}
	return w.healthySince(ctx, stdout, since)
}

// swarmContainer finds the container of a running task of service on
// this node, by what the swarm says of its tasks: a label on a container
// could be set by any project. When no task runs here it says where the
// service's tasks run.
func (w *worker) swarmContainer(ctx context.Context, service string) (string, error) {
	full := w.svc.Name + "_" + service
	svcs, tasks, err := w.stackTasks(ctx)
	if err != nil {
		return "", err
	}
	s, ok := svcs[full]
	if !ok {
		return "", notFound("swarm service %s is not there; up deploys the stack", full)
	}
	info, err := w.d.engine.swarmInfo(ctx)
	if err != nil {
		return "", err
	}
	var elsewhere *apiTask
	for i, t := range tasks {
		if t.ServiceID != s.ID || t.DesiredState != "running" || t.Status.State != "running" {
			continue
		}
		if c := t.Status.ContainerStatus; t.NodeID == info.NodeID && c != nil && c.ContainerID != "" {
			if strings.Trim(c.ContainerID, "0123456789abcdef") != "" {
				return "", fmt.Errorf("the engine gave %q, not a container ID", c.ContainerID)
			}
			return c.ContainerID, nil
		}
		if elsewhere == nil {
			elsewhere = &tasks[i]
		}
	}
	if elsewhere == nil {
		return "", notFound("swarm service %s has no running task", full)
	}
	nodes, _ := w.d.engine.nodeNames(ctx)
	node := nodes[elsewhere.NodeID]
	if node == "" {
		node = elsewhere.NodeID
	}
	return "", notFound("task %s.%d runs on node %s; exec reaches only tasks on this node", full, elsewhere.Slot, node)
}
