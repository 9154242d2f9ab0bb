# vethd — build, test, demo, benchmark, install.
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GO      ?= go
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build test demo bench install clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/vethd ./cmd/vethd

test:
	./scripts/test.sh

demo:
	./demo/demo.sh

bench:
	./bench/run.sh

install: build
	install -D -m 0755 bin/vethd $(DESTDIR)$(PREFIX)/sbin/vethd
	install -D -m 0644 docs/vethd.8 $(DESTDIR)$(PREFIX)/share/man/man8/vethd.8

clean:
	rm -rf bin
