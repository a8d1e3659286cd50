package http_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// BenchmarkReadPath measures one GET /v1/credentials/NAME/token through
// the whole handler (authentication by API key from its cache, the
// refresher's in-memory token, encoding), without the network: off, and
// with metrics on (what --metrics-addr adds to a read).
// BenchmarkOAuth2TokenPath does the same for a service client's POST
// /oauth2/token.
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
			h, apiKey, _ := readPathServer(b, cfg)
			read := func() int {
				req := httptest.NewRequest("GET", "/v1/credentials/api/token", nil)
				req.Header.Set("Authorization", "Bearer "+apiKey)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				return w.Code
			}
			benchmarkRead(b, read)
		})
	}
}

func BenchmarkOAuth2TokenPath(b *testing.B) {
	h, _, basic := readPathServer(b, tkhttp.Config{})
	const form = "grant_type=client_credentials&scope=credential%3Aapi"
	benchmarkRead(b, func() int {
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", basic)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	})
}

// benchmarkRead runs read, which answers a status, in parallel, after a
// first call that must answer 200.
func benchmarkRead(b *testing.B, read func() int) {
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
}

// readPathServer returns the API of a broker on a fresh SQLite store (cfg
// with its Store, Refresher, Auth and AuthStore set) holding the
// credential "api", whose token outlives the test, an admin API key, and
// the Authorization header (client_secret_basic) of a service client that
// may read "api".
func readPathServer(tb testing.TB, cfg tkhttp.Config) (http.Handler, string, string) {
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
	svc, err := auth.New(ctx, auth.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	secret, _, err := svc.CreateServiceClient(ctx, "svc", []string{"api"})
	if err != nil {
		tb.Fatal(err)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+secret))
	cfg.Store, cfg.Refresher, cfg.Auth, cfg.AuthStore = store, ref, svc, store // AuthStore: token reads audited, as serve does
	return tkhttp.NewServer(cfg), apiKey, basic
}
