package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoadCommandJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	var out, errb bytes.Buffer
	code := run([]string{"load", "-target", strings.TrimPrefix(srv.URL, "http://"), "-c", "2", "-d", "300ms", "-json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r["requests"].(float64) <= 0 || r["errors"].(float64) != 0 || r["p99_ms"].(float64) <= 0 {
		t.Fatalf("result %v", r)
	}
	if code := run([]string{"load"}, &out, &errb); code != 2 {
		t.Fatalf("missing -target: exit %d", code)
	}
}

func TestUpstreamRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"upstream", "-size", "-1"}, {"upstream", "-delay", "-1s"}, {"upstream", "-bogus"}, {"upstream", "-listen", "256.0.0.1:1"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code == 0 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
