package console_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestEventStream: the stream refuses a signed-out browser; it outlives
// the server's read and write timeouts (heartbeats), sends "change" after
// a credential changes, and "expired" once the session's access token no
// longer verifies.
func TestEventStream(t *testing.T) {
	h := newHarness(t)
	h.credential("cal")
	// A server with short timeouts, as serve's (which are longer).
	srv := httptest.NewUnstartedServer(h.handler)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = time.Second, time.Second
	srv.Start()
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("signed out: %d", resp.StatusCode)
	}

	b := h.browser()
	b.signIn(adminUser, adminPassword)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ui/events", nil)
	for _, ck := range b.jar.Cookies(mustURL(h.url + "/ui/")) {
		req.AddCookie(ck)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, ct)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// wait reads the stream until a line starting with prefix.
	wait := func(prefix string, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the stream ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q within %s", prefix, within)
			}
		}
	}
	// Heartbeats past the timeouts (2 s apart in the harness).
	wait(": ping", 10*time.Second)
	wait(": ping", 10*time.Second)
	if st, out := h.api("POST", "/v1/credentials/cal/refresh", nil); st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, out)
	}
	wait("event: change", 10*time.Second)
	h.authSkew.Store(int64(20 * time.Minute)) // the access token expires
	wait("event: expired", 10*time.Second)
}
