package netguard

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestInternal(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		internal bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"10.0.0.1", true}, {"172.16.5.4", true}, {"192.168.1.1", true},
		{"169.254.169.254", true}, {"fd00:ec2::254", true}, {"fe80::1", true}, {"100.64.0.1", true},
		{"0.0.0.0", true}, {"::", true}, {"224.0.0.1", true}, {"::ffff:10.0.0.1", true}, {"::ffff:127.0.0.1", true},
		{"93.184.216.34", false}, {"2606:2800:220:1::1", false}, {"8.8.8.8", false}, {"100.128.0.1", false},
	} {
		if got := Internal(netip.MustParseAddr(tc.addr)); got != tc.internal {
			t.Errorf("Internal(%s) = %v, want %v", tc.addr, got, tc.internal)
		}
	}
}

// L1: the broker's provider client refuses internal addresses when it
// dials, before any connection is made: a listening loopback server sees
// no connection, a name that resolves to loopback is refused as well
// (the DNS-rebinding case), and nothing is sent towards 10.0.0.1 or the
// metadata address.
func TestDialGuardRefusesPrivateAddresses(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	guarded := NewHTTPClient(5*time.Second, false)
	for _, u := range []string{
		srv.URL + "/token",                    // loopback, listening
		"http://localhost:" + port + "/token", // a name resolved to loopback at dial time
		"http://10.0.0.1:9/token",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/token",
	} {
		start := time.Now()
		_, err := guarded.Post(u, "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
		if !errors.Is(err, ErrPrivateAddress) {
			t.Errorf("POST %s: %v, want ErrPrivateAddress", u, err)
		}
		// Refused in Control, before connect: no connection timeout ran.
		if d := time.Since(start); d > time.Second {
			t.Errorf("POST %s took %s: the refusal came after a connection attempt", u, d)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the loopback server saw %d connections through the guard", n)
	}

	// Allowed explicitly (--allow-private-token-urls, tests, the demo).
	resp, err := NewHTTPClient(5*time.Second, true).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if conns.Load() != 1 {
		t.Fatalf("allowed client: %d connections", conns.Load())
	}
}

func TestCheckURL(t *testing.T) {
	for u, refused := range map[string]bool{
		"https://10.0.0.1/token": true, "https://169.254.169.254/": true, "http://127.0.0.1:8080/token": true,
		"http://localhost/token": true, "https://LOCALHOST./x": true, "https://a.localhost/x": true,
		"https://[::1]/token": true, "https://[fe80::1%25eth0]/x": true,
		"https://idp.example.com/token": false, "https://93.184.216.34/token": false,
	} {
		if err := CheckURL(u); (err != nil) != refused {
			t.Errorf("CheckURL(%s) = %v, want refused=%v", u, err, refused)
		}
	}
}

// TestIdleConnectionsKept sends rounds of 32 concurrent requests to one
// host: the client keeps the connections of a round for the next, where
// Go's default transport keeps 2 and opens 30 anew each round.
func TestIdleConnectionsKept(t *testing.T) {
	const inFlight, rounds = 32, 3
	var conns atomic.Int64
	release := make(chan struct{})
	var arrived atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1)%inFlight == 0 {
			close(release)
		}
		<-release
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := NewHTTPClient(5*time.Second, true)
	for range rounds {
		// All of a round's requests are in flight at once: the handler
		// holds them until the last arrives.
		release = make(chan struct{})
		errs := make(chan error, inFlight)
		for range inFlight {
			go func() {
				resp, err := c.Get(srv.URL)
				if err == nil {
					resp.Body.Close()
				}
				errs <- err
			}()
		}
		for range inFlight {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := conns.Load(); n != inFlight {
		t.Fatalf("%d rounds of %d concurrent requests opened %d connections, want %d", rounds, inFlight, n, inFlight)
	}
}
