package lab

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const h2loadOut = `starting benchmark...
spawning thread #0: 8 total client(s). Timing-based test with 0s of warm-up time and 5s of main duration for measurements.
Main benchmark duration is started.
Main benchmark duration is over.

finished in 5.00s, 41234.20 req/s, 3.10MB/s
requests: 206171 total, 206251 started, 206171 done, 206160 succeeded, 11 failed, 11 errored, 0 timeout
status codes: 206150 2xx, 0 3xx, 0 4xx, 10 5xx
traffic: 15.52MB (16273628) total, 3.85MB (4037270) headers (space savings 95.26%), 3.93MB (4123420) data
                     min         max         mean         sd        +/- sd
time for request:      210us     12.42ms      1.90ms       0.54ms    72.33%
`

func TestParseH2load(t *testing.T) {
	c, err := parseH2load(h2loadOut)
	if err != nil {
		t.Fatal(err)
	}
	if c.RPS != 41234.20 || c.Requests != 206150 || c.Errors != 21 || c.ReadBytes != 16273628 {
		t.Fatalf("%+v", c)
	}
	if _, err := parseH2load("h2load: connection refused"); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestH2loadLogPercentiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b []byte
	for i := 1; i <= 1000; i++ { // 1 … 1000 µs
		b = append(b, []byte("1700000000000000\t200\t")...)
		b = append(b, []byte(strconv.Itoa(i))...)
		b = append(b, '\n')
	}
	os.WriteFile(path, b, 0o644)
	us, err := readH2loadLog(path)
	if err != nil || len(us) != 1000 {
		t.Fatalf("%d %v", len(us), err)
	}
	ms := percentilesMs(us)
	want := []float64{0.5, 0.75, 0.9, 0.99, 0.999, 1.0, 1.0}
	for i := range want {
		if ms[i] != want[i] {
			t.Fatalf("percentile %g: %v ms, want %v", Percentiles[i], ms[i], want[i])
		}
	}
}

func TestGRPCUnaryRequestFrame(t *testing.T) {
	got := grpcUnaryRequest(300) // varint 300 = 0xac 0x02
	want := []byte{0, 0, 0, 0, 3, 0x10, 0xac, 0x02}
	if string(got) != string(want) {
		t.Fatalf("% x", got)
	}
}

func TestPhasesCrossProtocolsAndEngines(t *testing.T) {
	s, err := ParseScenario([]byte("systems: [haproxy]\nprotocols: [http1, grpc]\nengines: [none, gotls]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ph := range s.phases() {
		got = append(got, ph.label+"/"+ph.scheme())
	}
	want := "http1/http http1+tls/https grpc/http grpc+tls/https"
	if strings.Join(got, " ") != want {
		t.Fatalf("%v", got)
	}
	for _, bad := range []string{
		"systems: [a]\nprotocols: [http1]\nengines: [openssl]\n",
		"systems: [a]\nprotocols: [grpc]\nrate: 1000\n",
		"systems: [a]\nprotocols: [http2]\nstreams: 0\n",
	} {
		if _, err := ParseScenario([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
