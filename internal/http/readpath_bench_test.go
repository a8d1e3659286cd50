package http_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// BenchmarkReadPath measures one GET /v1/credentials/NAME/token through
// the whole handler (authentication by API key from its cache, the
// refresher's in-memory token, encoding), without the network: off, and
// with metrics on (what --metrics-addr adds to a read).
func BenchmarkReadPath(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := "metrics=off"
		if withMetrics {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			cfg := tkhttp.Config{}
			if withMetrics {
				cfg.Metrics = metrics.New(metrics.Config{})
			}
			h, apiKey := readPathServer(b, cfg)
			read := func() int {
				req := httptest.NewRequest("GET", "/v1/credentials/api/token", nil)
				req.Header.Set("Authorization", "Bearer "+apiKey)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				return w.Code
			}
			if code := read(); code != http.StatusOK {
				b.Fatalf("read: %d", code)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if read() != http.StatusOK {
						b.Error("read failed")
						return
					}
				}
			})
		})
	}
}

// readPathServer returns the API of a broker on a fresh SQLite store (cfg
// with its Store, Refresher and AuthStore set) holding the credential "api", whose
// token outlives the test, and an admin API key.
func readPathServer(tb testing.TB, cfg tkhttp.Config) (http.Handler, string) {
	tb.Helper()
	ctx := context.Background()
	key := make([]byte, 32)
	rand.Read(key)
	store, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "tk.db"), key)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	c := &tokenkeeper.Credential{Name: "api", TokenURL: "https://idp.example/token", GrantType: tokenkeeper.GrantClientCredentials,
		ClientID: "id", ClientSecret: "s", AuthStyle: tokenkeeper.AuthStyleHeader,
		Token:         &tokenkeeper.Token{AccessToken: "access-token", TokenType: "Bearer", ExpiresAt: time.Now().Add(24 * time.Hour)},
		NextRefreshAt: time.Now().Add(23 * time.Hour)}
	if err := store.CreateCredential(ctx, c); err != nil {
		tb.Fatal(err)
	}
	apiKey, rec := tkhttp.NewAPIKey("bench", tokenkeeper.RoleAdmin, nil)
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		tb.Fatal(err)
	}
	ref, err := refresh.New(refresh.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Store, cfg.Refresher, cfg.AuthStore = store, ref, store // AuthStore: token reads audited, as serve does
	return tkhttp.NewServer(cfg), apiKey
}
