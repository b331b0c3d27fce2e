package offload

import "crypto"

// AsyncSigner is a private key whose signatures complete later — the
// private key provider of the seam (Envoy's private key providers are the
// model): the handshake that needs a signature is suspended, holding
// neither the event loop nor a goroutine, and resumed when done is called.
// Keys in a token (pkcs11) or behind a remote signer implement it; an
// engine may still call Sign, which blocks its caller.
type AsyncSigner interface {
	crypto.Signer
	// SignAsync starts signing digest (as Sign would) and returns at
	// once; done is called exactly once with the result, from any
	// goroutine (possibly before SignAsync returns), and must not block.
	SignAsync(digest []byte, opts crypto.SignerOpts, done func(sig []byte, err error))
}
