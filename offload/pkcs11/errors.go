package pkcs11

import "errors"

// Error is a failed token operation with the reason it is counted under
// (offload_pkcs11_errors{reason}): token_not_present, session, login,
// key_not_found, device, unavailable (the token was lost and is not back
// yet), sign_failed (anything else).
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// reconnect says whether the failure means the token's sessions or
// handles are stale, so the token is logged into again.
func (e *Error) reconnect() bool {
	switch e.Reason {
	case "token_not_present", "session", "key_not_found", "device":
		return true
	case "login":
		// CKR_USER_NOT_LOGGED_IN after a token came back: log in again. A
		// wrong PIN read at reconnect does not get here (it is not from an
		// operation on a context).
		return true
	}
	return false
}

var errUnavailable = errors.New("pkcs11: token unavailable (lost; reconnecting)")

// reasonOf is err's counted reason.
func reasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "sign_failed"
}

// ReasonOf is the counted reason of an error from Open or a key operation.
func ReasonOf(err error) string { return reasonOf(err) }
