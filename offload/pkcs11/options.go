// Package pkcs11 gives the TLS engines private keys that live in a PKCS#11
// token (an HSM, a smart card, SoftHSM2): the key never enters the process;
// it is used through crypto.Signer (and crypto.Decrypter for RSA) by way of
// github.com/ThalesGroup/crypto11, which pools the token's sessions.
//
// A certificate entry names its key with a `pkcs11:` block instead of
// key_file. The names follow the PKCS#11 URI (RFC 7512) that OpenSSL's
// pkcs11 engine and provider take — and so HAProxy's and nginx's
// `engine:pkcs11` keys: module (module-path), token_label (token), slot
// (slot-id), key_label (object), key_id (id, hex), pin_file (pin-source)
// and pin_env. The PIN is never read from the config file itself.
package pkcs11

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/proxylab/proxylab/foundation/registry"
)

// Options locate one private key in a token.
type Options struct {
	// Module is the path of the PKCS#11 library (.so).
	Module string `yaml:"module"`
	// TokenLabel or Slot (exactly one) chooses the token.
	TokenLabel string `yaml:"token_label,omitempty"`
	Slot       *int   `yaml:"slot,omitempty"`
	// KeyLabel (CKA_LABEL) and/or KeyID (CKA_ID, hex) choose the key.
	KeyLabel string `yaml:"key_label,omitempty"`
	KeyID    string `yaml:"key_id,omitempty"`
	// PinFile or PinEnv (exactly one) holds the user PIN; a trailing
	// newline in the file is ignored.
	PinFile string `yaml:"pin_file,omitempty"`
	PinEnv  string `yaml:"pin_env,omitempty"`
	// Pin is refused: it exists so that an inline PIN gets a clear error
	// rather than "unknown field".
	Pin string `yaml:"pin,omitempty"`
	// MaxSessions bounds the token sessions opened for signing (and so
	// the signatures running at once); 0: 8.
	MaxSessions int `yaml:"max_sessions,omitempty"`
}

// DefaultMaxSessions is MaxSessions when unset.
const DefaultMaxSessions = 8

// Validate checks the block without touching the token (Open does that).
func (o *Options) Validate(path string) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, registry.Errorf(path+field, format, args...))
	}
	if o.Module == "" {
		add(".module", "required (the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)")
	} else if _, err := os.Stat(o.Module); err != nil {
		add(".module", "%v", err)
	}
	switch {
	case o.TokenLabel == "" && o.Slot == nil:
		add("", "one of token_label or slot is required")
	case o.TokenLabel != "" && o.Slot != nil:
		add(".slot", "token_label and slot both set: choose one")
	case o.Slot != nil && *o.Slot < 0:
		add(".slot", "must not be negative")
	}
	if o.KeyLabel == "" && o.KeyID == "" {
		add("", "one of key_label or key_id is required")
	}
	if o.KeyID != "" {
		if _, err := o.id(); err != nil {
			add(".key_id", "want hex digits (e.g. 01a2): %v", err)
		}
	}
	if o.Pin != "" {
		add(".pin", "a PIN is never taken from the config file: use pin_file or pin_env")
	}
	switch {
	case o.PinFile == "" && o.PinEnv == "":
		add("", "one of pin_file or pin_env is required")
	case o.PinFile != "" && o.PinEnv != "":
		add(".pin_env", "pin_file and pin_env both set: choose one")
	case o.PinFile != "":
		if _, err := os.Stat(o.PinFile); err != nil {
			add(".pin_file", "%v", err)
		}
	case os.Getenv(o.PinEnv) == "":
		add(".pin_env", "environment variable %s is not set or empty", o.PinEnv)
	}
	if o.MaxSessions < 0 || o.MaxSessions == 1 {
		add(".max_sessions", "must be 0 (default %d) or at least 2", DefaultMaxSessions)
	}
	return errs
}

// id is KeyID decoded (nil when unset).
func (o *Options) id() ([]byte, error) {
	if o.KeyID == "" {
		return nil, nil
	}
	return hex.DecodeString(strings.TrimPrefix(strings.ReplaceAll(o.KeyID, ":", ""), "0x"))
}

// pin reads the PIN from its file or variable, at each login (so a
// rotated PIN file is taken when the token is logged into again).
func (o *Options) pin() (string, error) {
	if o.PinEnv != "" {
		v := os.Getenv(o.PinEnv)
		if v == "" {
			return "", fmt.Errorf("pkcs11: environment variable %s is not set or empty", o.PinEnv)
		}
		return v, nil
	}
	b, err := os.ReadFile(o.PinFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11: pin_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Files is the PIN file, watched like the certificate files.
func (o *Options) Files() []string {
	if o.PinFile == "" {
		return nil
	}
	return []string{o.PinFile}
}

// tokenKey identifies a token: keys on one token share its sessions and
// its login (PKCS#11 logs an application in per token, not per session,
// so the first key's PIN source logs in for all).
func (o *Options) tokenKey() string {
	slot := -1
	if o.Slot != nil {
		slot = *o.Slot
	}
	return fmt.Sprintf("%s|%s|%d", o.Module, o.TokenLabel, slot)
}

// String names the key in logs and errors.
func (o *Options) String() string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	if o.TokenLabel != "" {
		fmt.Fprintf(&b, "token=%s", o.TokenLabel)
	} else if o.Slot != nil {
		fmt.Fprintf(&b, "slot-id=%d", *o.Slot)
	}
	if o.KeyLabel != "" {
		fmt.Fprintf(&b, ";object=%s", o.KeyLabel)
	}
	if o.KeyID != "" {
		fmt.Fprintf(&b, ";id=%s", o.KeyID)
	}
	return b.String()
}
