package http

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// coarsePair returns a coarse listener with a 20 ms tick, the server's
// side of one connection accepted from it, and the client's side.
func coarsePair(t *testing.T) (*coarseListener, net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newCoarseListener(ln, 20*time.Millisecond)
	t.Cleanup(func() { l.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return l, server, client
}

// readAfter reads one byte from c, which the peer sends after delay (none
// if delay < 0), and returns how long the read took and its error.
func readAfter(t *testing.T, c, peer net.Conn, delay time.Duration) (time.Duration, error) {
	t.Helper()
	if delay >= 0 {
		go func() {
			time.Sleep(delay)
			_, _ = peer.Write([]byte{1})
		}()
	}
	start := time.Now()
	_, err := io.ReadFull(c, make([]byte, 1))
	return time.Since(start), err
}

func TestCoarseDeadlines(t *testing.T) {
	t.Run("a far deadline fails the read, at most a tick or two late", func(t *testing.T) {
		_, s, c := coarsePair(t)
		if err := s.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		took, err := readAfter(t, s, c, -1)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline: %v, want %v", err, os.ErrDeadlineExceeded)
		}
		if took < 190*time.Millisecond || took > time.Second {
			t.Fatalf("read failed after %s, want about 200ms", took)
		}
	})
	t.Run("cleared before it passes, it never applies", func(t *testing.T) {
		_, s, c := coarsePair(t)
		_ = s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_ = s.SetReadDeadline(time.Time{})
		if _, err := readAfter(t, s, c, 300*time.Millisecond); err != nil {
			t.Fatalf("read with the deadline cleared: %v", err)
		}
	})
	t.Run("a past deadline applies at once, and clearing it works", func(t *testing.T) {
		_, s, c := coarsePair(t)
		_ = s.SetReadDeadline(time.Unix(1, 0)) // net/http aborts a background read so
		if took, err := readAfter(t, s, c, -1); !errors.Is(err, os.ErrDeadlineExceeded) || took > 50*time.Millisecond {
			t.Fatalf("read with a past deadline: %v after %s", err, took)
		}
		_ = s.SetReadDeadline(time.Time{})
		if _, err := readAfter(t, s, c, 50*time.Millisecond); err != nil {
			t.Fatalf("read after clearing: %v", err)
		}
	})
	t.Run("a deadline the sweeper applied is replaced by the next", func(t *testing.T) {
		_, s, c := coarsePair(t)
		_ = s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		time.Sleep(250 * time.Millisecond) // applied to the connection by now
		_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := readAfter(t, s, c, 100*time.Millisecond); err != nil {
			t.Fatalf("read under a new deadline after one passed: %v", err)
		}
		_ = s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		time.Sleep(250 * time.Millisecond)
		if _, err := s.Write([]byte{1}); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write past its deadline: %v", err)
		}
		_ = s.SetWriteDeadline(time.Time{})
		if _, err := s.Write([]byte{1}); err != nil {
			t.Fatalf("write with the deadline cleared: %v", err)
		}
	})
	t.Run("the sweeper ends with the listener and its connections", func(t *testing.T) {
		l, s, _ := coarsePair(t)
		l.Close()
		select {
		case <-l.done:
			t.Fatal("sweeper ended while a connection was open")
		case <-time.After(100 * time.Millisecond):
		}
		s.Close()
		select {
		case <-l.done:
		case <-time.After(time.Second):
			t.Fatal("sweeper still running after the listener and its connections closed")
		}
	})
}
