package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// BenchmarkPages10k renders the overview and the first page of the
// credentials list on the server, with 10,000 credentials in SQLite (a
// tenth of them failing, a third holding a token), through the whole
// handler: session check, store queries, in-process API call, template.
func BenchmarkPages10k(b *testing.B) {
	h := newHarnessWith(b, harnessConfig{noRefresher: true})
	ctx := context.Background()
	if st, out := h.api("POST", "/v1/providers", map[string]any{"name": "idp", "authorization_url": h.idp.AuthorizeURL(),
		"token_url": h.idp.TokenURL(), "client_id": "app", "client_secret": h.secret}); st != http.StatusCreated {
		b.Fatalf("provider: %d %v", st, out)
	}
	now := time.Now()
	for i := range 10000 {
		c := &tokenkeeper.Credential{Name: fmt.Sprintf("cred-%05d", i), Provider: "idp", GrantType: tokenkeeper.GrantRefreshToken,
			RefreshToken: "rt-" + randomSecret(), EndUserID: fmt.Sprintf("user-%d", i%500)}
		if err := h.store.CreateCredential(ctx, c); err != nil {
			b.Fatal(err)
		}
		switch {
		case i%10 == 0:
			st := tokenkeeper.StatusNeedsReauth
			if i%20 == 0 {
				st = tokenkeeper.StatusError
			}
			claimed, err := h.store.ClaimCredential(ctx, c.ID, "bench", now, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := h.store.CompleteRefresh(ctx, c.ID, "bench", claimed.Version, &tokenkeeper.RefreshResult{Status: st,
				FailureCount: 1, LastErrorCode: "invalid_grant", LastRefreshAt: now, NextRefreshAt: now.Add(time.Hour),
				Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: string(st), ErrorCode: "invalid_grant"}}); err != nil {
				b.Fatal(err)
			}
		case i%3 == 0:
			claimed, err := h.store.ClaimCredential(ctx, c.ID, "bench", now, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := h.store.CompleteRefresh(ctx, c.ID, "bench", claimed.Version, &tokenkeeper.RefreshResult{Status: tokenkeeper.StatusActive,
				Token:         &tokenkeeper.Token{AccessToken: "at-" + randomSecret(), TokenType: "Bearer", ExpiresAt: now.Add(time.Duration(i) * time.Second)},
				LastRefreshAt: now, NextRefreshAt: now.Add(time.Hour),
				Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	br := h.browser()
	br.signIn(adminUser, adminPassword)
	cookies := br.jar.Cookies(mustURL(h.url + "/ui/"))
	for _, p := range []struct{ name, path, want string }{
		{"overview", "/ui/", "cred-09990"},
		{"credentials", "/ui/credentials", "cred-00049"},
		{"credentials-needs_reauth", "/ui/credentials?status=needs_reauth", "cred-00010"},
	} {
		b.Run(p.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", p.path, nil)
			for _, ck := range cookies {
				req.AddCookie(ck)
			}
			req.RemoteAddr = "127.0.0.1:1"
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), p.want) {
					b.Fatalf("%s: %d %.300s", p.path, rec.Code, rec.Body.String())
				}
			}
		})
	}
}
