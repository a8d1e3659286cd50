package http

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// CoarseDeadlines wraps ln so that the deadlines net/http sets on its
// connections cost a memory write instead of a runtime timer.
//
// net/http sets four deadlines on every request of a keep-alive
// connection (idle, headers, write, and clears the write deadline), and a
// runtime timer is re-armed for each: under wrk on two cores that was 7%
// of the broker's CPU on the token read path, its largest cost after the
// system calls, where a bare handler without timeouts pays almost none. A
// deadline more than a few ticks away is kept in memory; a sweeper checks
// every connection each tick (100 ms) and applies a deadline that has
// passed to the connection itself, which fails the read or write it
// interrupts exactly as the deadline would have, at most a tick late. A
// deadline that is near or past (net/http aborts a background read with
// one) and any clearing of a deadline applied that way go to the
// connection at once. The sweeper ends when the listener is closed and
// its last connection is.
func CoarseDeadlines(ln net.Listener) net.Listener {
	return newCoarseListener(ln, 100*time.Millisecond)
}

func newCoarseListener(ln net.Listener, tick time.Duration) *coarseListener {
	l := &coarseListener{Listener: ln, tick: tick, conns: make(map[*coarseConn]struct{}), done: make(chan struct{})}
	l.now.Store(time.Now().UnixNano())
	go l.sweep()
	return l
}

type coarseListener struct {
	net.Listener
	tick time.Duration
	now  atomic.Int64 // the sweeper's last clock reading, Unix nanoseconds

	mu     sync.Mutex
	conns  map[*coarseConn]struct{} // guarded by mu
	closed bool                     // guarded by mu: the listener was closed
	done   chan struct{}            // closed when the sweeper ends
}

func (l *coarseListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &coarseConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[cc] = struct{}{}
	l.mu.Unlock()
	return cc, nil
}

func (l *coarseListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

// sweep applies the deadlines that have passed, every tick.
func (l *coarseListener) sweep() {
	defer close(l.done)
	t := time.NewTicker(l.tick)
	defer t.Stop()
	var due []*coarseConn
	for now := range t.C {
		l.now.Store(now.UnixNano())
		n := now.UnixNano()
		due = due[:0]
		l.mu.Lock()
		if l.closed && len(l.conns) == 0 {
			l.mu.Unlock()
			return
		}
		for c := range l.conns {
			if r := c.read.at.Load(); r != 0 && r <= n {
				due = append(due, c)
			} else if w := c.write.at.Load(); w != 0 && w <= n {
				due = append(due, c)
			}
		}
		l.mu.Unlock()
		for _, c := range due {
			c.read.apply(n, c.Conn.SetReadDeadline)
			c.write.apply(n, c.Conn.SetWriteDeadline)
		}
	}
}

// near is how far ahead a deadline must be to be kept in memory: beyond
// the next sweep even if the sweeper's clock is a tick old.
func (l *coarseListener) near() int64 { return 3 * int64(l.tick) }

// coarseConn is a connection whose far deadlines are kept in memory.
type coarseConn struct {
	net.Conn
	l           *coarseListener
	read, write coarseDeadline
}

// coarseDeadline is one direction's deadline.
type coarseDeadline struct {
	at atomic.Int64 // the deadline kept in memory, Unix nanoseconds; 0: none
	// set: a deadline may be on the connection itself (applied, or near
	// when set), which a later deadline must clear. mu orders the real
	// calls of the setter and the sweeper.
	set atomic.Bool
	mu  sync.Mutex
}

// setDeadline sets the deadline t: kept in memory when it is far, else on
// the connection through real.
func (d *coarseDeadline) setDeadline(l *coarseListener, t time.Time, real func(time.Time) error) error {
	if !t.IsZero() && t.UnixNano()-l.now.Load() <= l.near() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.at.Store(0)
		d.set.Store(true)
		return real(t)
	}
	var at int64
	if !t.IsZero() {
		at = t.UnixNano()
	}
	d.at.Store(at)
	if d.set.Load() {
		// One was applied to the connection (or the sweeper is applying
		// one): clear it, once the sweeper is done.
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.set.Load() {
			d.set.Store(false)
			return real(time.Time{})
		}
	}
	return nil
}

// apply puts the deadline in memory on the connection if it has passed
// at now and is still the one set.
func (d *coarseDeadline) apply(now int64, real func(time.Time) error) {
	at := d.at.Load()
	if at == 0 || at > now {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.set.Store(true)               // first, so that a setter that stores after the check below clears it
	if d.at.CompareAndSwap(at, 0) { // still the one set: the connection holds it from now on
		_ = real(time.Unix(0, at))
	}
}

func (c *coarseConn) SetReadDeadline(t time.Time) error {
	return c.read.setDeadline(c.l, t, c.Conn.SetReadDeadline)
}

func (c *coarseConn) SetWriteDeadline(t time.Time) error {
	return c.write.setDeadline(c.l, t, c.Conn.SetWriteDeadline)
}

func (c *coarseConn) SetDeadline(t time.Time) error {
	err1 := c.SetReadDeadline(t)
	err2 := c.SetWriteDeadline(t)
	if err1 != nil {
		return err1
	}
	return err2
}

func (c *coarseConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// ReadFrom lets a response copied from a file use the connection's own
// ReadFrom (sendfile), as net/http does with a bare connection.
func (c *coarseConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// CloseWrite half-closes the connection when it can (net/http uses it
// before closing a connection whose request body it did not read).
func (c *coarseConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
