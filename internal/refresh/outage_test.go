package refresh_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/faultproxy"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// readyz answers the status of GET /readyz and how long it took.
func readyz(t *testing.T, url string) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// warnings counts the warnings and errors replica name logged in logs.
func warnings(logs, name string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "replica="+name) && (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) {
			n++
		}
	}
	return n
}

// TestStoreOutage cuts one replica off PostgreSQL through a proxy, by
// refusing connections (the server is down or restarting) and by dropping
// traffic silently (a partition), while consumers keep reading. Cached valid
// tokens keep being served quickly, reads that need the store fail within a
// bound, refreshes pause without spinning or flooding the log, /readyz says
// 503, and everything resumes by itself when the database is back.
func TestStoreOutage(t *testing.T) {
	for _, mode := range []faultproxy.Mode{faultproxy.Refuse, faultproxy.Blackhole} {
		t.Run(mode.String(), func(t *testing.T) { testStoreOutage(t, mode) })
	}
}

func testStoreOutage(t *testing.T, mode faultproxy.Mode) {
	w := newWorld(t, true, nil)
	ctx := context.Background()
	proxy := w.proxy()
	admin := w.open("admin", nil) // an operator's direct connection
	st := w.open("b", proxy)
	const storeTimeout = 2 * time.Second
	b := w.replica("b", st, refresh.Config{PollInterval: 2 * time.Second, StoreTimeout: storeTimeout}, true)
	srv := httptest.NewServer(tkhttp.NewServer(tkhttp.Config{Store: st, Refresher: b.Refresher, Logger: w.logger("b-http")}))
	defer srv.Close()

	w.credential(admin, "cached", time.Time{})
	w.credential(admin, "uncached", time.Now().Add(time.Hour))
	eventually(t, 2*time.Second, "first refresh", func() bool { return token(b, "cached") != "" })
	if code, _ := readyz(t, srv.URL); code != http.StatusOK {
		t.Fatalf("readyz before the outage: %d", code)
	}
	served := token(b, "cached")

	// The outage.
	proxy.Set(mode)
	logsBefore := warnings(w.logs.String(), "b")
	providerBefore := w.refreshes()
	w.credential(admin, "due", time.Time{}) // due now; b cannot claim it

	// Consumers read the cached credential throughout (its cache entry is
	// reloaded every PollInterval, which fails).
	const outage = 5 * time.Second
	var (
		mu      sync.Mutex
		reads   int
		failed  int
		slowest time.Duration
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				s, err := b.Token(ctx, "cached", 0)
				took := time.Since(start)
				mu.Lock()
				reads++
				if err != nil || s.Token.AccessToken != served {
					failed++
				}
				slowest = max(slowest, took)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	// Reads that need the store fail within a bound.
	start := time.Now()
	_, err := b.Token(ctx, "uncached", 0)
	uncachedTook := time.Since(start)
	if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAVAILABLE {
		t.Errorf("read of an uncached credential during the outage = %v, want EUNAVAILABLE", err)
	}
	start = time.Now()
	_, err = b.Refresh(ctx, "cached", "")
	forcedTook := time.Since(start)
	if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAVAILABLE {
		t.Errorf("forced refresh during the outage = %v, want EUNAVAILABLE", err)
	}
	code, readyTook := readyz(t, srv.URL)
	if code != http.StatusServiceUnavailable {
		t.Errorf("readyz during the outage: %d, want 503", code)
	}
	bound := storeTimeout + 500*time.Millisecond
	for what, took := range map[string]time.Duration{"uncached read": uncachedTook, "forced refresh": forcedTook, "readyz": readyTook} {
		if took > bound {
			t.Errorf("%s took %s during the outage, want at most %s", what, took, bound)
		}
	}

	time.Sleep(time.Until(start.Add(outage)))
	close(stop)
	wg.Wait()
	outageWarnings := warnings(w.logs.String(), "b") - logsBefore
	t.Logf("%s outage of %s: %d cached reads, %d failed, slowest %s; uncached read failed after %s, forced refresh after %s, readyz 503 after %s; %d warnings logged, %d connection attempts through the proxy",
		mode, outage, reads, failed, slowest.Round(time.Millisecond), uncachedTook.Round(time.Millisecond), forcedTook.Round(time.Millisecond),
		readyTook.Round(time.Millisecond), outageWarnings, proxy.Accepted())
	if failed > 0 || reads < 100 {
		t.Errorf("%d of %d reads of a cached valid token failed during the outage", failed, reads)
	}
	if slowest > staleWaitBound {
		t.Errorf("the slowest read of a cached token took %s, want at most %s", slowest, staleWaitBound)
	}
	if w.refreshes() != providerBefore {
		t.Errorf("%d refreshes during the outage", w.refreshes()-providerBefore)
	}
	// Not one line per failed attempt: the loop and the listener each log
	// the start of the outage, the HTTP server each failed readiness check.
	if outageWarnings > 12 {
		t.Errorf("%d warnings logged during a %s outage:\n%s", outageWarnings, outage, w.logs.String())
	}

	// The database is back: everything resumes by itself.
	proxy.Set(faultproxy.Forward)
	ready := eventually(t, 5*time.Second, "readyz 200", func() bool {
		code, _ := readyz(t, srv.URL)
		return code == http.StatusOK
	})
	// The loop claims the credential that fell due during the outage (the
	// read below would refresh it too, so it comes after).
	resumed := eventually(t, 6*time.Second, "due credential refreshed by the loop", func() bool {
		c, err := admin.Credential(ctx, "due")
		return err == nil && c.Token != nil
	})
	if !strings.Contains(w.logs.String(), "refreshes resumed") {
		t.Error("no log line says refreshes resumed")
	}
	if token(b, "uncached") == "" || token(b, "due") == "" {
		t.Fatal("a credential is not served after the outage")
	}
	t.Logf("after the outage: readyz 200 after %s, the credential due meanwhile refreshed by the loop after %s",
		ready.Round(time.Millisecond), resumed.Round(time.Millisecond))

	// Change notifications work again: an operator's forced refresh through
	// another connection is served by b within a second.
	other := w.replica("other", admin, refresh.Config{PollInterval: time.Minute}, false)
	c, err := other.Refresh(ctx, "cached", "")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "b follows changes again", func() bool { return token(b, "cached") == c.Token.AccessToken })
	w.checkProvider()
}

