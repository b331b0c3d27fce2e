package main

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/proxylab/proxylab/core/config"
	"github.com/proxylab/proxylab/core/server"
)

// reloader re-reads the config file (SIGHUP, POST /reload, --watch),
// validates it whole on the same path as at start (config.Load with the
// binary's Known, then the command-line overrides) and applies it; a bad
// file is refused, logged with every field path and counted, and the
// config in force keeps serving. Reloads are serialised by Server.Apply.
type reloader struct {
	file     string // "" is the embedded default
	override func(*config.Config)
	srv      *server.Server
	log      *slog.Logger
	// Under --xds (xds.go): load allows a file without listeners, and
	// rebase adds the control plane's resources before applying.
	load   func(string, config.Known) (*config.Config, error)
	rebase func(*config.Config, func(*config.Config) error) error
}

// reload loads and applies the file; trigger names the cause in the log.
func (r *reloader) reload(trigger string) (server.Summary, error) {
	load := config.Load
	if r.load != nil {
		load = r.load
	}
	cfg, err := load(r.file, known())
	if err != nil {
		r.srv.RejectReload()
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				r.log.Error("reload refused: invalid config", "trigger", trigger, "file", r.file, "error", e.Error())
			}
		} else {
			r.log.Error("reload refused", "trigger", trigger, "file", r.file, "error", err.Error())
		}
		return server.Summary{}, err
	}
	r.override(cfg)
	var sum server.Summary
	apply := func(c *config.Config) (err error) { sum, err = r.srv.ApplySummary(c); return err }
	if r.rebase != nil {
		err = r.rebase(cfg, apply) // the file is the base of the xDS resources
	} else {
		err = apply(cfg)
	}
	if err != nil {
		r.log.Error("reload refused", "trigger", trigger, "file", r.file, "error", err.Error())
		return sum, err
	}
	r.log.Info("config reloaded", "trigger", trigger, "file", r.file, "hash", r.srv.ConfigHash(), "summary", sum.String())
	return sum, nil
}

// reloadText is reload for the admin API: the summary, or every error on a
// line of its own (field paths first).
func (r *reloader) reloadText() (string, error) {
	sum, err := r.reload("admin")
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			lines := make([]string, len(es))
			for i, e := range es {
				lines[i] = e.Error()
			}
			return "", errors.New(strings.Join(lines, "\n"))
		}
		return "", err
	}
	return "reloaded (config " + r.srv.ConfigHash() + "): " + sum.String(), nil
}

// start reloads on SIGHUP and, with watch, when the file's mtime or size
// changes (polled every second: no extra module, and it sees a file
// replaced by rename as well as one rewritten). The returned func stops
// both.
func (r *reloader) start(watch bool) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				r.reload("SIGHUP")
			}
		}
	}()
	if watch && r.file != "" {
		mt, size, _ := r.stamp() // now: a change right after the start is seen
		go r.watch(done, time.Second, mt, size)
	}
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// stamp is the file's mtime and size (ok false when it cannot be read).
func (r *reloader) stamp() (time.Time, int64, bool) {
	fi, err := os.Stat(r.file)
	if err != nil {
		return time.Time{}, 0, false
	}
	return fi.ModTime(), fi.Size(), true
}

// watch polls the file until done is closed, from the stamp it had.
func (r *reloader) watch(done <-chan struct{}, every time.Duration, mt time.Time, size int64) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-done:
			return
		case <-tk.C:
		}
		m, sz, ok := r.stamp()
		if !ok || (m.Equal(mt) && sz == size) {
			continue // missing (being replaced) or unchanged
		}
		mt, size = m, sz
		r.reload("watch")
	}
}
