package server

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/config"
)

// ReloadStats count config reloads (file, admin or a control plane); the
// admin API exports them.
type ReloadStats struct {
	Attempts, Successes, Failures atomic.Uint64
	// LastSuccess is when the config in force was applied (Unix ns; the
	// start when it has never been reloaded).
	LastSuccess atomic.Int64
}

// ReloadStats are the server's reload counters.
func (s *Server) ReloadStats() *ReloadStats { return &s.live.stats }

// RejectReload counts a reload refused before Apply (the file did not
// parse or validate), so every refusal is counted in one place.
func (s *Server) RejectReload() {
	s.live.stats.Attempts.Add(1)
	s.live.stats.Failures.Add(1)
}

// hashCache remembers the hash of one config.
type hashCache struct {
	mu   sync.Mutex
	cfg  *config.Config
	hash string
}

// ConfigHash identifies the config in force: the first 12 hex digits of
// the SHA-256 of its dump (secrets redacted). Computed when asked, once per
// config, so Apply stays cheap.
func (s *Server) ConfigHash() string {
	cfg := s.Config()
	h := &s.live.hash
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg != cfg {
		out, err := cfg.Dump()
		if err != nil {
			return "unknown"
		}
		sum := sha256.Sum256(out)
		h.cfg, h.hash = cfg, hex.EncodeToString(sum[:6])
	}
	return h.hash
}

func (r *ReloadStats) started() { r.LastSuccess.Store(time.Now().UnixNano()) }
