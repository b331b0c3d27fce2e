package proxy

import "testing"

func TestOriginalDstMaxHosts(t *testing.T) {
	type step struct {
		acquire bool // else release
		dst     string
		ok      bool
		hosts   int
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"unlimited", 0, []step{{true, "a", true, 1}, {true, "b", true, 2}, {true, "c", true, 3}}},
		{"bound", 2, []step{{true, "a", true, 1}, {true, "b", true, 2}, {true, "c", false, 2}, {true, "a", true, 2},
			{false, "b", true, 1}, {true, "c", true, 2}}},
		{"forgotten with its last connection", 1, []step{{true, "a", true, 1}, {true, "a", true, 1}, {false, "a", true, 1},
			{true, "b", false, 1}, {false, "a", true, 0}, {true, "b", true, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOriginalDst("c", tt.max)
			over := uint64(0)
			for i, s := range tt.steps {
				if s.acquire {
					if got := o.acquire(s.dst, 1); got != s.ok {
						t.Fatalf("step %d: acquire %s = %v", i, s.dst, got)
					}
					if !s.ok {
						over++
					}
				} else {
					o.release(s.dst)
				}
				if o.Hosts() != s.hosts {
					t.Fatalf("step %d: hosts = %d, want %d", i, o.Hosts(), s.hosts)
				}
			}
			if o.Stats.Overflow.Value() != over {
				t.Fatalf("overflow = %d, want %d", o.Stats.Overflow.Value(), over)
			}
		})
	}
}
