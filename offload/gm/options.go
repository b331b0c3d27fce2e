package gm

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/offload"
)

// Module is the gm engine as cmd registers it: its certificate entries
// take the encryption pair, and any listener's tls block may add `tlcp:`
// (TLCP beside the listener's TLS on one port).
var Module = offload.Module{
	Name:           Name,
	New:            New,
	CertOptions:    DecodeCertOptions,
	ListenerBlocks: map[string]offload.ListenerBlockDecoder{"tlcp": DecodeTLCP, "tls13_sm": DecodeTLS13SM},
}

// CertOptions are a certificate entry's keys of the gm engine: TLCP's
// encryption certificate and key, besides the signing pair.
type CertOptions struct {
	EncCertFile string `yaml:"enc_cert_file,omitempty"`
	EncKeyFile  string `yaml:"enc_key_file,omitempty"`
}

// Files are the encryption pair's files (reloaded on change).
func (o *CertOptions) Files() []string { return []string{o.EncCertFile, o.EncKeyFile} }

var _ offload.Filer = (*CertOptions)(nil)

// Validate: both files are required and must exist.
func (o *CertOptions) Validate(path string) []error {
	if o.EncCertFile == "" || o.EncKeyFile == "" {
		return []error{registry.Errorf(path, "engine gm needs enc_cert_file and enc_key_file (TLCP's encryption certificate) besides cert_file and key_file")}
	}
	return append(checkFile(o.EncCertFile, path+".enc_cert_file"), checkFile(o.EncKeyFile, path+".enc_key_file")...)
}

// DecodeCertOptions is the module's certificate options decoder.
func DecodeCertOptions(node *yaml.Node, path string) (any, []error) {
	o, errs := registry.Decode[CertOptions](node, path)
	if errs != nil {
		return nil, errs
	}
	return o, nil
}

func checkFile(name, path string) []error {
	if name == "" {
		return []error{registry.Errorf(path, "required")}
	}
	if _, err := os.Stat(name); err != nil {
		return []error{registry.Errorf(path, "%v", err)}
	}
	return nil
}

// TLCPCert is one double-certificate entry of a tlcp block.
type TLCPCert struct {
	CertFile    string `yaml:"cert_file"`
	KeyFile     string `yaml:"key_file"`
	EncCertFile string `yaml:"enc_cert_file,omitempty"`
	EncKeyFile  string `yaml:"enc_key_file,omitempty"`
}

// TLCP is a listener's `tlcp:` block: the port also serves TLCP (GB/T
// 38636) clients with the gm engine, told apart from TLS ones by the
// ClientHello's record version.
type TLCP struct {
	// Certificates: signing and encryption pairs; the first serves.
	Certificates []TLCPCert `yaml:"certificates"`
	ClientAuth   string     `yaml:"client_auth"` // none or require
	ClientCA     string     `yaml:"client_ca,omitempty"`
}

// SetDefaults: no client authentication.
func (t *TLCP) SetDefaults() { t.ClientAuth = "none" }

// Validate checks the entries and the client policy.
func (t *TLCP) Validate(path string) []error {
	var errs []error
	if len(t.Certificates) == 0 {
		errs = append(errs, registry.Errorf(path+".certificates", "at least one certificate is required"))
	}
	for j, c := range t.Certificates {
		p := fmt.Sprintf("%s.certificates[%d]", path, j)
		errs = append(errs, checkFile(c.CertFile, p+".cert_file")...)
		errs = append(errs, checkFile(c.KeyFile, p+".key_file")...)
		o := CertOptions{EncCertFile: c.EncCertFile, EncKeyFile: c.EncKeyFile}
		errs = append(errs, o.Validate(p)...)
	}
	switch t.ClientAuth {
	case "none":
	case "require":
		if t.ClientCA == "" {
			errs = append(errs, registry.Errorf(path+".client_ca", "required when client_auth is require"))
		}
	default:
		errs = append(errs, registry.Errorf(path+".client_auth", "unknown policy %q (none, require)", t.ClientAuth))
	}
	return errs
}

