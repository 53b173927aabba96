// Command fakedocker stands in for the docker CLI in "make bench": it records
// every call with a timestamp and returns at once, so that what the benchmark
// measures is pgo's own cost and not the engine's.
//
// pgod runs docker with a clean environment, so the fake finds its files next
// to its own executable: docker.log (one line per call:
// "<unix-nanos> <project> <args...>") and state/<project> (present while the
// project is "up", holding its image, so "compose ps" answers like a real
// engine would).
//
// "fakedocker -serve SOCK" is the engine's side instead: a tiny Engine API on
// a Unix socket over the same state (engine.go), for pgod --docker-socket.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// composeVersion is what the real plugin installed on the bench machine reports.
const composeVersion = "2.40.3"

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-serve" {
		dir, err := ownDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakedocker:", err)
			os.Exit(1)
		}
		os.Exit(serve(os.Args[2], dir, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	now := time.Now().UnixNano()
	dir, err := ownDir()
	if err != nil {
		fmt.Fprintln(stderr, "fakedocker:", err)
		return 1
	}
	inv := parse(args)
	if inv.stdinFile {
		// "-f -": the project arrives on stdin; read it whole like compose does.
		inv.file, _ = io.ReadAll(stdin)
	} else if inv.filePath != "" {
		inv.file, _ = os.ReadFile(inv.filePath)
	}
	if inv.project == "" {
		inv.project = projectFromFile(inv.file, inv.filePath)
	}
	if err := record(dir, now, inv.project, args); err != nil {
		fmt.Fprintln(stderr, "fakedocker:", err)
		return 1
	}
	return answer(dir, inv, stdin, stdout, stderr)
}

// ownDir is the directory of the running executable, where the log and state live.
func ownDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Dir(exe), nil
}

// invocation is a docker command line taken apart.
type invocation struct {
	compose   bool     // "docker compose ..."
	sub       string   // docker or compose subcommand: "up", "config", "login", ...
	subArgs   []string // arguments after the subcommand
	project   string   // -p/--project-name, or the "name" of the project file
	filePath  string   // -f/--file
	stdinFile bool     // -f -
	file      []byte   // content of the project file
}

// composeValueFlags are compose's global flags that take a value.
var composeValueFlags = map[string]bool{
	"-p": true, "--project-name": true, "-f": true, "--file": true,
	"--project-directory": true, "--env-file": true, "--profile": true,
	"--ansi": true, "--progress": true, "--parallel": true,
}

func parse(args []string) invocation {
	var inv invocation
	// docker's own global flags (--config DIR, --host ...) before the subcommand.
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		if !strings.Contains(args[0], "=") && len(args) > 1 && (args[0] == "--config" || args[0] == "-H" || args[0] == "--host" || args[0] == "--context") {
			args = args[1:]
		}
		args = args[1:]
	}
	if len(args) == 0 {
		return inv
	}
	if args[0] != "compose" {
		inv.sub, inv.subArgs = args[0], args[1:]
		// "docker ps --filter label=com.docker.compose.project=NAME": pgod's drift check.
		for _, a := range inv.subArgs {
			if name, ok := strings.CutPrefix(a, "label=com.docker.compose.project="); ok {
				inv.project = name
			}
		}
		return inv
	}
	inv.compose = true
	args = args[1:]
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		flag, value, hasValue := strings.Cut(args[0], "=")
		args = args[1:]
		if !composeValueFlags[flag] {
			continue
		}
		if !hasValue && len(args) > 0 {
			value, args = args[0], args[1:]
		}
		switch flag {
		case "-p", "--project-name":
			inv.project = value
		case "-f", "--file":
			inv.filePath = value
			inv.stdinFile = value == "-"
		}
	}
	if len(args) > 0 {
		inv.sub, inv.subArgs = args[0], args[1:]
	}
	return inv
}

var nameField = regexp.MustCompile(`"name"\s*:\s*"([a-z0-9][a-z0-9_-]*)"`)

// projectFromFile finds the project name when no -p was given: the top-level
// "name" of a rendered project (its first "name" key, as compose sorts keys and
// "name" comes before "networks" and "services"), else the checkout's directory.
func projectFromFile(file []byte, path string) string {
	if m := nameField.FindSubmatch(file); m != nil {
		return string(m[1])
	}
	if path != "" && path != "-" {
		return filepath.Base(filepath.Dir(path))
	}
	return "-"
}

