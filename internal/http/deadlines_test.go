package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// deadlineServer serves, with the limits t, a handler that answers 200
// with the length of the body it read: after sleeping for the duration in
// the header Sleep, if any, and, with the header Short-Write-Deadline,
// after moving its write deadline 50 ms ahead (as the console's event
// stream moves its own). It returns the server's address.
func deadlineServer(t *testing.T, to Timeouts) string {
	t.Helper()
	h := &Server{s: &server{}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.Header.Get("Sleep")); err == nil {
			time.Sleep(d)
		}
		if r.Header.Get("Short-Write-Deadline") != "" {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, n)
	})}
	srv := h.HTTPServer(to, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(CoarseDeadlines(ln)) }() // as serve runs it
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// conn is one client connection writing raw HTTP/1.1.
type conn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // the test's own bound
	return &conn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *conn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// answer reads one response: its status and body, or the error that
// ended the connection instead.
func (c *conn) answer() (int, string, error) {
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func request(method, path, headers, body string) string {
	return method + " " + path + " HTTP/1.1\r\nHost: broker\r\n" + headers + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// TestHTTPServerTimeouts: the headers must arrive within Header, a body
// within Body; a response is written within Write, on a token read as on
// any other request, on every request of a connection; a handler that
// moves its connection's deadline does not leave it to the next request.
func TestHTTPServerTimeouts(t *testing.T) {
	to := Timeouts{Header: 300 * time.Millisecond, Body: 1500 * time.Millisecond, Write: time.Second, Idle: 5 * time.Second}
	addr := deadlineServer(t, to)
	const tokenRead = "/v1/credentials/payments/token"

	t.Run("headers slower than Header", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /v1/things HTTP/1.1\r\nHost: broker\r\n")
		time.Sleep(2 * to.Header)
		c.send("Content-Length: 0\r\n\r\n")
		if code, _, err := c.answer(); code == http.StatusOK {
			t.Fatalf("headers completed after %s answered %d (%v), want the connection closed", 2*to.Header, code, err)
		}
	})
	t.Run("body slower than Header, within Body", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /v1/things HTTP/1.1\r\nHost: broker\r\nContent-Length: 5\r\n\r\n")
		time.Sleep(2 * to.Header)
		c.send("hello")
		if code, body, err := c.answer(); code != http.StatusOK || body != "5" {
			t.Fatalf("body sent %s after the headers: %d %q %v, want 200 \"5\"", 2*to.Header, code, body, err)
		}
	})
	t.Run("body slower than Body", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /v1/things HTTP/1.1\r\nHost: broker\r\nContent-Length: 5\r\n\r\n")
		time.Sleep(to.Body + 300*time.Millisecond)
		c.send("hello")
		if code, body, err := c.answer(); code == http.StatusOK {
			t.Fatalf("body sent after %s: %d %q %v, want it refused", to.Body+300*time.Millisecond, code, body, err)
		}
	})
	for _, path := range []string{tokenRead, "/v1/things"} {
		t.Run("a response slower than Write: "+path, func(t *testing.T) {
			c := dial(t, addr)
			c.send(request("GET", path, "Sleep: "+(to.Write+300*time.Millisecond).String()+"\r\n", ""))
			if code, body, err := c.answer(); err == nil {
				t.Fatalf("answer written %s after the request: %d %q, want none", to.Write+300*time.Millisecond, code, body)
			}
		})
	}
	t.Run("every request on a connection gets a write deadline", func(t *testing.T) {
		c := dial(t, addr)
		for i := range 2 {
			c.send(request("GET", tokenRead, "", ""))
			if code, _, err := c.answer(); code != http.StatusOK {
				t.Fatalf("token read %d: %d %v", i+1, code, err)
			}
		}
		c.send(request("GET", tokenRead, "Sleep: "+(to.Write+300*time.Millisecond).String()+"\r\n", ""))
		if code, body, err := c.answer(); err == nil {
			t.Fatalf("third token read on the connection answered %s late: %d %q, want no answer", to.Write+300*time.Millisecond, code, body)
		}
	})
	t.Run("a deadline a handler moved is not left to the next token read", func(t *testing.T) {
		c := dial(t, addr)
		c.send(request("GET", tokenRead, "", "")) // the connection's deadline: now + Write
		if code, _, err := c.answer(); code != http.StatusOK {
			t.Fatalf("first token read: %d %v", code, err)
		}
		c.send(request("GET", "/v1/things", "Short-Write-Deadline: 1\r\n", ""))
		if code, _, err := c.answer(); code != http.StatusOK {
			t.Fatalf("request that moves its deadline: %d %v", code, err)
		}
		time.Sleep(200 * time.Millisecond) // past the moved deadline
		c.send(request("GET", tokenRead, "", ""))
		if code, _, err := c.answer(); code != http.StatusOK {
			t.Fatalf("token read after a handler moved the deadline: %d %v", code, err)
		}
	})
}
