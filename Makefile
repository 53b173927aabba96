# pgo: build, test and package. "make run" starts a demo daemon; "make test" is the one test command.
SHELL := /bin/bash
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -s -w -X main.version=$(VERSION)
GO       ?= go
PREFIX   ?= /usr/local
FUZZTIME ?= 5s
FUZZ_TARGETS = $(shell grep -ho '^func Fuzz[A-Za-z0-9_]*' *_test.go | sed 's/^func //')

.PHONY: all build pgo run test vet unit fuzz e2e bench deb install clean

all: build

build: pgo
	ln -sf pgo pgod
	ln -sf pgo pgoctl

# Always rebuilt (the build cache keeps it cheap) so the version stamp is never stale.
pgo:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o pgo .

# The demo asks sudo for root itself (or says how to be root without it);
# make run PGO_DEMO_SSH_PORT=2223 PGO_DEMO_METRICS_PORT=9113 moves its ports.
run: build
	./scripts/run-demo

test: vet unit fuzz e2e

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./... && staticcheck -tags e2e ./...; else echo "staticcheck not installed, skipped"; fi

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) . || exit 1; \
	done

# The end-to-end tests run a pgo built with the race detector too, which stops
# at the first data race it sees in the daemon.
e2e: build
	$(GO) build -race -ldflags "-X main.version=$(VERSION)" -o pgo-race .
	PGO_BINARY=$(CURDIR)/pgo-race GORACE=halt_on_error=1 $(GO) test -race -tags e2e -count=1 -timeout 40m -run '^TestE2E' -v . 2>&1 | tee e2e.log | grep -E '^(=== RUN|--- |E2E SKIPPED|PASS|FAIL|ok )|_test.go:[0-9]+:'; exit $${PIPESTATUS[0]}

bench: build
	./scripts/bench

deb: build
	./debian/build-deb $(VERSION)

install: build
	install -D -m 0755 pgo $(DESTDIR)$(PREFIX)/bin/pgo
	ln -sf pgo $(DESTDIR)$(PREFIX)/bin/pgod
	ln -sf pgo $(DESTDIR)$(PREFIX)/bin/pgoctl
	install -D -m 0644 pgo.8 $(DESTDIR)$(PREFIX)/share/man/man8/pgo.8
	ln -sf pgo.8 $(DESTDIR)$(PREFIX)/share/man/man8/pgod.8
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	ln -sf ../man8/pgo.8 $(DESTDIR)$(PREFIX)/share/man/man1/pgoctl.1

clean:
	rm -f pgo pgo-race pgod pgoctl e2e.log *.deb
