package lab

import (
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// ports hands out the loopback ports of one run, in order from a base port
// (Scenario.BasePort), or, with base 0, ports the kernel reports free at
// the time, so two runs (or another service) never collide on fixed ones.
type ports struct{ next int }

// addr is the next port as 127.0.0.1:port.
func (p *ports) addr() (string, error) {
	n, err := p.take()
	return fmt.Sprintf("127.0.0.1:%d", n), err
}

func (p *ports) take() (int, error) {
	if p.next > 0 {
		n := p.next
		p.next++
		return n, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("lab: a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// runAddrs are the upstreams' addresses of one run.
type runAddrs struct {
	upstream, grpc string            // the HTTP origin; `proxybench upstream -grpc`
	rpc            map[string]string // `proxybench upstream -rpc <protocol>`, by protocol
}

// rpcProtocols are the RPC protocols a scenario may measure.
var rpcProtocols = []string{"bolt", "dubbo"}

func newRunAddrs(p *ports) (*runAddrs, error) {
	a := &runAddrs{rpc: map[string]string{}}
	var err error
	if a.upstream, err = p.addr(); err != nil {
		return nil, err
	}
	if a.grpc, err = p.addr(); err != nil {
		return nil, err
	}
	for _, proto := range rpcProtocols {
		if a.rpc[proto], err = p.addr(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// start runs cmd as the leader of a process group of its own, so stop can
// reach whatever it forks (nginx's workers).
func start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd.Start()
}

// stop asks a process started by start to exit (SIGINT: nginx's fast
// shutdown waits for its workers) and reaps it; one still running after 3 s
// is killed with its whole process group.
func stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	// taskset execs the target, so the pid is the system's own (and the
	// group's).
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}
