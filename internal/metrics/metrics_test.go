package metrics

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

func TestErrorClassIsBounded(t *testing.T) {
	for code, want := range map[string]string{
		"": "", "invalid_grant": "invalid_grant", "timeout": "timeout", "network": "network",
		"http_503": "http_5xx", "http_404": "http_4xx", "http_429": "http_429",
		"my_provider_made_this_up": "other", "http_5034": "other", "SECRET-abc": "other",
	} {
		if got := errorClass(code); got != want {
			t.Errorf("errorClass(%q) = %q, want %q", code, got, want)
		}
	}
}

func TestNilMetricsDoNothing(t *testing.T) {
	var m *Metrics
	m.TokenRead(nil)
	m.ForcedRefresh(true)
	m.Claimed(3)
	m.RefreshStarted(&tokenkeeper.Credential{}, time.Now())
	m.RefreshAttempted(&tokenkeeper.Credential{}, &tokenkeeper.Event{Outcome: "ok"})
	m.WebhookAttempt("credential.deleted", "delivered", 0)
	m.ConnectSession("", ConnectConnected)
	m.Poll(context.Background())
	m.Run(context.Background())
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// TestPollAndCounters: the poll reads statuses, the lowest time remaining
// and per-credential series (removed with their credential); counters
// count with bounded labels.
func TestPollAndCounters(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tk.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC().Truncate(time.Second)
	for i, st := range []tokenkeeper.Status{tokenkeeper.StatusActive, tokenkeeper.StatusActive, tokenkeeper.StatusNeedsReauth} {
		c := &tokenkeeper.Credential{Name: "c" + string(rune('a'+i)), TokenURL: "https://idp.example/token", GrantType: tokenkeeper.GrantClientCredentials,
			ClientID: "id", ClientSecret: "s", AuthStyle: tokenkeeper.AuthStyleHeader, Status: st,
			Token: &tokenkeeper.Token{AccessToken: "at", ExpiresAt: now.Add(time.Duration(i+1) * time.Minute)}}
		if i == 1 {
			c.Token.ExpiresAt = now.Add(-30 * time.Second) // expired while active
		}
		if err := db.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	m := New(Config{Store: db, PerCredential: true, Now: func() time.Time { return now }})
	m.Poll(ctx)
	m.TokenRead(nil)
	m.TokenRead(tokenkeeper.Errorf(tokenkeeper.ENOTREADY, "x"))
	m.TokenRead(errors.New("boom"))
	m.RefreshAttempted(nil, &tokenkeeper.Event{Outcome: "error", ErrorCode: "weird_vendor_code", Latency: 20 * time.Millisecond})
	m.RefreshAttempted(nil, &tokenkeeper.Event{Outcome: "fenced"})
	text := scrape(t, m)
	for _, want := range []string{
		`tokenkeeper_credentials{status="active"} 2`, `tokenkeeper_credentials{status="needs_reauth"} 1`,
		`tokenkeeper_token_lowest_remaining_seconds -30`, `tokenkeeper_store_up 1`,
		`tokenkeeper_token_reads_total{outcome="ok"} 1`, `tokenkeeper_token_reads_total{outcome="not_ready"} 1`,
		`tokenkeeper_token_reads_total{outcome="error"} 1`,
		`tokenkeeper_refresh_attempts_total{error_class="other",outcome="error",provider=""} 1`,
		`tokenkeeper_leases_fenced_total 1`,
		`tokenkeeper_credential_status{credential="cc",status="needs_reauth"} 1`,
		`tokenkeeper_credential_token_remaining_seconds{credential="ca"} 60`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if strings.Contains(text, "weird_vendor_code") {
		t.Error("an unbounded error code became a label")
	}
	if err := db.DeleteCredential(ctx, "cc"); err != nil {
		t.Fatal(err)
	}
	m.Poll(ctx)
	if text := scrape(t, m); strings.Contains(text, `credential="cc"`) {
		t.Error("a deleted credential keeps its series")
	}
}

// BenchmarkTokenRead: what counting a read costs on the read path.
func BenchmarkTokenRead(b *testing.B) {
	m := New(Config{})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.TokenRead(nil)
		}
	})
}
