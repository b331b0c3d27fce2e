package http1

import "testing"

// mutator is a recorder whose OnHead rewrites the head's framing, as a
// stream filter may (a compressor turning a length into chunking).
type mutator struct {
	recorder
	cl      int64
	chunked bool
}

func (m *mutator) OnHead(h *Head) error {
	m.recorder.OnHead(h)
	h.ContentLength, h.Chunked, h.Status = m.cl, m.chunked, 204
	return nil
}

// TestFramingIgnoresCallbackChanges: the body is read by the framing that
// was parsed, whatever OnHead did to the head (else a filter's edit would
// desynchronise the connection: a smuggling vector on requests).
func TestFramingIgnoresCallbackChanges(t *testing.T) {
	cases := []struct {
		name, in, body string
		resp           bool
		cl             int64
		chunked        bool
	}{
		{"response length, made chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "hellook", true, -1, true},
		{"response chunked, made length 0", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "abc", true, 0, false},
		{"request length, made longer", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n", "abc", false, 100, false},
	}
	for _, tc := range cases {
		m := &mutator{cl: tc.cl, chunked: tc.chunked}
		p := NewRequestParser(DefaultLimits, m)
		if tc.resp {
			p = NewResponseParser(DefaultLimits, m)
		}
		if err := feed(p, tc.in, len(tc.in)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.body.String() != tc.body || m.complete != len(m.heads) || len(m.heads) < 1 {
			t.Fatalf("%s: body %q, %d heads, %d complete", tc.name, m.body.String(), len(m.heads), m.complete)
		}
	}
}
