# vethd — build, test, demo, benchmark, install.
PREFIX  ?= /usr/local
DESTDIR ?=
# The version is the VERSION file's (a package's is debian/changelog's,
# which must say the same: debian/rules checks). A build in a git checkout
# that is not at the tag vVERSION adds where it is, as git describe says it
# (0.11.0+git.d429d7c-dirty); without git, or where git refuses (a tree of
# another user), the plain VERSION; without a VERSION file (a partial copy
# of the tree) 0+unknown. VERSION=... on the command line wins.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell v=$$(cat VERSION 2>/dev/null) || v=0+unknown; d=$$(git describe --tags --always --dirty 2>/dev/null) || d=; \
	if [ -z "$$d" ] || [ "$$d" = "v$$v" ]; then echo "$$v"; else echo "$$v+git.$$d"; fi)
endif
GO      ?= go
# go build's flags beyond the version: GOBUILDFLAGS (e.g. -trimpath
# -buildmode=pie) and GOLDFLAGS (more -ldflags) are empty for a developer's
# build; debian/rules sets Debian's (docs/packaging.md).
GOBUILDFLAGS ?=
GOLDFLAGS    ?=
# Without cgo: vethd and vethctl need none of their own (the standard
# library's net and os/user would bring it), and a binary that maps no libc
# keeps 1.1-1.7 MiB less resident per process (docs/performance.md, "Memory
# of the veth kind"). CGO_ENABLED=1 on the command line gives the cgo build.
CGO_ENABLED  ?= 0
# Where build puts the binaries (the end-to-end test builds out of the tree).
BUILDDIR ?= bin

SBINDIR       ?= $(PREFIX)/sbin
BINDIR        ?= $(PREFIX)/bin
UNITDIR       ?= $(PREFIX)/lib/systemd/system
# systemd reads presets from /usr/lib and /usr/local/lib (and /etc, /run).
PRESETDIR     ?= $(PREFIX)/lib/systemd/system-preset
# systemd-sysusers reads /usr/lib/sysusers.d and /usr/local/lib/sysusers.d.
SYSUSERSDIR   ?= $(PREFIX)/lib/sysusers.d
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
SYSUSERS   := vethd.conf
# vethd-metrics.service writes `vethctl metrics` for node_exporter's
# textfile collector; vethd-metrics.timer runs it every minute. Installed
# next to the other units, the timer is not enabled (nor by the preset):
# `systemctl enable --now vethd-metrics.timer` where node_exporter runs.
METRICSUNITS := vethd-metrics.service vethd-metrics.timer
# The guide and the notes it links to, installed in DOCDIR.
DOCS       := docs/guide.md docs/routing.md docs/networkmanager.md

# The directories install puts files in. Those that did not exist are
# listed in DIRLIST (one path a line, without DESTDIR) for uninstall,
# which removes them again if they are empty, and no other directory
# (a package build, where dpkg owns the directories, sets DIRLIST=).
INSTALLDIRS := $(SBINDIR) $(BINDIR) $(UNITDIR) $(PRESETDIR) $(SYSUSERSDIR) \
	$(DBUSPOLICYDIR) $(DHCLIENTHOOKDIR) $(UDEVRULESDIR) $(NMCONFDIR) \
	$(NETWORKDDIR) $(DOCDIR)/examples $(MANDIR)/man1 $(MANDIR)/man5 \
	$(MANDIR)/man8 $(BASHCOMPDIR) $(ZSHCOMPDIR)
DIRLIST    ?= $(DOCDIR)/installed-dirs

# The binaries are real files, built again only when a Go source, go.mod or
# go.sum is newer than they are: `make install` after `make` builds
# nothing (`make -B` forces a build, e.g. for another VERSION).
GOSRC := $(shell find cmd internal pkg -name '*.go' ! -name '*_test.go') go.mod go.sum
BINS  := $(BUILDDIR)/vethd $(BUILDDIR)/vethctl

.PHONY: all build test demo bench install uninstall clean deb

all: build

build: $(BINS)

