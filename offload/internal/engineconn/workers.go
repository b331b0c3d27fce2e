package engineconn

import "time"

// Handshakers reuses the goroutines that run handshakes: crypto code grows a
// goroutine's stack to tens of KiB, and a fresh goroutine per handshake pays
// for that growth every time. It is a cache, not a bound: when no idle
// worker waits, a new one starts, so slow clients never queue behind others.
type Handshakers struct {
	jobs chan *Conn
}

// idleFor is how long an idle worker waits for the next handshake.
const idleFor = 30 * time.Second

// NewHandshakers returns an empty worker pool.
func NewHandshakers() *Handshakers { return &Handshakers{jobs: make(chan *Conn)} }

func (w *Handshakers) run(c *Conn) {
	select {
	case w.jobs <- c: // an idle worker took it
	default:
		go w.worker(c)
	}
}

func (w *Handshakers) worker(c *Conn) {
	t := time.NewTimer(idleFor)
	defer t.Stop()
	for {
		c.handshake()
		t.Reset(idleFor)
		select {
		case c = <-w.jobs:
		case <-t.C:
			return
		}
	}
}
