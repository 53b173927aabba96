package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// The CLI's views of a container and an image, for "docker ps --format",
// "docker inspect --format" and "docker image inspect": pgod's formats are
// Go templates over these fields, so the substitute executes them as the
// CLI does rather than guess at their output.

type fakeContainer struct {
	ID           string `json:"Id"`
	Name         string // "/NAME-web-1", as the engine names it
	Image        string // the image's id
	RestartCount int
	Config       struct {
		Image  string
		Labels map[string]string
	}
	State struct {
		Status    string
		Running   bool
		ExitCode  int
		StartedAt string
		Health    *struct{ Status string } `json:",omitempty"`
	}
}

// psRow is a line of "docker ps": .Names, .State, .Label "key", ...
type psRow struct {
	Names, State, Image, Status, ID string
	labels                          map[string]string
}

func (r psRow) Label(key string) string { return r.labels[key] }

// upContainer is project's one container, or false when it is not up.
func upContainer(dir, project string) (fakeContainer, bool) {
	image, err := os.ReadFile(filepath.Join(dir, "state", project))
	if err != nil || project == "" {
		return fakeContainer{}, false
	}
	var c fakeContainer
	c.ID = hash(project)
	c.Name = "/" + project + "-web-1"
	c.Config.Image = strings.TrimSpace(string(image))
	c.Image = "sha256:" + hash(c.Config.Image)
	c.Config.Labels = map[string]string{
		"com.docker.compose.project":          project,
		"com.docker.compose.service":          "web",
		"com.docker.compose.oneoff":           "False",
		"com.docker.compose.container-number": "1",
	}
	c.State.Status, c.State.Running = "running", true
	// An hour ago: settled, as a container that has run a while.
	c.State.StartedAt = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	return c, true
}

// projectOfContainer is the project of a container name NAME-web-1.
func projectOfContainer(name string) string {
	return strings.TrimSuffix(strings.TrimPrefix(name, "/"), "-web-1")
}

// formatEach prints v with the --format template, or as the CLI's JSON.
func formatEach(stdout io.Writer, format string, vs []any) int {
	if format == "" {
		data, _ := json.MarshalIndent(vs, "", "    ")
		fmt.Fprintln(stdout, string(data))
		return 0
	}
	// The CLI unescapes \t and \n in a format, as pgod's ps format relies on.
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	t, err := template.New("format").Parse(format)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakedocker: template:", err)
		return 1
	}
	for _, v := range vs {
		if err := t.Execute(stdout, v); err != nil {
			fmt.Fprintln(os.Stderr, "fakedocker: template:", err)
			return 1
		}
		fmt.Fprintln(stdout)
	}
	return 0
}

// cliArgs splits a subcommand's arguments into --format and the operands.
func cliArgs(args []string) (format string, operands []string) {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--":
			return format, append(operands, args[i+1:]...)
		case a == "--format" || a == "-f" || a == "--type" || a == "--filter":
			if a == "--format" || a == "-f" {
				format = args[min(i+1, len(args)-1)]
			}
			i++
		case strings.HasPrefix(a, "--format="):
			format = strings.TrimPrefix(a, "--format=")
		case strings.HasPrefix(a, "-"):
		default:
			operands = append(operands, a)
		}
	}
	return format, operands
}

// inspectContainers answers "docker inspect --type container NAME...".
func inspectContainers(dir string, args []string, stdout, stderr io.Writer) int {
	format, names := cliArgs(args)
	var found []any
	code := 0
	for _, n := range names {
		c, ok := upContainer(dir, projectOfContainer(n))
		if !ok {
			fmt.Fprintf(stderr, "Error: No such container: %s\n", n)
			code = 1
			continue
		}
		found = append(found, c)
	}
	if rc := formatEach(stdout, format, found); rc != 0 {
		return rc
	}
	return code
}

// inspectImages answers "docker image inspect NAME...": every image is there.
func inspectImages(args []string, stdout io.Writer) int {
	format, names := cliArgs(args)
	var images []any
	for _, n := range names {
		images = append(images, map[string]any{"Id": "sha256:" + hash(n), "RepoTags": []string{n}, "Config": map[string]any{"Labels": nil}})
	}
	return formatEach(stdout, format, images)
}

// psProject answers "docker ps -a --filter label=...project=NAME --format F".
func psProject(dir, project string, args []string, stdout io.Writer) int {
	format, _ := cliArgs(args)
	c, ok := upContainer(dir, project)
	if !ok {
		return 0
	}
	if format == "" {
		format = "{{.ID}}\t{{.Image}}\t{{.Status}}\t{{.Names}}"
	}
	row := psRow{Names: strings.TrimPrefix(c.Name, "/"), State: "running", Image: c.Config.Image, Status: "Up 1 hour", ID: c.ID[:12], labels: c.Config.Labels}
	return formatEach(stdout, format, []any{row})
}