# As root, make does not build into a directory of another user (the
# tree's owner, bin/ in a fresh clone): `sudo make install` would leave
# root's files there. It says to run `make` as that user first; then
# `make install` as root only installs. (A BUILDDIR of root's own, as the
# end-to-end test gives, is built into.) go build leaves an up-to-date
# output as it is: touch marks it checked.
$(BINS): $(BUILDDIR)/%: $(GOSRC)
	@d=$(@D); while [ ! -e "$$d" ]; do d=$$(dirname "$$d"); done; \
	if [ "$$(id -u)" = 0 ] && [ "$$(stat -c %u "$$d")" != 0 ]; then \
		u=$$(stat -c %U "$$d"); \
		echo "make: $@ is missing or older than the sources, and make runs as root in $$d, which is $$u's: the build would leave root's files there." >&2; \
		echo "make: run 'make' as $$u first (then 'make install' as root installs what it built)." >&2; \
		exit 1; \
	fi
	CGO_ENABLED=$(CGO_ENABLED) $(GO) build$(if $(GOBUILDFLAGS), $(GOBUILDFLAGS)) -ldflags "-X main.version=$(VERSION)$(if $(GOLDFLAGS), $(GOLDFLAGS))" -o $@ ./cmd/$*
	@touch $@

test:
	./scripts/test.sh

demo:
	./demo/demo.sh

bench:
	./bench/run.sh

# The units name /usr/sbin/vethd; ExecStart= is rewritten to $(SBINDIR).
# The units run vethd as the user vethd: installed into the running system
# (no DESTDIR), systemd-sysusers creates it now, before the D-Bus policy
# that names it is installed (dbus-daemon drops a rule of an unknown user
# when it loads the file). Into a DESTDIR (a package, the e2e stage) the
# user is made at the next boot (systemd-sysusers.service) or by the
# package's postinst. uninstall leaves the user (files may still be its).
install: $(BINS)
	@new=; for d in $(INSTALLDIRS); do \
		while [ "$$d" != / ] && [ ! -d "$(DESTDIR)$$d" ]; do \
			new="$$new $$d"; d=$$(dirname "$$d"); \
		done; \
	done; \
	install -d -m 0755 $(addprefix $(DESTDIR),$(INSTALLDIRS)) && \
	if [ -n "$(DIRLIST)" ]; then \
		{ cat "$(DESTDIR)$(DIRLIST)" 2>/dev/null; printf '%s\n' $$new; } | sed '/^$$/d' | sort -u >"$(DESTDIR)$(DIRLIST).new" && \
		mv "$(DESTDIR)$(DIRLIST).new" "$(DESTDIR)$(DIRLIST)" && chmod 0644 "$(DESTDIR)$(DIRLIST)"; \
	fi
	install -D -m 0644 dist/sysusers/$(SYSUSERS) $(DESTDIR)$(SYSUSERSDIR)/$(SYSUSERS)
	if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
		systemd-sysusers $(SYSUSERSDIR)/$(SYSUSERS) || exit 1; \
	fi
	install -D -m 0755 $(BUILDDIR)/vethd $(DESTDIR)$(SBINDIR)/vethd
	install -D -m 0755 $(BUILDDIR)/vethctl $(DESTDIR)$(BINDIR)/vethctl
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	for u in $(UNITS) $(METRICSUNITS); do \
		sed -e 's|^ExecStart=/usr/sbin/vethd|ExecStart=$(SBINDIR)/vethd|' \
			-e 's|^ExecStart=/usr/bin/vethctl|ExecStart=$(BINDIR)/vethctl|' dist/systemd/$$u \
			>$(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -D -m 0644 dist/systemd/$(PRESET) $(DESTDIR)$(PRESETDIR)/$(PRESET)
	install -D -m 0644 dist/dbus/$(DBUSPOLICY) $(DESTDIR)$(DBUSPOLICYDIR)/$(DBUSPOLICY)
	install -D -m 0644 dist/dhclient/vethd $(DESTDIR)$(DHCLIENTHOOKDIR)/vethd
	install -D -m 0644 dist/udev/$(UDEVRULES) $(DESTDIR)$(UDEVRULESDIR)/$(UDEVRULES)
	install -D -m 0644 dist/NetworkManager/$(NMCONF) $(DESTDIR)$(NMCONFDIR)/$(NMCONF)
	install -D -m 0644 dist/networkd/$(NETWORKD) $(DESTDIR)$(NETWORKDDIR)/$(NETWORKD)
	install -D -m 0644 dist/vethd/veth1.conf.example $(DESTDIR)$(DOCDIR)/examples/veth1.conf
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	sed 's|/usr/share/doc/vethd/|$(DOCDIR)/|g' docs/vethd.8 >$(DESTDIR)$(MANDIR)/man8/vethd.8
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/vethd.8
	install -D -m 0644 docs/vethctl.1 $(DESTDIR)$(MANDIR)/man1/vethctl.1
	install -D -m 0644 docs/vethd.conf.5 $(DESTDIR)$(MANDIR)/man5/vethd.conf.5
	install -D -m 0644 dist/completions/vethctl.bash $(DESTDIR)$(BASHCOMPDIR)/vethctl
	install -D -m 0644 dist/completions/_vethctl $(DESTDIR)$(ZSHCOMPDIR)/_vethctl

# Removes what install put there (the same variables must be given).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/vethd $(DESTDIR)$(BINDIR)/vethctl
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS) $(METRICSUNITS))
	rm -f $(DESTDIR)$(PRESETDIR)/$(PRESET)
	rm -f $(DESTDIR)$(SYSUSERSDIR)/$(SYSUSERS)
	rm -f $(DESTDIR)$(DBUSPOLICYDIR)/$(DBUSPOLICY)
	rm -f $(DESTDIR)$(DHCLIENTHOOKDIR)/vethd $(DESTDIR)$(UDEVRULESDIR)/$(UDEVRULES)
	rm -f $(DESTDIR)$(NMCONFDIR)/$(NMCONF) $(DESTDIR)$(NETWORKDDIR)/$(NETWORKD)
	rm -f $(DESTDIR)$(DOCDIR)/examples/veth1.conf $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(DOCS)))
	rm -f $(DESTDIR)$(MANDIR)/man8/vethd.8 $(DESTDIR)$(MANDIR)/man1/vethctl.1 $(DESTDIR)$(MANDIR)/man5/vethd.conf.5
	rm -f $(DESTDIR)$(BASHCOMPDIR)/vethctl $(DESTDIR)$(ZSHCOMPDIR)/_vethctl
	@# The directories install created, deepest first, if empty; without a
	@# list (an install by an older Makefile) only vethd's own doc directory.
	@dirs=$$(cat "$(DESTDIR)$(DIRLIST)" 2>/dev/null) || dirs="$(DOCDIR)/examples $(DOCDIR)"; \
	[ -z "$(DIRLIST)" ] || rm -f "$(DESTDIR)$(DIRLIST)"; \
	for d in $$(printf '%s\n' $$dirs | sort -r); do \
		[ -n "$(DESTDIR)" ] || case "$$d" in /|/etc|/usr|/usr/local|/var|/opt) continue;; esac; \
		rmdir "$(DESTDIR)$$d" 2>/dev/null || true; \
	done

