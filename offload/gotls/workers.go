package gotls

import "time"

// handshakers reuses the goroutines that run handshakes: crypto code grows a
// goroutine's stack to tens of KiB, and a fresh goroutine per handshake pays
// for that growth every time. It is a cache, not a bound: when no idle
// worker waits, a new one starts, so slow clients never queue behind others.
type handshakers struct {
	jobs chan *conn
}

// idleFor is how long an idle worker waits for the next handshake.
const idleFor = 30 * time.Second

func newHandshakers() *handshakers { return &handshakers{jobs: make(chan *conn)} }

func (w *handshakers) run(c *conn) {
	select {
	case w.jobs <- c: // an idle worker took it
	default:
		go w.worker(c)
	}
}

func (w *handshakers) worker(c *conn) {
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
