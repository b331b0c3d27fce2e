//go:build !linux

package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/proxylab/proxylab/core/admin"
	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/server"
	"github.com/proxylab/proxylab/transport"
)

// upgradeFlags are run's hot upgrade flags; hot upgrade is Linux only.
type upgradeFlags struct{ from string }

func (f *upgradeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.from, "upgrade-from", "", "hot upgrade (Linux only)")
}

type upgrader struct{ from string }

func newUpgrader(f upgradeFlags, stderr io.Writer) (*upgrader, io.Writer) {
	return &upgrader{from: f.from}, stderr
}

func (u *upgrader) takeOver(*slog.Logger) error {
	if u.from != "" {
		return errors.New("proxylab: hot upgrade is supported on Linux only")
	}
	return nil
}

func (u *upgrader) blockReloads(*server.Server)                                {}
func (u *upgrader) inherited() transport.Inherited                             { return nil }
func (u *upgrader) adminListener(string) net.Listener                          { return nil }
func (u *upgrader) withAdmin(*admin.Server)                                    {}
func (u *upgrader) finish(*int)                                                {}
func (u *upgrader) serve(*server.Server, *config.Config) error                 { return nil }
func (u *upgrader) handedOver() <-chan struct{}                                { return nil }
func (u *upgrader) close()                                                     {}
func (u *upgrader) drain(*server.Server, *config.Config, <-chan os.Signal) int { return 0 }
