package xds

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/proxylab/proxylab/core/config"
)

// FileStore keeps the PEM material the model refers to by file name
// (inline certificates, SDS secrets). Put returns the same path for the
// same bytes, so an unchanged secret keeps its TLS context on Apply.
type FileStore interface {
	Put(data []byte) (string, error)
}

// DirStore writes files named by their content's SHA-256 in Dir (0600).
// Files are never rewritten; the directory is the caller's to remove.
type DirStore struct{ Dir string }

var _ FileStore = DirStore{}

func (d DirStore) Put(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	name := filepath.Join(d.Dir, hex.EncodeToString(sum[:16])+".pem")
	if _, err := os.Stat(name); err == nil {
		return name, nil
	}
	tmp, err := os.CreateTemp(d.Dir, "put-*")
	if err != nil {
		return "", fmt.Errorf("xds: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("xds: writing %s: %w", name, errorsJoin(werr, cerr))
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return "", fmt.Errorf("xds: %w", err)
	}
	return name, nil
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// secret is a translated Secret: files the model names.
type secret struct {
	certFile, keyFile string
	caFile            string
	sans              []string
}

var (
	secretFields = table(&tlsv3.Secret{}, fieldTable{"name": supported, "tls_certificate": supported,
		"validation_context": supported, "session_ticket_keys": refused, "generic_secret": refused})
	certFields = table(&tlsv3.TlsCertificate{}, fieldTable{"certificate_chain": supported, "private_key": supported,
		"ocsp_staple": warned, "signed_certificate_timestamp": warned, "watched_directory": refused,
		"private_key_provider": refused, "password": refused, "pkcs12": refused})
	validationFields = table(&tlsv3.CertificateValidationContext{}, fieldTable{"trusted_ca": supported,
		"match_typed_subject_alt_names": supported, "match_subject_alt_names": supported,
		"verify_certificate_spki": refused, "verify_certificate_hash": refused, "crl": refused,
		"allow_expired_certificate": refused, "trust_chain_verification": refused, "custom_validator_config": refused,
		"require_signed_certificate_timestamp": refused, "max_verify_depth": refused, "system_root_certs": supported,
		"only_verify_leaf_cert_crl": refused, "watched_directory": refused, "ca_certificate_provider_instance": refused})
	dataSourceFields = table(&corev3.DataSource{}, fieldTable{"filename": supported, "inline_bytes": supported,
		"inline_string": supported, "environment_variable": refused, "watched_directory": refused})
	commonTLSFields = table(&tlsv3.CommonTlsContext{}, fieldTable{"tls_params": supported, "tls_certificates": supported,
		"tls_certificate_sds_secret_configs": supported, "validation_context": supported,
		"validation_context_sds_secret_config": supported, "alpn_protocols": supported,
		"combined_validation_context": refused, "key_log": refused, "custom_handshaker": refused,
		"tls_certificate_provider_instance": refused, "custom_tls_certificate_selector": refused})
	tlsParamsFields = table(&tlsv3.TlsParameters{}, fieldTable{"tls_minimum_protocol_version": supported,
		"tls_maximum_protocol_version": supported, "cipher_suites": supported, "ecdh_curves": supported,
		"signature_algorithms": refused, "compliance_policies": refused})
	sdsFields     = table(&tlsv3.SdsSecretConfig{}, fieldTable{"name": supported, "sds_config": supported})
	upTLSFields   = table(&tlsv3.UpstreamTlsContext{}, fieldTable{"common_tls_context": supported, "sni": supported, "allow_renegotiation": refused, "max_session_keys": warned, "auto_host_sni": refused, "auto_sni_san_validation": refused, "enforce_rsa_key_usage": warned})
	downTLSFields = table(&tlsv3.DownstreamTlsContext{}, fieldTable{"common_tls_context": supported,
		"require_client_certificate": supported, "require_sni": refused, "session_ticket_keys": refused,
		"session_ticket_keys_sds_secret_config": refused, "disable_stateless_session_resumption": warned,
		"session_timeout": warned, "ocsp_staple_policy": warned, "full_scan_certs_on_sni_mismatch": warned,
		"prefer_client_ciphers": warned, "disable_stateful_session_resumption": warned})
)

// maxDataSource bounds a file a DataSource names.
const maxDataSource = 1 << 20

// data returns a DataSource as a file name (inline data is stored).
func (t *tr) data(p string, ds *corev3.DataSource) []byte {
	t.check(p, ds, dataSourceFields)
	switch {
	case ds.GetFilename() != "":
		// Only a regular file of sane size: a control plane naming
		// /dev/zero or a FIFO must not hang or exhaust the proxy.
		fi, err := os.Stat(ds.GetFilename())
		if err == nil && (!fi.Mode().IsRegular() || fi.Size() > maxDataSource) {
			err = fmt.Errorf("not a regular file of at most %d bytes", maxDataSource)
		}
		var b []byte
		if err == nil {
			b, err = os.ReadFile(ds.GetFilename())
		}
		if err != nil {
			t.fail(p+".filename", "%v", err)
			return nil
		}
		return b
	case len(ds.GetInlineBytes()) > 0:
		return ds.GetInlineBytes()
	case ds.GetInlineString() != "":
		return []byte(ds.GetInlineString())
	}
	t.fail(p, "empty data source")
	return nil
}

func (t *tr) put(p string, b []byte) string {
	if t.files == nil {
		t.fail(p, "no file store for inline certificates")
		return ""
	}
	name, err := t.files.Put(b)
	if err != nil {
		t.fail(p, "%v", err)
	}
	return name
}

// certificate checks a chain and key parse together and stores them.
func (t *tr) certificate(p string, c *tlsv3.TlsCertificate) (certFile, keyFile string) {
	t.check(p, c, certFields)
	chain, key := t.data(p+".certificate_chain", c.GetCertificateChain()), t.data(p+".private_key", c.GetPrivateKey())
	if chain == nil || key == nil {
		return "", ""
	}
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		t.fail(p, "certificate does not parse: %v", err)
		return "", ""
	}
	return t.put(p+".certificate_chain", chain), t.put(p+".private_key", key)
}

// validation translates a validation context: a CA file and SAN names.
func (t *tr) validation(p string, v *tlsv3.CertificateValidationContext, s *secret) {
	t.check(p, v, validationFields)
	if ca := v.GetTrustedCa(); ca != nil {
		pem := t.data(p+".trusted_ca", ca)
		if pem != nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			t.fail(p+".trusted_ca", "no certificate parses")
			return
		}
		s.caFile = t.put(p+".trusted_ca", pem)
	}
	for i, m := range v.GetMatchSubjectAltNames() {
		if m.GetExact() == "" || m.GetIgnoreCase() {
			t.fail(idx(p+".match_subject_alt_names", i), "only exact, case-sensitive names are supported")
			continue
		}
		s.sans = append(s.sans, m.GetExact())
	}
	for i, m := range v.GetMatchTypedSubjectAltNames() {
		sm := m.GetMatcher()
		if sm.GetExact() == "" || sm.GetIgnoreCase() || m.GetOid() != "" {
			t.fail(idx(p+".match_typed_subject_alt_names", i), "only exact, case-sensitive names are supported")
			continue
		}
		s.sans = append(s.sans, sm.GetExact())
	}
}

