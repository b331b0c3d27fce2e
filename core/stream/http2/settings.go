package http2

import (
	"sync/atomic"
	"time"

	"github.com/proxylab/proxylab/core/protocol/http2"
	"github.com/proxylab/proxylab/foundation/timer"
)

// Settings configure one side's HTTP/2 connections. Zero fields take the
// defaults of DefaultSettings.
type Settings struct {
	// MaxConcurrentStreams is advertised to the peer (server) or bounds the
	// streams opened on one connection (client, with the peer's own limit).
	MaxConcurrentStreams uint32
	// InitialStreamWindow is the receive window of each stream; a stream's
	// window is only returned once its reader took the data, so a slow
	// reader stalls its stream and no other.
	InitialStreamWindow int32
	// ConnWindow is the connection-level receive window.
	ConnWindow int32
	// MaxFrameSize is the largest frame payload accepted.
	MaxFrameSize uint32
	// MaxHeaderListSize bounds a decoded header list (RFC 9113 §6.5.2);
	// larger requests get 431, larger responses reset the stream.
	MaxHeaderListSize uint32
	// HeaderTableSize is the HPACK dynamic table size the peer may use.
	HeaderTableSize uint32
	// HighWatermark bounds the bytes a stream holds waiting for send
	// window before it asks its source to stop reading.
	HighWatermark int
	// IdleTimeout closes a connection without streams for that long.
	IdleTimeout time.Duration
	// ResetBurst and ResetRate bound streams the peer cancels (a token
	// bucket: ResetBurst tokens, ResetRate per second); beyond them the
	// connection is closed with ENHANCE_YOUR_CALM (CVE-2023-44487).
	ResetBurst int
	ResetRate  float64
	// Timers is the wheel connection timeouts run on (server side).
	Timers *timer.Wheel
	// Stats, when set, counts events of every connection using these
	// settings.
	Stats *Stats
	// EnableConnectProtocol (server): advertise RFC 8441 extended CONNECT
	// and accept requests with :protocol (connect.go).
	EnableConnectProtocol bool
}

// DefaultSettings are the values zero fields take.
var DefaultSettings = Settings{
	MaxConcurrentStreams: 128,
	InitialStreamWindow:  256 << 10,
	ConnWindow:           4 << 20,
	MaxFrameSize:         16 << 10,
	MaxHeaderListSize:    64 << 10,
	HeaderTableSize:      4096,
	HighWatermark:        256 << 10,
	IdleTimeout:          5 * time.Minute,
	ResetBurst:           400,
	ResetRate:            100,
}

func (s *Settings) withDefaults() *Settings {
	d := DefaultSettings
	o := *s
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if o.InitialStreamWindow <= 0 {
		o.InitialStreamWindow = d.InitialStreamWindow
	}
	if o.ConnWindow <= 0 {
		o.ConnWindow = d.ConnWindow
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = d.MaxFrameSize
	}
	if o.MaxHeaderListSize == 0 {
		o.MaxHeaderListSize = d.MaxHeaderListSize
	}
	if o.HeaderTableSize == 0 {
		o.HeaderTableSize = d.HeaderTableSize
	}
	if o.HighWatermark <= 0 {
		o.HighWatermark = d.HighWatermark
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = d.IdleTimeout
	}
	if o.ResetBurst == 0 {
		o.ResetBurst = d.ResetBurst
	}
	if o.ResetRate == 0 {
		o.ResetRate = d.ResetRate
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	return &o
}

// Stats count protocol events; every field is safe for concurrent use.
type Stats struct {
	Connections, Streams                   atomic.Uint64
	RxReset, TxReset                       atomic.Uint64
	RxGoAway, TxGoAway                     atomic.Uint64
	ProtocolErrors, FlowControlErrors      atomic.Uint64
	RefusedStreams, HeaderListTooLarge     atomic.Uint64
	RapidResets, ContinuationFloods, Pings atomic.Uint64
	MalformedRequests, MalformedResponses  atomic.Uint64
	TrailerFieldsDropped, ControlFloods    atomic.Uint64
	ActiveStreams                          atomic.Int64
}

// Each calls f with every counter's metric name and value.
func (st *Stats) Each(f func(event string, v uint64)) {
	for _, c := range []struct {
		name string
		v    *atomic.Uint64
	}{
		{"connections", &st.Connections}, {"streams", &st.Streams},
		{"rx_reset", &st.RxReset}, {"tx_reset", &st.TxReset},
		{"rx_goaway", &st.RxGoAway}, {"tx_goaway", &st.TxGoAway},
		{"protocol_error", &st.ProtocolErrors}, {"flow_control_error", &st.FlowControlErrors},
		{"refused_stream", &st.RefusedStreams}, {"header_list_too_large", &st.HeaderListTooLarge},
		{"rapid_reset", &st.RapidResets}, {"continuation_flood", &st.ContinuationFloods},
		{"ping", &st.Pings}, {"malformed_request", &st.MalformedRequests},
		{"malformed_response", &st.MalformedResponses},
		{"trailer_field_dropped", &st.TrailerFieldsDropped}, {"control_flood", &st.ControlFloods},
	} {
		f(c.name, c.v.Load())
	}
}

// settings applies the peer's SETTINGS (values the reader validated,
// §6.5.2) and acknowledges them.
func (c *conn) settings(f *http2.Frame) error {
	if f.IsAck() {
		return nil
	}
	c.gotSettings = true
	for i := range f.NumSettings() {
		if err := c.setting(f.Setting(i)); err != nil {
			return err
		}
	}
	c.queuedControl()
	c.fw.WriteSettingsAck()
	c.role.wantFlush()
	c.pump()
	return nil
}

func (c *conn) setting(s http2.Setting) error {
	switch s.ID {
	case http2.SettingInitialWindowSize:
		// §6.9.2: the change applies to every open stream.
		delta := int32(s.Val) - c.peerInitWin
		c.peerInitWin = int32(s.Val)
		for _, st := range c.streams {
			if int64(st.sendWin)+int64(delta) > maxWindow {
				return &connError{Code: http2.ErrCodeFlowControl, Reason: "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window"}
			}
			st.sendWin += delta
		}
	case http2.SettingMaxFrameSize:
		c.peerMaxFrame = s.Val
	case http2.SettingMaxConcurrentStreams:
		c.peerMaxStreams = s.Val
	case http2.SettingHeaderTableSize:
		c.henc.SetMaxDynamicTableSize(min(s.Val, 4096))
	}
	return nil
}
