package http2

// SettingID is a SETTINGS parameter (RFC 9113 §6.5.2).
type SettingID uint16

// SETTINGS parameters: RFC 9113 §6.5.2, ENABLE_CONNECT_PROTOCOL RFC 8441 §3.
const (
	SettingHeaderTableSize       SettingID = 0x1
	SettingEnablePush            SettingID = 0x2
	SettingMaxConcurrentStreams  SettingID = 0x3
	SettingInitialWindowSize     SettingID = 0x4
	SettingMaxFrameSize          SettingID = 0x5
	SettingMaxHeaderListSize     SettingID = 0x6
	SettingEnableConnectProtocol SettingID = 0x8
)

var settingNames = [...]string{
	SettingHeaderTableSize:       "HEADER_TABLE_SIZE",
	SettingEnablePush:            "ENABLE_PUSH",
	SettingMaxConcurrentStreams:  "MAX_CONCURRENT_STREAMS",
	SettingInitialWindowSize:     "INITIAL_WINDOW_SIZE",
	SettingMaxFrameSize:          "MAX_FRAME_SIZE",
	SettingMaxHeaderListSize:     "MAX_HEADER_LIST_SIZE",
	SettingEnableConnectProtocol: "ENABLE_CONNECT_PROTOCOL",
}

func (s SettingID) String() string {
	if int(s) < len(settingNames) && settingNames[s] != "" {
		return settingNames[s]
	}
	return "UNKNOWN_SETTING_" + itoa(uint32(s))
}

// Setting is one SETTINGS parameter.
type Setting struct {
	ID  SettingID
	Val uint32
}

// MaxWindow is the largest flow-control window (§6.9.1).
const MaxWindow = 1<<31 - 1

// Valid reports a value the parameter cannot take as the connection
// error §6.5.2 names; unknown parameters are ignored, so valid.
func (s Setting) Valid() error {
	switch s.ID {
	case SettingEnablePush, SettingEnableConnectProtocol:
		if s.Val > 1 {
			return connErr(ErrCodeProtocol, "SETTINGS_%v of %d", s.ID, s.Val)
		}
	case SettingInitialWindowSize:
		if s.Val > MaxWindow {
			return connErr(ErrCodeFlowControl, "SETTINGS_%v of %d", s.ID, s.Val)
		}
	case SettingMaxFrameSize:
		if s.Val < 16<<10 || s.Val > MaxFrameLen {
			return connErr(ErrCodeProtocol, "SETTINGS_%v of %d", s.ID, s.Val)
		}
	}
	return nil
}
