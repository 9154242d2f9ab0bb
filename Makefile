# vethd — build, test, demo, benchmark, install.
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GO      ?= go
LDFLAGS := -X main.version=$(VERSION)
# Where build puts the binaries (the end-to-end test builds out of the tree).
BUILDDIR ?= bin

SBINDIR       ?= $(PREFIX)/sbin
BINDIR        ?= $(PREFIX)/bin
UNITDIR       ?= $(PREFIX)/lib/systemd/system
# systemd reads presets from /usr/lib and /usr/local/lib (and /etc, /run).
PRESETDIR     ?= $(PREFIX)/lib/systemd/system-preset
# dbus-daemon reads system policies from /usr/share/dbus-1/system.d and
# /etc/dbus-1/system.d only: a /usr/local install puts it in /etc.
# zsh looks in vendor-completions under /usr and site-functions elsewhere.
# udev, NetworkManager and systemd-networkd read /usr/lib and /etc only,
# so a /usr/local install puts their files in /etc too.
ifeq ($(PREFIX),/usr)
DBUSPOLICYDIR ?= /usr/share/dbus-1/system.d
ZSHCOMPDIR    ?= /usr/share/zsh/vendor-completions
UDEVRULESDIR  ?= /usr/lib/udev/rules.d
NMCONFDIR     ?= /usr/lib/NetworkManager/conf.d
NETWORKDDIR   ?= /usr/lib/systemd/network
else
DBUSPOLICYDIR ?= /etc/dbus-1/system.d
ZSHCOMPDIR    ?= $(PREFIX)/share/zsh/site-functions
UDEVRULESDIR  ?= /etc/udev/rules.d
NMCONFDIR     ?= /etc/NetworkManager/conf.d
NETWORKDDIR   ?= /etc/systemd/network
endif
# dhclient (isc-dhcp-client) runs the exit hooks in /etc/dhcp only.
DHCLIENTHOOKDIR ?= /etc/dhcp/dhclient-exit-hooks.d
MANDIR        ?= $(PREFIX)/share/man
DOCDIR        ?= $(PREFIX)/share/doc/vethd
BASHCOMPDIR   ?= $(PREFIX)/share/bash-completion/completions

UNITS      := vethd@.service vethd.service
PRESET     := 80-vethd.preset
DBUSPOLICY := io.github.vethd.Bridge1.conf
UDEVRULES  := 86-vethd.rules
NMCONF     := vethd.conf
NETWORKD   := 10-vethd-peer.network

.PHONY: all build test demo bench install uninstall clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BUILDDIR)/vethd ./cmd/vethd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BUILDDIR)/vethctl ./cmd/vethctl

test:
	./scripts/test.sh

demo:
	./demo/demo.sh

bench:
	./bench/run.sh

# The units name /usr/sbin/vethd; ExecStart= is rewritten to $(SBINDIR).
install: build
	install -D -m 0755 $(BUILDDIR)/vethd $(DESTDIR)$(SBINDIR)/vethd
	install -D -m 0755 $(BUILDDIR)/vethctl $(DESTDIR)$(BINDIR)/vethctl
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do \
		sed 's|^ExecStart=/usr/sbin/vethd|ExecStart=$(SBINDIR)/vethd|' dist/systemd/$$u \
			>$(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -D -m 0644 dist/systemd/$(PRESET) $(DESTDIR)$(PRESETDIR)/$(PRESET)
	install -D -m 0644 dist/dbus/$(DBUSPOLICY) $(DESTDIR)$(DBUSPOLICYDIR)/$(DBUSPOLICY)
	install -D -m 0644 dist/dhclient/vethd $(DESTDIR)$(DHCLIENTHOOKDIR)/vethd
	install -D -m 0644 dist/udev/$(UDEVRULES) $(DESTDIR)$(UDEVRULESDIR)/$(UDEVRULES)
	install -D -m 0644 dist/NetworkManager/$(NMCONF) $(DESTDIR)$(NMCONFDIR)/$(NMCONF)
	install -D -m 0644 dist/networkd/$(NETWORKD) $(DESTDIR)$(NETWORKDDIR)/$(NETWORKD)
	install -D -m 0644 dist/vethd/veth1.conf.example $(DESTDIR)$(DOCDIR)/examples/veth1.conf
	install -D -m 0644 docs/vethd.8 $(DESTDIR)$(MANDIR)/man8/vethd.8
	install -D -m 0644 docs/vethctl.1 $(DESTDIR)$(MANDIR)/man1/vethctl.1
	install -D -m 0644 docs/vethd.conf.5 $(DESTDIR)$(MANDIR)/man5/vethd.conf.5
	install -D -m 0644 dist/completions/vethctl.bash $(DESTDIR)$(BASHCOMPDIR)/vethctl
	install -D -m 0644 dist/completions/_vethctl $(DESTDIR)$(ZSHCOMPDIR)/_vethctl

# Removes what install put there (the same variables must be given).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/vethd $(DESTDIR)$(BINDIR)/vethctl
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(PRESETDIR)/$(PRESET)
	rm -f $(DESTDIR)$(DBUSPOLICYDIR)/$(DBUSPOLICY)
	rm -f $(DESTDIR)$(DHCLIENTHOOKDIR)/vethd $(DESTDIR)$(UDEVRULESDIR)/$(UDEVRULES)
	rm -f $(DESTDIR)$(NMCONFDIR)/$(NMCONF) $(DESTDIR)$(NETWORKDDIR)/$(NETWORKD)
	rm -f $(DESTDIR)$(DOCDIR)/examples/veth1.conf
	rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	rm -f $(DESTDIR)$(MANDIR)/man8/vethd.8 $(DESTDIR)$(MANDIR)/man1/vethctl.1 $(DESTDIR)$(MANDIR)/man5/vethd.conf.5
	rm -f $(DESTDIR)$(BASHCOMPDIR)/vethctl $(DESTDIR)$(ZSHCOMPDIR)/_vethctl

clean:
	rm -rf bin
