package gotls

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/offload"
	"github.com/proxylab/proxylab/offload/internal/engineconn"
	"github.com/proxylab/proxylab/offload/pkcs11"
)

// Module is the gotls engine as cmd registers it: its certificate entries
// may keep their private key outside the process (pkcs11).
var Module = offload.Module{Name: Name, New: New, CertOptions: DecodeCertOptions}

// CertOptions are a certificate entry's keys of the gotls engine: where the
// private key lives when it is not key_file.
type CertOptions struct {
	// PKCS11 names a key in a PKCS#11 token (HSM, SoftHSM2).
	PKCS11 *pkcs11.Options `yaml:"pkcs11,omitempty"`
}

// DecodeCertOptions is the module's certificate options decoder.
func DecodeCertOptions(node *yaml.Node, path string) (any, []error) {
	o, errs := registry.Decode[CertOptions](node, path)
	if errs != nil {
		return nil, errs
	}
	return o, nil
}

// Validate checks the key source's block.
func (o *CertOptions) Validate(path string) []error {
	if o.PKCS11 != nil {
		return o.PKCS11.Validate(path + ".pkcs11")
	}
	return nil
}

// KeySource names where the entry's key lives ("" for key_file), so the
// config refuses key_file beside it and does not require it.
func (o *CertOptions) KeySource() string {
	if o.PKCS11 != nil {
		return "pkcs11"
	}
	return ""
}

// Files are the entry's own files (the PIN file), watched for changes.
func (o *CertOptions) Files() []string {
	if o.PKCS11 != nil {
		return o.PKCS11.Files()
	}
	return nil
}

var _ offload.Filer = (*CertOptions)(nil)

// loadPair loads one certificate entry: the chain from cert_file and the
// key from key_file or from where its options say. A key elsewhere must
// match the certificate. st counts the key's failures (nil: none).
func loadPair(f offload.CertFiles, st *offload.Stats) (tls.Certificate, error) {
	o, _ := f.Options.(*CertOptions)
	if o == nil || o.PKCS11 == nil {
		return tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	}
	chain, leaf, err := readChain(f.CertFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := pkcs11.Open(o.PKCS11, func(reason string) { st.Offload("pkcs11_errors", "reason", reason) })
	if err != nil {
		st.Offload("pkcs11_errors", "reason", pkcs11.ReasonOf(err))
		return tls.Certificate{}, err
	}
	if !samePublic(leaf.PublicKey, key.Public()) {
		return tls.Certificate{}, fmt.Errorf("gotls: the key %s does not match certificate %s", o.PKCS11, f.CertFile)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key.PrivateKey(), Leaf: leaf}, nil
}

// readChain reads a PEM certificate chain, leaf first.
func readChain(path string) ([][]byte, *x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("gotls: %w", err)
	}
	var chain [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, nil, fmt.Errorf("gotls: no certificate in %s", path)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, fmt.Errorf("gotls: certificate %s: %w", path, err)
	}
	return chain, leaf, nil
}

// samePublic compares public keys by their Equal method.
func samePublic(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return reflect.DeepEqual(a, b)
	}
	return e.Equal(b)
}

var errNoCert = errors.New("gotls: a listener needs at least one certificate")

// forHandshake is c for one handshake: a key that signs asynchronously is
// bound to the handshake's context, so its signature suspends that
// handshake (engineconn.Await) instead of blocking the goroutine running
// it. In-memory keys are returned as they are (no allocation).
func forHandshake(c *tls.Certificate, ctx context.Context) *tls.Certificate {
	k, ok := c.PrivateKey.(offload.AsyncSigner)
	if !ok {
		return c
	}
	cp := *c
	if d, ok := k.(crypto.Decrypter); ok {
		cp.PrivateKey = asyncRSAKey{asyncKey{k, ctx}, d}
	} else {
		cp.PrivateKey = asyncKey{k, ctx}
	}
	return &cp
}

// asyncKey signs through its AsyncSigner, suspending the handshake of ctx.
type asyncKey struct {
	k   offload.AsyncSigner
	ctx context.Context
}

func (a asyncKey) Public() crypto.PublicKey { return a.k.Public() }

func (a asyncKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return engineconn.Await(a.ctx, func(done func([]byte, error)) { a.k.SignAsync(digest, opts, done) })
}

// asyncRSAKey also decrypts (TLS 1.2 RSA key exchange, off by default in
// crypto/tls): that operation blocks the goroutine running the handshake.
type asyncRSAKey struct {
	asyncKey
	d crypto.Decrypter
}

func (a asyncRSAKey) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return a.d.Decrypt(r, msg, opts)
}
