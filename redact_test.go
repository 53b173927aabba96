package main

import (
	"reflect"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"https://oauth2:glpat-abc123@gitlab.example.org/group/repo.git": "https://oauth2:***@gitlab.example.org/group/repo.git",
		"https://ghp_token123@github.com/o/r":                           "https://***@github.com/o/r",
		"HTTP://token1234@example.org":                                  "HTTP://***@example.org",
		"https://user:p%40ss%2Fword@example.org:8443/r?x=1#f":           "https://user:***@example.org:8443/r?x=1#f",
		"https://user:to@ken@example.org/r":                             "https://user:***@example.org/r",
		"https://user:to/ken@example.org/r":                             "https://user:***@example.org/r",
		"https://user:@example.org/r":                                   "https://user:***@example.org/r",
		"ssh://git@example.org:2222/r.git":                              "ssh://git@example.org:2222/r.git",
		"ssh://git:pw1234@example.org/r.git":                            "ssh://git:***@example.org/r.git",
		"git@github.com:o/r.git":                                        "git@github.com:o/r.git",
		"https://example.org/o/r":                                       "https://example.org/o/r",
		"https://example.org/o/r@v1":                                    "https://example.org/o/r@v1",
		"/srv/git/r.git":                                                "/srv/git/r.git",
		"":                                                              "",
	}
	for in, want := range tests {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestServiceSecrets(t *testing.T) {
	s := &Service{
		Name:          "web",
		User:          "web",
		Repository:    "https://oauth2:p%40ssword@gitlab.example.org/r.git",
		Registries:    []string{"regtoken1@ghcr.io", "robot:regtoken2@registry.example.org"},
		Env:           []string{"DB_PASSWORD=hunter22", "EMPTY=", "X=a=b"},
		WebhookSecret: "0123456789abcdef",
	}
	want := []string{"regtoken1", "regtoken2", "p%40ssword", "p@ssword", "hunter22", "", "a=b", "0123456789abcdef"}
	if got := s.secrets(); !reflect.DeepEqual(got, want) {
		t.Errorf("secrets() = %q, want %q", got, want)
	}
	if got, want := s.RedactedRepository(), "https://oauth2:***@gitlab.example.org/r.git"; got != want {
		t.Errorf("RedactedRepository() = %q, want %q", got, want)
	}
	bare := &Service{Repository: "https://tokentoken@github.com/o/r"}
	if got := bare.secrets(); !reflect.DeepEqual(got, []string{"tokentoken"}) {
		t.Errorf("secrets() of a token-only URL = %q", got)
	}
	if got := (&Service{Repository: "ssh://git@host/r"}).secrets(); len(got) != 0 {
		t.Errorf("secrets() of an ssh URL = %q, want none", got)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		secrets []string
		want    string
	}{
		{"each occurrence", "login abcd1234 then abcd1234", []string{"abcd1234"}, "login *** then ***"},
		{"longest first", "token abcd1234XYZ", []string{"abcd", "abcd1234XYZ"}, "token ***"},
		{"overlapping secrets", "xx secret-one-two xx", []string{"secret-one", "one-two-three", "secret-one-two"}, "xx *** xx"},
		{"short secrets are left alone", "on 1 off", []string{"on", "1", ""}, "on 1 off"},
		{"no secrets", "nothing to hide", nil, "nothing to hide"},
		{"replacement is not rescanned", "pw=abcd", []string{"abcd", "***="}, "pw=***"},
		{"credentials in any URL", "fatal: unable to access 'https://oauth2:unlisted-token@gitlab.example.org/r.git/': 403", nil,
			"fatal: unable to access 'https://oauth2:***@gitlab.example.org/r.git/': 403"},
		{"URL with port is not credentials", "cloning https://example.org:8443/r.git", nil, "cloning https://example.org:8443/r.git"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := redact(tc.in, tc.secrets); got != tc.want {
				t.Errorf("redact(%q, %q) = %q, want %q", tc.in, tc.secrets, got, tc.want)
			}
		})
	}
}
