package bridge

// The kernel data path's programs (bpf/kpath.c) are compiled into
// kpath_bpfel.o and kpath_bpfeb.o, and their loaders into kpath_bpfel.go
// and kpath_bpfeb.go, by bpf2go; the results are committed, so a build
// needs no C compiler. Regenerating them needs clang and libbpf-dev:
//
//	go generate ./pkg/bridge/
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" kpath bpf/kpath.c
