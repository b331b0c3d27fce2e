package sockmap

// The BPF objects are generated from bpf/sockmap.c and committed, so building
// proxylab needs no clang; `make bpf` (clang, llvm, libbpf-dev) regenerates them.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type tuple -type peer sockmap bpf/sockmap.c
