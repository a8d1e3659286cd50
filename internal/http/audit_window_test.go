package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// auditStores returns a real SQLite store and, with
// TOKENKEEPER_TEST_DATABASE_URL, a PostgreSQL store in a schema of its own.
func auditStores(t *testing.T) map[string]tokenkeeper.AuthStore {
	t.Helper()
	ctx := context.Background()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	lite, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tk.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	stores := map[string]tokenkeeper.AuthStore{"sqlite": lite}
	dbURL := os.Getenv("TOKENKEEPER_TEST_DATABASE_URL")
	if dbURL == "" {
		return stores
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "tk_http_audit_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.Open(ctx, dbURL, key, postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pg.Close()
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	stores["postgres"] = pg
	return stores
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func auditOf(t *testing.T, st tokenkeeper.AuthStore, action string) []*tokenkeeper.AuditRecord {
	t.Helper()
	recs, err := st.Audit(context.Background(), tokenkeeper.AuditFilter{Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func near(a, b time.Time) bool { return a.Sub(b).Abs() < time.Millisecond }

// Token reads and proxied requests are aggregated over the window: many
// in one window make one record, dated at the first, counting them and
// their span; a read after the window is in the next record.
func TestAuditReadWindow(t *testing.T) {
	for name, st := range auditStores(t) {
		t.Run(name, func(t *testing.T) {
			t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
			clock := &fakeClock{now: t0}
			a := newAuditWriter(st, slog.New(slog.DiscardHandler), clock.Now, 16, time.Minute)
			for i := range 100 {
				clock.Set(t0.Add(time.Duration(i) * 300 * time.Millisecond)) // the last at 29.7 s
				a.tokenRead("apikey:svc", "payments", "10.0.0.1", a.now())
				a.proxyRequest("apikey:svc", "payments", "10.0.0.1", i%10 == 0, i == 99)
			}
			a.tokenRead("apikey:other", "payments", "10.0.0.2", a.now())
			for _, s := range []time.Duration{time.Second, 30 * time.Second, 59*time.Second + 999*time.Millisecond} {
				clock.Set(t0.Add(s))
				a.flush(false, time.Time{})
				if recs := auditOf(t, st, "token.read"); len(recs) != 0 {
					t.Fatalf("%d token.read records %s into the window, want none before its end", len(recs), s)
				}
			}
			clock.Set(t0.Add(time.Minute))
			a.flush(false, time.Time{})
			reads := map[string]*tokenkeeper.AuditRecord{}
			for _, r := range auditOf(t, st, "token.read") {
				if reads[r.Actor] != nil {
					t.Fatalf("two token.read records of %s in one window", r.Actor)
				}
				reads[r.Actor] = r
			}
			if r := reads["apikey:svc"]; len(reads) != 2 || r == nil || r.Detail != "100 reads in 30s" || !near(r.Time, t0) ||
				r.Target != "payments" || r.RemoteAddr != "10.0.0.1" || r.Outcome != "ok" {
				t.Fatalf("the window's reads: %+v, want one record of 100 reads in 30s at %s", r, t0)
			}
			if r := reads["apikey:other"]; r.Detail != "1 read" || !near(r.Time, t0.Add(29700*time.Millisecond)) {
				t.Fatalf("one read: %+v", r)
			}
			proxied := auditOf(t, st, "credential.proxy")
			if len(proxied) != 1 || proxied[0].Detail != "100 requests in 30s, 10 replayed after a 401, 1 failed" ||
				!near(proxied[0].Time, t0) || proxied[0].Outcome != "ok" {
				t.Fatalf("the window's proxied requests: %+v", proxied)
			}

			// The next window starts with the next read.
			clock.Set(t0.Add(61 * time.Second))
			a.tokenRead("apikey:svc", "payments", "10.0.0.1", a.now())
			clock.Set(t0.Add(120 * time.Second))
			a.flush(false, time.Time{})
			if recs := auditOf(t, st, "token.read"); len(recs) != 2 {
				t.Fatalf("%d token.read records, want 2 before the second window ends", len(recs))
			}
			clock.Set(t0.Add(121 * time.Second))
			a.flush(false, time.Time{})
			recs := auditOf(t, st, "token.read")
			if len(recs) != 3 || recs[0].Detail != "1 read" || recs[0].Actor != "apikey:svc" || !near(recs[0].Time, t0.Add(61*time.Second)) {
				t.Fatalf("after the second window: %+v", recs)
			}
			if len(auditOf(t, st, "credential.proxy")) != 1 {
				t.Fatal("a proxy record without proxied requests")
			}
		})
	}
}

// While reads wait for the end of their window, a refusal is still
// written within about a second; at shutdown the pending reads are
// written.
func TestAuditReadWindowShutdownAndRefusals(t *testing.T) {
	for name, st := range auditStores(t) {
		t.Run(name, func(t *testing.T) {
			a := newAuditWriter(st, slog.New(slog.DiscardHandler), time.Now, 16, 0) // the default window, a minute
			if a.window != DefaultAuditReadWindow {
				t.Fatalf("window %s, want the default %s", a.window, DefaultAuditReadWindow)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				a.run(ctx)
			}()
			first := time.Now()
			for range 5 {
				a.tokenRead("apikey:svc", "payments", "10.0.0.1", a.now())
			}
			a.proxyRequest("apikey:svc", "payments", "10.0.0.1", false, false)
			refused := time.Now()
			a.record(ctx, &tokenkeeper.AuditRecord{Time: refused, Actor: "anonymous", Action: "auth.failed",
				Outcome: "denied", RemoteAddr: "10.0.0.9", Detail: "unknown API key"})
			for len(auditOf(t, st, "auth.failed")) == 0 {
				if time.Since(refused) > 2500*time.Millisecond {
					t.Fatal("no refusal record 2.5 s after the refusal")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if recs := auditOf(t, st, "token.read"); len(recs) != 0 {
				t.Fatalf("reads written before their window ended: %+v", recs)
			}
			cancel()
			<-done
			recs := auditOf(t, st, "token.read")
			if len(recs) != 1 || recs[0].Detail != "5 reads in 1s" || recs[0].Time.Before(first.Add(-time.Millisecond)) || recs[0].Time.After(refused) {
				t.Fatalf("at shutdown: %+v, want one record of 5 reads", recs)
			}
			if recs := auditOf(t, st, "credential.proxy"); len(recs) != 1 || recs[0].Detail != "1 request" {
				t.Fatalf("proxied requests at shutdown: %+v", recs)
			}
		})
	}
}
