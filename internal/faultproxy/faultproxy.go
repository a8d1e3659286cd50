// Package faultproxy is a TCP proxy on loopback that tests put between a
// client and a server (PostgreSQL, typically) to simulate outages without
// stopping the server: refused connections, as when the server is down or
// restarting, and silent ones, as in a network partition.
//
// A Proxy is safe for concurrent use.
package faultproxy

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Mode is how a Proxy treats traffic.
type Mode int

// Modes.
const (
	// Forward passes traffic both ways.
	Forward Mode = iota
	// Refuse closes every open connection and closes new ones as soon as
	// they are accepted: the server looks down.
	Refuse
	// Blackhole keeps connections open but drops everything sent either
	// way, and accepts new connections that never get an answer: the server
	// looks unreachable. Leaving Blackhole closes the connections that
	// lived through it, since bytes were lost on them.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Forward:
		return "forward"
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Proxy forwards connections accepted on a loopback port to a target address.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	mode     Mode               // guarded by mu
	conns    map[*link]struct{} // guarded by mu: open links
	accepted int                // guarded by mu: connections accepted so far
	closed   bool               // guarded by mu
}

// link is one proxied connection: the client side and the server side.
type link struct {
	client, server net.Conn // server is nil for a connection accepted in Blackhole
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.client.Close()
		if l.server != nil {
			l.server.Close()
		}
	})
}

// New starts a proxy on 127.0.0.1 with an ephemeral port, forwarding to
// target (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the host:port the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many connections the proxy has accepted.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Set switches the proxy to mode m.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return
	}
	if m == Refuse || p.mode == Blackhole {
		for l := range p.conns {
			l.close()
			delete(p.conns, l)
		}
	}
	p.mode = m
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for l := range p.conns {
		l.close()
		delete(p.conns, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		p.accepted++
		mode, closed := p.mode, p.closed
		p.mu.Unlock()
		if closed || mode == Refuse {
			c.Close()
			continue
		}
		l := &link{client: c}
		if mode == Forward {
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			l.server = s
		}
		p.mu.Lock()
		if p.closed || p.mode != mode {
			p.mu.Unlock()
			l.close()
			continue
		}
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		if l.server == nil {
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.pipe(l, c, io.Discard) }()
			continue
		}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.pipe(l, c, l.server) }()
		go func() { defer p.wg.Done(); p.pipe(l, l.server, c) }()
	}
}

// pipe copies src to dst while the proxy forwards, drops what it reads in
// Blackhole, and closes the link when either side fails.
func (p *Proxy) pipe(l *link, src net.Conn, dst io.Writer) {
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			forward := p.mode == Forward
			p.mu.Unlock()
			if forward {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF or a closed connection: the deferred close ends the link
		}
	}
}
