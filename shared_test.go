package main

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestNetRawDroppedOnSharedNetworks(t *testing.T) {
	project := `{"name":"shop","networks":{
		"default":{"name":"shop_default"},
		"proxy":{"name":"caddy_proxy","external":true},
		"front":{"name":"shop_front"}},
	"services":{
		"web":{"networks":{"default":null,"proxy":null}},
		"sidecar":{"network_mode":"service:web"},
		"pinger":{"networks":{"default":null},"cap_add":["NET_RAW"]},
		"edge":{"networks":{"front":null},"cap_add":["CAP_NET_RAW","NET_BIND_SERVICE"]},
		"locked":{"networks":{"proxy":null},"cap_drop":["ALL"]}}}`
	proj, err := decodeProject([]byte(project))
	if err != nil {
		t.Fatal(err)
	}
	// Another configured service lists shop_front: shop's own network is shared too.
	dropNetRawOnSharedNetworks(proj, map[string]bool{"shop_front": true})
	services := jsonObject(proj["services"])
	caps := func(name, key string) []string {
		var out []string
		for _, c := range jsonList(jsonObject(services[name])[key]) {
			out = append(out, jsonString(c))
		}
		return out
	}
	for _, name := range []string{"web", "sidecar", "edge"} {
		if !slices.Contains(caps(name, "cap_drop"), "NET_RAW") || slices.ContainsFunc(caps(name, "cap_add"), func(c string) bool { return capName(c) == "NET_RAW" }) {
			b, _ := json.Marshal(services[name])
			t.Errorf("%s keeps NET_RAW on a shared network: %s", name, b)
		}
	}
	if got := caps("edge", "cap_add"); !slices.Equal(got, []string{"NET_BIND_SERVICE"}) {
		t.Errorf("edge's other capabilities changed: %v", got)
	}
	if got := caps("pinger", "cap_add"); !slices.Equal(got, []string{"NET_RAW"}) || len(caps("pinger", "cap_drop")) != 0 {
		t.Errorf("a service on its own network only lost NET_RAW: add %v drop %v", got, caps("pinger", "cap_drop"))
	}
	if got := caps("locked", "cap_drop"); !slices.Equal(got, []string{"ALL"}) {
		t.Errorf("cap_drop ALL became %v", got)
	}
}
