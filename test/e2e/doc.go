// Package e2e holds vethd's end-to-end tests: `make install` into a staging
// directory, then boot this machine's own OS in a throwaway systemd-nspawn
// container with the staged tree layered over its /usr, and drive the
// installed units with the container's real systemd and D-Bus.
//
// Run (as root; a container boots and powers off in a few seconds):
//
//	sudo go test -count=1 -v ./test/e2e
//	sudo go test -count=1 -v -run TestE2EBoot ./test/e2e
//
// Each container is
//
//	systemd-nspawn -D / --volatile=yes --private-network --register=no \
//	    --keep-unit -M vethd-e2e-PID-N \
//	    --overlay-ro=/usr:STAGE/usr:/usr [--bind=ETC:/etc] \
//	    -b systemd.mask=systemd-firstboot.service \
//	    systemd.mask=NetworkManager.service (and NM's other units)
//
// ([BootOptions].Netns and NetworkInterfaces boot it instead inside a
// test's network namespace with --network-interface=IF, as the recipe in
// docs/namespaces.md does: TestE2ENetworkInterface)
//
// so it has its own network namespace (nothing is attached to the machine's
// interfaces; its "eth0" is a veth made inside it by [Container.LAN]), a
// throwaway tmpfs for / and /etc, and the installed layout under /usr:
// units in /usr/lib/systemd/system, the preset in
// /usr/lib/systemd/system-preset, the D-Bus policy in
// /usr/share/dbus-1/system.d, binaries in /usr/sbin and /usr/bin. There is
// no preset of the harness's own: a container with an empty /etc boots as a
// first boot and runs `systemctl preset-all` with the presets this machine
// and the stage install, as a freshly installed system would (Debian has no
// preset that disables anything of vethd's: only vethd's own 80-vethd.preset
// keeps vethd.service disabled). Tests enable what they test.
// NetworkManager (installed on this machine by scripts/deps.sh, never
// started here) would be enabled by that first boot too and run DHCP on
// the tests' interfaces, so its units are masked on the kernel command
// line; a test of NetworkManager boots with [BootOptions].NetworkManager
// set to have it run.
//
// [BootWith] with an ETC directory ([EtcDir]) binds it as /etc instead:
// powered off ([Container.Poweroff]) and booted again over the same ETC,
// the container reboots with the state it had (enabled units, /etc/vethd,
// the machine ID), which is how the tests check what a reboot does.
//
// Tests talk to the container with `nsenter -t PID -a` (PID = its init), see
// [Container.Run]. Configs go to /etc/vethd/NAME.conf with
// [Container.WriteFile]; after changing units run `systemctl daemon-reload`,
// after changing a D-Bus policy [Container.ReloadBus].
//
// Environment:
//
//   - not root, or systemd-nspawn (Debian: systemd-container) missing: every
//     test skips, saying why; with CI=true it fails instead.
//   - VETHD_E2E_STAGE=DIR: test an already installed tree (DIR/usr/...)
//     instead of running `make install DESTDIR=... PREFIX=/usr` once per run.
//
// TestDebPackage boots another tree instead ([BootTree]): a minimal Debian
// bookworm made by mmdebstrap from this machine's apt mirror, cached in
// /var/cache/vethd-test/bookworm-HASH (built once, in a temporary directory
// renamed into place), booted with --volatile=overlay so that each run
// starts from the same tree while dpkg can write; there the package built
// by `make deb` is installed, used, removed, purged, reinstalled and
// upgraded with apt (docs/packaging.md). Delete the cache directory to
// rebuild the tree.
//
// When a container is powered off the test checks that nothing is left: no
// nspawn or container process, no mount of the staged tree, no network
// namespace in the host. Containers of an earlier run that died (a test
// binary killed by -timeout) are removed when the next run starts.
package e2e
