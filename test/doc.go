// Package integration holds vethd's root-only integration tests: each test
// builds a LAN out of network namespaces and veth pairs, runs dnsmasq and the
// vethd binary inside them, and removes everything when it ends. See README.md.
package integration
