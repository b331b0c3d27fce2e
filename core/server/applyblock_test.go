package server

import (
	"errors"
	"strings"
	"testing"
)

// TestBlockApply: a block refuses Apply with its reason until lifted, and
// cannot be set while an Apply runs (hot upgrade vs reload).
func TestBlockApply(t *testing.T) {
	a1 := namedUpstream(t, "A1")
	base := reloadCfg{Addr: freeAddr(t), HostsA: []string{a1}}
	s := startServer(t, base.parse(t))
	next := base
	next.NewRoute = true
	steps := []struct {
		name    string
		block   string
		running bool // an Apply holds the lock when blocking
		wantSet error
		wantErr string // of the Apply after the step; "" applies
	}{
		{"unblocked", "", false, nil, ""},
		{"blocked", "a hot upgrade hand-over is in progress", false, nil, "refused: a hot upgrade hand-over is in progress"},
		{"reason replaced", "handed over", false, nil, "refused: handed over"},
		{"lifted", "", false, nil, ""},
		{"apply running", "late", true, ErrApplying, ""},
	}
	for _, st := range steps {
		if st.running {
			s.live.applyMu.Lock()
		}
		err := s.BlockApply(st.block)
		if st.running {
			s.live.applyMu.Unlock()
		}
		if !errors.Is(err, st.wantSet) {
			t.Fatalf("%s: BlockApply = %v, want %v", st.name, err, st.wantSet)
		}
		err = s.Apply(next.parse(t))
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: Apply refused: %v", st.name, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Fatalf("%s: Apply = %v, want %q", st.name, err, st.wantErr)
		}
	}
}