// staleWaitBound is the longest a read of a cached valid token may take
// while the store does not answer: the refresher's 200 ms wait, plus slack
// for a loaded CI machine under the race detector.
const staleWaitBound = 600 * time.Millisecond

// TestBackendsTerminated terminates every database session of a replica, as
// a PostgreSQL restart does: reads go on, the pool and the listener come
// back by themselves, and the replica follows changes again.
func TestBackendsTerminated(t *testing.T) {
	w := newWorld(t, true, nil)
	ctx := context.Background()
	admin := w.open("admin", nil)
	st := w.open("b", nil)
	b := w.replica("b", st, refresh.Config{PollInterval: time.Minute}, true)
	w.credential(admin, "c", time.Time{})
	eventually(t, 2*time.Second, "first refresh", func() bool { return token(b, "c") != "" })

	for round := range 3 {
		n := terminate(t, w, "b")
		if n == 0 {
			t.Fatal("no session of b to terminate")
		}
		if token(b, "c") == "" {
			t.Fatal("b stopped serving its cached token")
		}
		other := w.replica("other", admin, refresh.Config{PollInterval: time.Minute}, false)
		c, err := other.Refresh(ctx, "c", "")
		if err != nil {
			t.Fatal(err)
		}
		other.stop()
		d := eventually(t, 2*time.Second, "b follows changes after its sessions were terminated", func() bool {
			return token(b, "c") == c.Token.AccessToken
		})
		t.Logf("round %d: terminated %d sessions; b served the new token %s after the refresh", round, n, d.Round(time.Millisecond))
	}
	w.checkProvider()
}

// terminate ends every database session of the named replica and returns
// how many there were.
func terminate(t *testing.T, w *world, name string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		w.schema+"-"+name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
