package lab

import (
	"bytes"
	"testing"

	"github.com/google/pprof/profile"
)

// TestSummarizeProfile checks flat and cumulative shares on a profile with
// known stacks, including an inlined frame and recursion (counted once in cum).
func TestSummarizeProfile(t *testing.T) {
	fn := func(id uint64, name string) *profile.Function { return &profile.Function{ID: id, Name: name} }
	read, handle, loop, inl := fn(1, "syscall.read"), fn(2, "http1.handle"), fn(3, "rawepoll.loop"), fn(4, "http1.parse")
	loc := func(id uint64, fns ...*profile.Function) *profile.Location {
		l := &profile.Location{ID: id}
		for _, f := range fns {
			l.Line = append(l.Line, profile.Line{Function: f})
		}
		return l
	}
	lRead, lHandle, lLoop, lParse := loc(1, read), loc(2, handle), loc(3, loop), loc(4, inl, handle) // parse inlined into handle
	ms := int64(1e6)
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		Function:   []*profile.Function{read, handle, loop, inl},
		Location:   []*profile.Location{lRead, lHandle, lLoop, lParse},
		Sample: []*profile.Sample{
			{Location: []*profile.Location{lRead, lHandle, lLoop}, Value: []int64{60, 600 * ms}},
			{Location: []*profile.Location{lParse, lLoop}, Value: []int64{30, 300 * ms}},
			{Location: []*profile.Location{lLoop, lLoop}, Value: []int64{10, 100 * ms}}, // recursion
		},
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	secs, top, err := summarizeProfile(buf.Bytes(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if secs != 1 || len(top) != 2 {
		t.Fatalf("%v s, top %+v", secs, top)
	}
	want := []FuncCPU{{"syscall.read", 60, 60}, {"http1.parse", 30, 30}}
	for i := range want {
		if top[i] != want[i] {
			t.Errorf("top[%d] = %+v, want %+v", i, top[i], want[i])
		}
	}
	_, all, _ := summarizeProfile(buf.Bytes(), 10)
	for _, f := range all {
		if f.Name == "rawepoll.loop" && (f.FlatPct != 10 || f.CumPct != 100) {
			t.Errorf("loop %+v, want flat 10 cum 100 (recursion counted once)", f)
		}
		if f.Name == "http1.handle" {
			t.Errorf("handle has no flat time but is listed: %+v", f)
		}
	}
	if _, _, err := summarizeProfile([]byte("not a profile"), 5); err == nil {
		t.Error("garbage parsed")
	}
}
