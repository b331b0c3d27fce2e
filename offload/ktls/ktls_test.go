package ktls

import (
	"runtime"
	"testing"
)

// TestOutcome: on a host without the TLS ULP every connection is
// unsupported, with a reason; with it, a fallback (no engine exports).
func TestOutcome(t *testing.T) {
	supported := Supported()
	t.Logf("host supports kTLS: %v (%s)", supported, probe.reason)
	if runtime.GOOS == "linux" && !supported && probe.reason == "" {
		t.Fatal("unsupported without a reason")
	}
	want := "unsupported"
	if supported {
		want = "fallback"
	}
	if got := Outcome(); got != want {
		t.Errorf("outcome %s, want %s", got, want)
	}
}