# make deb: the Debian package (debian/, dpkg-buildpackage with debhelper;
# docs/packaging.md), built in a copy of the tree (DEBDIR/src) so that the
# build leaves nothing in the tree. DEBDIR gets the .deb, its -dbgsym, the
# source package, .buildinfo and .changes; lintian checks them and fails
# the target on any error or warning. Needs debhelper and lintian
# (scripts/deps.sh) and Go (PATH or /usr/local/go). As root in a tree of
# another user, give DEBDIR (or BUILDDIR) outside it: make refuses to
# leave root's files there, as build does.
DEBDIR ?= $(BUILDDIR)/deb
DEBGO  := $(or $(shell command -v $(GO) 2>/dev/null),/usr/local/go/bin/go)
deb:
	@d=$(DEBDIR); while [ ! -e "$$d" ]; do d=$$(dirname "$$d"); done; \
	if [ "$$(id -u)" = 0 ] && [ "$$(stat -c %u "$$d")" != 0 ]; then \
		echo "make: deb would leave root's files in $$d, which is $$(stat -c %U "$$d")'s: run 'make deb' as that user, or give DEBDIR=/elsewhere." >&2; \
		exit 1; \
	fi
	rm -rf $(DEBDIR)/src && mkdir -p $(DEBDIR)/src
	rm -f $(DEBDIR)/vethd_* $(DEBDIR)/vethd-dbgsym_*
	tar -c --exclude=./.git --exclude=./bin --exclude=./vethd --exclude=./vethctl \
		--exclude='*.test' --exclude=./$(DEBDIR) . | tar -x -C $(DEBDIR)/src
	cd $(DEBDIR)/src && PATH="$$PATH:$(dir $(DEBGO))" \
		GOCACHE="$$($(DEBGO) env GOCACHE)" GOMODCACHE="$$($(DEBGO) env GOMODCACHE)" \
		dpkg-buildpackage --no-sign
	lintian --fail-on error,warning --display-info --info $(DEBDIR)/vethd_*.changes
	@ls -l $(DEBDIR)/*.deb

clean:
	rm -rf bin
