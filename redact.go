package main

// Secrets never show: registry tokens, credentials in repository URLs, env
// values and webhook secrets are replaced by "***" in everything pgo prints.

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// redacted stands in for a secret.
const redacted = "***"

// minSecretLen is the shortest secret redact replaces: replacing every "1" or
// "on" in a log line for an env value of that spelling would garble the line
// and hide nothing worth hiding.
const minSecretLen = 4

// redactURL hides the credentials of a URL: the password in user:password@,
// or a lone token in http(s)://TOKEN@host. A user name alone on other schemes
// (ssh://git@host) is not a secret and stays.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	userinfo, after, ok := splitUserinfo(rest)
	if !ok {
		return u
	}
	user, _, hasPassword := strings.Cut(userinfo, ":")
	switch {
	case hasPassword:
		userinfo = user + ":" + redacted
	case isHTTP(scheme):
		userinfo = redacted
	default:
		return u
	}
	return scheme + "://" + userinfo + "@" + after
}

// RedactedRepository is the repository URL safe to print.
func (s *Service) RedactedRepository() string { return redactURL(s.Repository) }

// splitUserinfo splits what follows "scheme://" at the "@" that ends the
// userinfo. A token holding a "/" ends the authority early for a strict
// parser; "user:to/ken@host" still counts as userinfo here, so it is hidden
// rather than shown.
func splitUserinfo(rest string) (userinfo, after string, ok bool) {
	end := strings.IndexAny(rest, "?#")
	if end < 0 {
		end = len(rest)
	}
	authEnd := strings.IndexByte(rest[:end], '/')
	if authEnd < 0 {
		authEnd = end
	}
	if at := strings.LastIndexByte(rest[:authEnd], '@'); at >= 0 {
		return rest[:at], rest[at+1:], true
	}
	if at := strings.IndexByte(rest[authEnd:end], '@'); at >= 0 && strings.Contains(rest[:authEnd], ":") {
		at += authEnd
		return rest[:at], rest[at+1:], true
	}
	return "", "", false
}

func isHTTP(scheme string) bool {
	s := strings.ToLower(scheme)
	return s == "http" || s == "https"
}

// urlSecrets returns the credentials in a URL, as written and percent-decoded.
func urlSecrets(u string) []string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return nil
	}
	userinfo, _, ok := splitUserinfo(rest)
	if !ok {
		return nil
	}
	user, secret, hasPassword := strings.Cut(userinfo, ":")
	if !hasPassword {
		if !isHTTP(scheme) {
			return nil
		}
		secret = user
	}
	secrets := []string{secret}
	if dec, err := url.PathUnescape(secret); err == nil && dec != secret {
		secrets = append(secrets, dec)
	}
	return secrets
}

// secrets lists every secret of the service, for redact.
func (s *Service) secrets() []string {
	var secrets []string
	for _, r := range s.Registries {
		if login, ok := parseRegistry(r); ok {
			secrets = append(secrets, login.Token)
		}
	}
	secrets = append(secrets, urlSecrets(s.Repository)...)
	for _, e := range s.Env {
		if _, value, ok := strings.Cut(e, "="); ok {
			secrets = append(secrets, value)
		}
	}
	if s.WebhookSecret != "" {
		secrets = append(secrets, s.WebhookSecret)
	}
	return secrets
}

// urlCredentialsRE finds user:password@ in any URL, for credentials that are in no list (git echoing a redirect).
var urlCredentialsRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):[^@\s/]+@`)

// redact replaces every occurrence of each secret in s by "***", and the
// password of any URL. Longer secrets go first, so a secret that contains
// another is hidden whole; secrets shorter than minSecretLen are left alone.
func redact(s string, secrets []string) string {
	var list []string
	seen := map[string]bool{}
	for _, sec := range secrets {
		if len(sec) >= minSecretLen && !seen[sec] {
			seen[sec] = true
			list = append(list, sec)
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return len(list[i]) > len(list[j]) })
	if len(list) > 0 {
		pairs := make([]string, 0, 2*len(list))
		for _, sec := range list {
			pairs = append(pairs, sec, redacted)
		}
		s = strings.NewReplacer(pairs...).Replace(s)
	}
	return urlCredentialsRE.ReplaceAllString(s, "${1}:"+redacted+"@")
}
