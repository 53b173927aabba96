package main

import (
	"reflect"
	"testing"
)

func TestRebuilt(t *testing.T) {
	running := map[string]string{"web": "t1", "side": "s1", "gone": "g1"}
	next := map[string]string{"web": "t2", "side": "s1", "new": "n1"}
	if got := rebuilt(running, next); !reflect.DeepEqual(got, []string{"new", "web"}) {
		t.Errorf("rebuilt = %v, want [new web]", got)
	}
	if got := rebuilt(nil, nil); len(got) != 0 {
		t.Errorf("rebuilt of nothing = %v", got)
	}
}

func TestInCheckout(t *testing.T) {
	w := &worker{checkout: "/var/lib/pgo/web"}
	for path, want := range map[string]string{
		"/var/lib/pgo/web":           "",
		"/var/lib/pgo/web/app":       "app",
		"/var/lib/pgo/web/app/x/../": "app",
	} {
		if got, ok := w.inCheckout(path); !ok || got != want {
			t.Errorf("inCheckout(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
	for _, path := range []string{"/var/lib/pgo/webx", "/var/lib/pgo", "/data/web", "app", "https://example.org/repo.git"} {
		if got, ok := w.inCheckout(path); ok {
			t.Errorf("inCheckout(%q) = %q, want outside", path, got)
		}
	}
}
