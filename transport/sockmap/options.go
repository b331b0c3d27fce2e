package sockmap

import (
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/proxylab/proxylab/foundation/registry"
	"github.com/proxylab/proxylab/transport"
)

// Name is the registered name.
const Name = "sockmap"

// Options are the sockmap transport's settings: the config's top-level
// `sockmap:` block, decoded by DecodeOptions.
type Options struct {
	// Cgroup is the cgroup v2 directory the sockops program attaches to:
	// same-host sockets of its processes are accelerated. Empty: the
	// proxy's own cgroup. A directory that does not exist is created and
	// the proxy joins it.
	Cgroup string `yaml:"cgroup"`
	// Splice joins tcp_proxy pairs in the kernel (default true).
	Splice *bool `yaml:"splice"`
}

// SetDefaults: splicing on.
func (o *Options) SetDefaults() { o.Splice = new(bool); *o.Splice = true }

// Validate checks the block whichever transport runs (as it always has).
func (o *Options) Validate(path string) []error {
	if o.Cgroup != "" && !filepath.IsAbs(o.Cgroup) {
		return []error{registry.Errorf(path+".cgroup", "must be an absolute path to a cgroup v2 directory, got %q", o.Cgroup)}
	}
	return nil
}

func (o *Options) splice() bool { return o.Splice == nil || *o.Splice }

// DecodeOptions is the module's options decoder.
func DecodeOptions(node *yaml.Node, path string, _ bool) (any, []error) {
	o, errs := registry.Decode[Options](node, path)
	if errs != nil {
		return nil, errs
	}
	return o, nil
}

var _ transport.OptionsDecoder = DecodeOptions
