package main

import "testing"

func TestNamespaceOwner(t *testing.T) {
	n := newNamespaces("shop", []string{"blog", "shop-web", "Caddy", "shop"})
	for name, want := range map[string]string{
		"shop":               "shop",
		"shop-db-1":          "shop",
		"shop_default":       "shop",
		"shop.caddy_proxy":   "shop",
		"SHOP-DB-1":          "shop",
		"shop-web":           "shop-web",
		"shop-web-1":         "shop-web",
		"shop-web-app-1":     "shop-web",
		"shop-webstore-1":    "shop",
		"blog-web-1":         "blog",
		"blog":               "blog",
		"caddy_proxy":        "caddy",
		"blogger":            "",
		"web":                "",
		"shopping-1":         "",
		"":                   "",
		"blog-web-1.example": "blog",
	} {
		if got := n.owner(name); got != want {
			t.Errorf("owner(%q) = %q; want %q", name, got, want)
		}
	}
	if n.foreign("shop-db-1") != "" || n.foreign("web") != "" || n.foreign("blog-web-1") != "blog" {
		t.Error("foreign: the project's own and nobody's names are not foreign; another's are")
	}
}

func TestImageRepo(t *testing.T) {
	for ref, want := range map[string][2]string{
		"postgres:16":      {"", "postgres"},
		"library/postgres": {"", "postgres"},
		"docker.io/library/postgres:16@sha256:ab": {"", "postgres"},
		"index.docker.io/shop/web":                {"", "shop/web"},
		"shop/web:1":                              {"", "shop/web"},
		"registry.example.org/shop/web:1.4":       {"registry.example.org", "shop/web"},
		"localhost:5000/shop/web":                 {"localhost:5000", "shop/web"},
		"localhost/x":                             {"localhost", "x"},
		"Shop-Web":                                {"", "shop-web"},
	} {
		if host, path := imageRepo(ref); host != want[0] || path != want[1] {
			t.Errorf("imageRepo(%q) = %q, %q; want %q, %q", ref, host, path, want[0], want[1])
		}
	}
}

func TestOwnImage(t *testing.T) {
	n := newNamespaces("shop", []string{"shop-web", "blog"})
	for ref, want := range map[string]bool{
		"shop-api":                      true,
		"shop-api:2":                    true,
		"shop_api":                      true,
		"shop/web":                      true,
		"shop/web/nginx:1":              true,
		"docker.io/shop/web:1":          true,
		"shop":                          false, // Docker Hub's library/shop
		"shop:1":                        false,
		"shop/":                         false,
		"shop-web":                      false, // the shop-web service's
		"shop-web-app":                  false,
		"blog-web":                      false,
		"postgres:16":                   false,
		"registry.example.org/shop/web": false,
		"localhost:5000/shop-api":       false,
		"shopping":                      false,
	} {
		if got := n.ownImage(ref); got != want {
			t.Errorf("ownImage(%q) = %v; want %v", ref, got, want)
		}
	}
}
