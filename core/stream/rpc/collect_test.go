package rpc

import (
	"fmt"
	"slices"
	"testing"

	"github.com/proxylab/proxylab/foundation/stats"
)

// TestStatsCollect: the events leave through stats.Collector as
// rpc_events_total{codec, event}, the codec's name included.
func TestStatsCollect(t *testing.T) {
	st := &Stats{Codec: "bolt"}
	st.Requests.Add(3)
	st.Heartbeats.Add(1)
	st.BadFrames.Add(2)
	var got []string
	st.Collect(func(name, _ string, kind stats.MetricKind, v float64, labels ...stats.Label) {
		got = append(got, fmt.Sprintf("%s %v %v %v", name, kind == stats.CounterKind, labels, v))
	})
	want := []string{
		"rpc_events_total true [{codec bolt} {event requests}] 3",
		"rpc_events_total true [{codec bolt} {event oneway}] 0",
		"rpc_events_total true [{codec bolt} {event heartbeats}] 1",
		"rpc_events_total true [{codec bolt} {event bad_frames}] 2",
		"rpc_events_total true [{codec bolt} {event unknown_responses}] 0",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
}
