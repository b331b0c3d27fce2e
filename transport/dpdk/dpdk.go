// Package dpdk is the kernel-bypass transport: DPDK owns a NIC port (cgo;
// EAL and mempools through github.com/yerden/go-dpdk, the ethdev calls our
// own), and gVisor's netstack terminates TCP/IP in user space on it. A poll
// loop moves whole bursts between the port and the stack. Its connections
// have no file descriptor: they satisfy the transport contract through a
// goroutine per connection (transport/internal/netconn), and capabilities
// that need an fd (SyscallConner, splicing) are absent.
//
// Built only with the build tag dpdk (and libdpdk-dev 22.11 for cgo); a
// binary without it refuses --transport dpdk and says how to build it.
package dpdk

// Name is the registered name.
const Name = "dpdk"
