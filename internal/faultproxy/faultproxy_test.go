package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line on c and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("unexpected answer " + line)
	}
	return nil
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func TestModes(t *testing.T) {
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	c1, r1 := dial(t, p)
	if err := roundTrip(c1, r1, 2*time.Second); err != nil {
		t.Fatalf("forward: %v", err)
	}

	// Refuse: the open connection is closed, a new one is closed at once.
	p.Set(Refuse)
	if err := roundTrip(c1, r1, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("refuse, open connection: err = %v, want it closed", err)
	}
	c2, r2 := dial(t, p)
	if err := roundTrip(c2, r2, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("refuse, new connection: err = %v, want it closed", err)
	}

	// Forward again, then Blackhole: nothing answers, nothing is closed.
	p.Set(Forward)
	c3, r3 := dial(t, p)
	if err := roundTrip(c3, r3, 2*time.Second); err != nil {
		t.Fatalf("forward again: %v", err)
	}
	p.Set(Blackhole)
	if err := roundTrip(c3, r3, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackhole, open connection: err = %v, want a timeout", err)
	}
	c4, r4 := dial(t, p)
	if err := roundTrip(c4, r4, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackhole, new connection: err = %v, want a timeout", err)
	}

	// Leaving Blackhole closes the connections that lost bytes; new ones work.
	p.Set(Forward)
	if err := roundTrip(c3, r3, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after blackhole, old connection: err = %v, want it closed", err)
	}
	c5, r5 := dial(t, p)
	if err := roundTrip(c5, r5, 2*time.Second); err != nil {
		t.Fatalf("after blackhole, new connection: %v", err)
	}
	if got := p.Accepted(); got != 5 {
		t.Errorf("Accepted() = %d, want 5", got)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, p)
	if err := roundTrip(c, r, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := roundTrip(c, r, 2*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after Close: err = %v, want the connection closed", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Error("the proxy still accepts connections after Close")
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Forward: "forward", Refuse: "refuse", Blackhole: "blackhole", Mode(9): "Mode(9)"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
	}
}
