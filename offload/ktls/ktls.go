// Package ktls detects kernel TLS (the "tls" TCP upper-layer protocol) and
// names what became of each connection's record layer, for the counter
// offload_ktls_total{result}:
//
//   - unsupported: the host's kernel has no TLS ULP (setsockopt TCP_ULP
//     "tls" fails, ENOENT without the tls module);
//   - fallback: the kernel has it but the engine cannot hand over its
//     traffic keys, so records stay in user space;
//   - enabled: TLS_TX/TLS_RX were handed to the kernel.
//
// No engine exports its keys today: crypto/tls has no public API for the
// traffic secrets and sequence numbers, and TLCP's record version 0x0101 is
// not one the kernel accepts (its crypto_info takes TLS 1.2 and 1.3 only),
// so "enabled" is never counted yet: the hand-off itself is not
// implemented. Probe logs this once, plainly.
package ktls

import (
	"log/slog"
	"sync"
)

var probe struct {
	once      sync.Once
	supported bool
	reason    string
}

// Supported reports whether this host's kernel has the TLS ULP, probed once
// per process (the first call logs the result).
func Supported() bool {
	probe.once.Do(func() {
		probe.supported, probe.reason = hostSupports()
		if probe.supported {
			slog.Info("ktls: the kernel has TLS (TCP_ULP tls); no engine exports its traffic keys yet, so records stay in user space")
		} else {
			slog.Info("ktls: kernel TLS not available on this host; records stay in user space (the kTLS hand-off was not exercised)", "reason", probe.reason)
		}
	})
	return probe.supported
}

// Outcome is the result counted for an established connection:
// unsupported on a host without the TLS ULP, fallback otherwise (no engine
// exports its keys yet).
func Outcome() string {
	if !Supported() {
		return "unsupported"
	}
	return "fallback"
}
