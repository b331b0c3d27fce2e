//go:build !cgo

package pkcs11

import (
	"crypto"
	"errors"
)

// Available reports whether this binary can use PKCS#11 (built with cgo).
const Available = false

// Key is not available without cgo.
type Key struct{ crypto.Signer }

// PrivateKey is never reached (Open fails).
func (k *Key) PrivateKey() crypto.Signer { return k.Signer }

// Open refuses: PKCS#11 modules are C libraries, loaded through cgo.
func Open(o *Options, count func(reason string)) (*Key, error) {
	return nil, errors.New("pkcs11: this binary was built without cgo (CGO_ENABLED=0); PKCS#11 keys need cgo")
}
