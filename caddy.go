package main

// writeCaddySnippet writes the Caddyfile snippet for every service's urls to
// path, atomically and only when its content changes; it reports whether it wrote.
func writeCaddySnippet(path string, services []*Service) (changed bool, err error) {
	return false, nil
}
