package refresh_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// TestProviderConnectionsReused refreshes 48 credentials of one provider,
// 8 at a time, round after round (3 s tokens, replaced every 2 s): with
// the refresher's default client every refresh after the first round
// finds an idle connection, so the provider sees no more connections than
// the refreshes in flight. (Go's default transport keeps 2 idle
// connections per host, so 6 more a round were opened and closed.)
func TestProviderConnectionsReused(t *testing.T) {
	const credentials, concurrency = 48, 8
	idp := oauthtest.NewHandler(oauthtest.WithClient("app", "s3cret"), oauthtest.WithLifetime(3*time.Second))
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(idp.Handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	idp.SetIssuer(srv.URL)
	defer idp.Close()

	ctx := context.Background()
	key := make([]byte, 32)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tk.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range credentials {
		if err := st.CreateCredential(ctx, &tokenkeeper.Credential{Name: fmt.Sprintf("c%02d", i), TokenURL: idp.TokenURL(),
			GrantType: tokenkeeper.GrantClientCredentials, ClientID: "app", ClientSecret: "s3cret", AuthStyle: tokenkeeper.AuthStyleHeader}); err != nil {
			t.Fatal(err)
		}
	}
	var ok atomic.Int64
	r, err := refresh.New(refresh.Config{Store: st, Concurrency: concurrency, PollInterval: time.Second,
		OnAttempt: func(_ *tokenkeeper.Credential, ev *tokenkeeper.Event) {
			if ev.Outcome == tokenkeeper.OutcomeOK {
				ok.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, 20*time.Second, "three rounds of refreshes", func() bool { return ok.Load() >= 3*credentials })
	t.Logf("%d refreshes over %d connections", ok.Load(), conns.Load())
	if n := conns.Load(); n > concurrency {
		t.Fatalf("%d refreshes opened %d connections to the provider; at most %d refreshes were in flight", ok.Load(), n, concurrency)
	}
}
