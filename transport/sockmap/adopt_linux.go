package sockmap

import (
	"fmt"

	"github.com/proxylab/proxylab/transport"
)

var _ transport.ListenerFDer = listener{}

// ListenerFD is the reactor listener's socket (transport.ListenerFDer);
// inherited sockets reach the reactor through the same Options.
func (l listener) ListenerFD() (int, error) {
	f, ok := l.Listener.(transport.ListenerFDer)
	if !ok {
		return -1, fmt.Errorf("sockmap: the reactor listener has no descriptor")
	}
	return f.ListenerFD()
}
