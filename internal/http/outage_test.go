package http_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/faultproxy"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// While PostgreSQL cannot be reached, the HTTP API keeps serving valid
// cached tokens to API keys it has seen, answers /readyz with 503, and no
// request blocks for long; it recovers by itself.
func TestDatabaseOutageKeepsServingCachedTokens(t *testing.T) {
	dbURL := os.Getenv("TOKENKEEPER_TEST_DATABASE_URL")
	if dbURL == "" {
		if os.Getenv("TOKENKEEPER_REQUIRE_POSTGRES") != "" {
			t.Fatal("TOKENKEEPER_REQUIRE_POSTGRES is set but TOKENKEEPER_TEST_DATABASE_URL is not")
		}
		t.Skip("TOKENKEEPER_TEST_DATABASE_URL is not set")
	}
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "tk_http_outage_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	u, _ := url.Parse(dbURL)
	proxy, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	u.Host = proxy.Addr()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	store, err := postgres.Open(ctx, u.String(), key, postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["search_path"] = schema
		c.ConnConfig.ConnectTimeout = time.Second
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", "app-secret"))
	defer idp.Close()
	ref, err := refresh.New(refresh.Config{Store: store, ProviderTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = ref.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(tkhttp.NewServer(tkhttp.Config{Store: store, Refresher: ref, KeyCacheTTL: 500 * time.Millisecond}))
	defer srv.Close()
	apiKey, rec := tkhttp.NewAPIKey("admin", tokenkeeper.RoleAdmin, nil)
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateCredential(ctx, &tokenkeeper.Credential{Name: "svc", TokenURL: idp.TokenURL(),
		GrantType: tokenkeeper.GrantClientCredentials, ClientID: "app", ClientSecret: "app-secret",
		AuthStyle: tokenkeeper.AuthStyleHeader, NextRefreshAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, time.Duration) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	if st, _ := get("/v1/credentials/svc/token"); st != 200 {
		t.Fatalf("before the outage: %d", st)
	}

	for _, mode := range []faultproxy.Mode{faultproxy.Refuse, faultproxy.Blackhole} {
		proxy.Set(mode)
		var slowest time.Duration
		end := time.Now().Add(3 * time.Second) // past the key cache TTL and the cache's reload time
		for time.Now().Before(end) {
			st, d := get("/v1/credentials/svc/token")
			if st != 200 {
				t.Fatalf("%v outage: a cached token read answered %d", mode, st)
			}
			slowest = max(slowest, d)
			time.Sleep(20 * time.Millisecond)
		}
		if st, d := get("/readyz"); st != http.StatusServiceUnavailable || d > 3*time.Second {
			t.Fatalf("%v outage: /readyz answered %d after %s", mode, st, d)
		}
		if slowest > 2500*time.Millisecond {
			t.Fatalf("%v outage: a read took %s", mode, slowest)
		}
		t.Logf("%v outage: cached token reads all 200, slowest %s", mode, slowest.Round(time.Millisecond))
		proxy.Set(faultproxy.Forward)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if st, _ := get("/readyz"); st == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not ready again after the %v outage", mode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