// translateSecret turns an SDS Secret into files.
func (t *tr) translateSecret(sc *tlsv3.Secret) *secret {
	t.check("", sc, secretFields)
	s := &secret{}
	if c := sc.GetTlsCertificate(); c != nil {
		s.certFile, s.keyFile = t.certificate("tls_certificate", c)
	}
	if v := sc.GetValidationContext(); v != nil {
		t.validation("validation_context", v, s)
	}
	if sc.GetTlsCertificate() == nil && sc.GetValidationContext() == nil {
		t.fail("", "one of tls_certificate or validation_context is required")
	}
	return s
}

// tlsRefs are the SDS names a TLS context waits for.
type tlsRefs struct {
	certSDS []string
	caSDS   string
}

// common translates what both sides share, returning inline certificates
// and the SDS references.
func (t *tr) common(p string, c *tlsv3.CommonTlsContext, certs *[]config.CertFiles, s *secret) (refs tlsRefs, alpn []string, params *tlsv3.TlsParameters) {
	t.check(p, c, commonTLSFields)
	for i, tc := range c.GetTlsCertificates() {
		cf, kf := t.certificate(idx(p+".tls_certificates", i), tc)
		*certs = append(*certs, config.CertFiles{CertFile: cf, KeyFile: kf})
	}
	for i, sds := range c.GetTlsCertificateSdsSecretConfigs() {
		t.check(idx(p+".tls_certificate_sds_secret_configs", i), sds, sdsFields)
		refs.certSDS = append(refs.certSDS, sds.GetName())
	}
	if v := c.GetValidationContext(); v != nil {
		t.validation(p+".validation_context", v, s)
	}
	if sds := c.GetValidationContextSdsSecretConfig(); sds != nil {
		t.check(p+".validation_context_sds_secret_config", sds, sdsFields)
		refs.caSDS = sds.GetName()
	}
	if tp := c.GetTlsParams(); tp != nil {
		t.check(p+".tls_params", tp, tlsParamsFields)
		params = tp
	}
	return refs, c.GetAlpnProtocols(), params
}

var tlsVersions = map[tlsv3.TlsParameters_TlsProtocol]string{
	tlsv3.TlsParameters_TLS_AUTO: "", tlsv3.TlsParameters_TLSv1_2: "1.2", tlsv3.TlsParameters_TLSv1_3: "1.3",
}

func (t *tr) version(p string, v tlsv3.TlsParameters_TlsProtocol) string {
	s, ok := tlsVersions[v]
	if !ok {
		t.fail(p, "TLS version %s is not supported (TLSv1_2, TLSv1_3)", v)
	}
	return s
}