// record appends one line to docker.log with a single write, which O_APPEND
// keeps whole when several fakes run at once.
func record(dir string, now int64, project string, args []string) error {
	f, err := os.OpenFile(filepath.Join(dir, "docker.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%d %s %s\n", now, project, strings.Join(args, " "))
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func answer(dir string, inv invocation, stdin io.Reader, stdout, stderr io.Writer) int {
	state := filepath.Join(dir, "state", inv.project)
	if !inv.compose {
		return answerDocker(dir, inv, stdin, stdout, stderr)
	}
	switch inv.sub {
	case "version":
		if hasArg(inv.subArgs, "--short") {
			fmt.Fprintln(stdout, composeVersion)
		} else {
			fmt.Fprintf(stdout, "Docker Compose version v%s\n", composeVersion)
		}
	case "config":
		fmt.Fprint(stdout, renderedProject(inv.project, image(inv.file), revision(inv.file)))
	case "up", "start", "restart":
		if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
			return 1
		}
		if err := os.WriteFile(state, []byte(image(inv.file)+"\n"), 0o644); err != nil {
			return 1
		}
	case "down", "stop", "rm":
		os.Remove(state)
	case "ps":
		if _, err := os.Stat(state); err == nil {
			printContainer(stdout, inv)
		}
	}
	// pull, logs, exec, kill, ...: recorded, nothing to say.
	return 0
}

func answerDocker(dir string, inv invocation, stdin io.Reader, stdout, stderr io.Writer) int {
	switch inv.sub {
	case "ps":
		return psProject(dir, inv.project, inv.subArgs, stdout)
	case "inspect":
		return inspectContainers(dir, inv.subArgs, stdout, stderr)
	case "container":
		if len(inv.subArgs) > 0 && inv.subArgs[0] == "inspect" {
			return inspectContainers(dir, inv.subArgs[1:], stdout, stderr)
		}
	case "image":
		if len(inv.subArgs) > 0 && inv.subArgs[0] == "inspect" {
			return inspectImages(inv.subArgs[1:], stdout)
		}
	case "login":
		io.Copy(io.Discard, stdin) // the token, --password-stdin
		fmt.Fprintln(stdout, "Login Succeeded")
	case "version":
		fmt.Fprintln(stdout, "Docker version 20.10.24+dfsg1, build 297e128")
	case "info":
		fmt.Fprintln(stdout, "Server Version: 20.10.24+dfsg1")
	}
	return 0
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}

var revField = regexp.MustCompile(`"?REV"?\s*[:=]\s*"?([A-Za-z0-9_.-]+)`)

// revision is the REV environment value of the bench's compose file: the one
// thing a bench commit changes, so that a new commit renders a new project.
func revision(file []byte) string {
	if m := revField.FindSubmatch(file); m != nil {
		return string(m[1])
	}
	return "0"
}

var imageField = regexp.MustCompile(`"?image"?\s*:\s*"?([A-Za-z0-9_.:/@-]+)`)

// image is the image of the bench's compose file, in YAML or rendered JSON.
func image(file []byte) string {
	if m := imageField.FindSubmatch(file); m != nil {
		return string(m[1])
	}
	return "pgo-bench-busybox:1"
}

// renderedProject is what "docker compose config --format json" (2.40.3) prints
// for the bench's compose file; the shape was taken from the real plugin.
func renderedProject(project, image, rev string) string {
	return fmt.Sprintf(`{
  "name": %q,
  "networks": {
    "default": {
      "name": %q,
      "ipam": {}
    }
  },
  "services": {
    "web": {
      "command": [
        "httpd",
        "-f"
      ],
      "entrypoint": null,
      "environment": {
        "REV": %q
      },
      "image": %q,
      "networks": {
        "default": null
      }
    }
  }
}
`, project, project+"_default", rev, image)
}

// printContainer answers "compose ps" for an up project: one running web
// container, in the format asked for.
func printContainer(stdout io.Writer, inv invocation) {
	name := inv.project + "-web-1"
	switch {
	case hasArg(inv.subArgs, "-q") || hasArg(inv.subArgs, "--quiet"):
		fmt.Fprintln(stdout, "0123456789ab")
	case hasArg(inv.subArgs, "json") || hasArg(inv.subArgs, "--format=json"):
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"Command":"\"httpd -f\"","CreatedAt":"2026-01-01 00:00:00 +0000 UTC","ExitCode":0,"Health":"","ID":"0123456789ab","Image":"pgo-test-busybox:latest","Labels":"com.docker.compose.project=%s,com.docker.compose.service=web","LocalVolumes":"0","Mounts":"","Name":%q,"Names":%q,"Networks":"%s_default","Ports":"","Project":%q,"Publishers":[],"RunningFor":"1 minute ago","Service":"web","Size":"0B","State":"running","Status":"Up 1 minute"}`,
			inv.project, name, name, inv.project, inv.project)
		fmt.Fprintln(stdout, b.String())
	default:
		fmt.Fprintln(stdout, "NAME   IMAGE   COMMAND   SERVICE   CREATED   STATUS   PORTS")
		fmt.Fprintf(stdout, "%s   pgo-test-busybox:latest   \"httpd -f\"   web   1 minute ago   Up 1 minute\n", name)
	}
}