// DecodeTLCP is the decoder of the listener block `tlcp`.
func DecodeTLCP(node *yaml.Node, path, engine string) (any, []error) {
	t, errs := registry.Decode[TLCP](node, path)
	if engine == Name {
		errs = append([]error{registry.Errorf(path, "the listener's engine is already gm; tlcp adds TLCP beside another engine's TLS")}, errs...)
	}
	if errs != nil {
		return nil, errs
	}
	return t, nil
}

// NewServer builds the TLCP server beside the listener's TLS, sharing its
// handshake timeout and stats.
func (t *TLCP) NewServer(listener *offload.ServerConfig) (offload.Server, error) {
	gc := &offload.ServerConfig{ClientAuth: t.ClientAuth, ClientCA: t.ClientCA, HandshakeTimeout: listener.HandshakeTimeout, Stats: listener.Stats}
	for _, c := range t.Certificates {
		gc.Certificates = append(gc.Certificates, offload.CertFiles{CertFile: c.CertFile, KeyFile: c.KeyFile,
			Options: &CertOptions{EncCertFile: c.EncCertFile, EncKeyFile: c.EncKeyFile}})
	}
	return Engine{}.NewServer(gc)
}

var _ offload.Beside = (*TLCP)(nil)

// SMCert is one single SM2 certificate of a tls13_sm block.
type SMCert struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// TLS13SM is a listener's `tls13_sm:` block: the port also serves TLS 1.3
// with the SM suites of RFC 8998, told apart from the listener's own TLS
// by the ClientHello under the policy.
type TLS13SM struct {
	// Certificates: SM2 certificates, chosen by SNI; the first by default.
	Certificates []SMCert `yaml:"certificates"`
	// Policy: sm_preferred, standard_preferred or sm_only.
	Policy     string `yaml:"policy"`
	ClientAuth string `yaml:"client_auth"` // none or require
	ClientCA   string `yaml:"client_ca,omitempty"`
}

// SetDefaults: SM clients get SM.
func (t *TLS13SM) SetDefaults() { t.Policy, t.ClientAuth = PolicySMPreferred, "none" }

// Validate checks the entries and the policy.
func (t *TLS13SM) Validate(path string) []error {
	var errs []error
	if len(t.Certificates) == 0 {
		errs = append(errs, registry.Errorf(path+".certificates", "at least one certificate is required"))
	}
	for j, c := range t.Certificates {
		p := fmt.Sprintf("%s.certificates[%d]", path, j)
		errs = append(errs, checkFile(c.CertFile, p+".cert_file")...)
		errs = append(errs, checkFile(c.KeyFile, p+".key_file")...)
	}
	switch t.Policy {
	case PolicySMPreferred, PolicyStandardPreferred, PolicySMOnly:
	default:
		errs = append(errs, registry.Errorf(path+".policy", "unknown policy %q (sm_preferred, standard_preferred, sm_only)", t.Policy))
	}
	switch t.ClientAuth {
	case "none":
	case "require":
		errs = append(errs, checkFile(t.ClientCA, path+".client_ca")...)
	default:
		errs = append(errs, registry.Errorf(path+".client_auth", "unknown policy %q (none, require)", t.ClientAuth))
	}
	return errs
}

// DecodeTLS13SM is the decoder of the listener block `tls13_sm`.
func DecodeTLS13SM(node *yaml.Node, path, engine string) (any, []error) {
	t, errs := registry.Decode[TLS13SM](node, path)
	if errs != nil {
		return nil, errs
	}
	return t, nil
}

// NewServer builds the TLS 1.3-SM server beside the listener's engine,
// sharing its ALPN, handshake timeout and stats.
func (t *TLS13SM) NewServer(listener *offload.ServerConfig) (offload.Server, error) {
	return newSMServer(t, listener)
}

var _ offload.Beside = (*TLS13SM)(nil)
