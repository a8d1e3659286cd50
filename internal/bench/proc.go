package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// replicaProc is one run of a replica process.
type replicaProc struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once the process exited and its output was drained
	exitedAt time.Time     // written before done is closed
	expected atomic.Bool   // the run stopped it on purpose
}

func (p *replicaProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// replica is one `tokenkeeper serve` subprocess slot, with a fixed port.
type replica struct {
	index int
	addr  string // 127.0.0.1:PORT, kept across restarts
	url   string
	log   *os.File // the replica's stdout and stderr, all runs appended

	mu   sync.Mutex
	proc *replicaProc // guarded by mu; nil while stopped
}

// replicaCommand is how a replica process is started: the binary, its
// arguments after "serve --addr ADDR", and its whole environment.
type replicaCommand struct {
	bin  string
	args []string
	env  []string
}

// start starts rep's process, retrying (the database may be restarting,
// the port may still be held) for up to within.
func (rep *replica) start(ctx context.Context, rc replicaCommand, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		p, err := rep.startProc(ctx, rc)
		if err == nil {
			rep.mu.Lock()
			rep.proc = p
			rep.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("start replica %d: %w", rep.index, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start replica %d: %w", rep.index, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// startProc starts one `tokenkeeper serve` process and waits until it
// prints that it serves.
func (rep *replica) startProc(ctx context.Context, rc replicaCommand) (*replicaProc, error) {
	cmd := exec.Command(rc.bin, append([]string{"serve", "--addr", rep.addr}, rc.args...)...)
	cmd.Env = rc.env
	ready := make(chan struct{})
	// serve logs "tokenkeeper serving" (standard error) once it listens.
	cmd.Stderr = &watchWriter{w: rep.log, marker: []byte("tokenkeeper serving"), seen: ready}
	dieWithParent(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(rep.log, "--- bench chaos: starting replica %d at %s\n", rep.index, time.Now().UTC().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", rc.bin, err)
	}
	p := &replicaProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintf(rep.log, "stdout: %s\n", sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		p.exitedAt = time.Now()
		fmt.Fprintf(rep.log, "--- bench chaos: replica %d exited at %s: %s\n", rep.index, p.exitedAt.UTC().Format(time.RFC3339Nano), cmd.ProcessState)
		close(p.done)
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("replica %d exited before serving (%s); see %s", rep.index, cmd.ProcessState, rep.log.Name())
	case <-timer.C:
	case <-ctx.Done():
	}
	p.expected.Store(true)
	_ = cmd.Process.Kill()
	<-p.done
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("replica %d did not serve within 30s; see %s", rep.index, rep.log.Name())
}

// stop sends sig to rep's process and waits up to wait for it to exit,
// then kills it. It reports whether it had to kill.
func (rep *replica) stop(sig syscall.Signal, wait time.Duration) (escalated bool) {
	rep.mu.Lock()
	p := rep.proc
	rep.proc = nil
	rep.mu.Unlock()
	if p == nil {
		return false
	}
	p.expected.Store(true)
	_ = p.cmd.Process.Signal(sig)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-p.done:
		return false
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return true
	}
}

// takeIfDead returns rep's process, and forgets it, if it exited without
// being told to.
func (rep *replica) takeIfDead() *replicaProc {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	p := rep.proc
	if p != nil && p.exited() && !p.expected.Load() {
		rep.proc = nil
		return p
	}
	return nil
}

// termWait is how long a replica may take to stop after SIGTERM: its
// shutdown timeout (15s by default) and a little more.
const termWait = 20 * time.Second

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// childEnv is the environment of every subprocess: the given variables
// (the database and master key: never on a command line, where the process
// list would show them), and what PostgreSQL clients and the OS need from
// environ.
func childEnv(environ []string, own ...string) []string {
	env := slices.Clone(own)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || k == "TMPDIR" || strings.HasPrefix(k, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// watchWriter writes to w and closes seen the first time marker appears
// in what was written (within one write, as a log line is).
type watchWriter struct {
	w      io.Writer
	marker []byte
	seen   chan struct{}
	once   sync.Once
}

func (ww *watchWriter) Write(b []byte) (int, error) {
	if bytes.Contains(b, ww.marker) {
		ww.once.Do(func() { close(ww.seen) })
	}
	return ww.w.Write(b)
}
