package refresh_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// idleProfile is a profile whose access tokens never expire (no
// expires_in) and whose rotating refresh tokens die after 2 s unused.
const idleProfile = `{"name":"idle-2s","display_name":"Idle limit of 2 s","docs":["https://example.com/docs"],
	"token_url":"https://example.com/token","auth_style":"header","pkce":true,"tokens_expire":false,
	"refresh_tokens":{"issued":true,"rotates":true,"idle_lifetime":"2s"}}`

// TestKeepAliveIdleLimit: a grant whose tokens never expire but whose
// refresh tokens die after 2 s idle (oauthtest: no expires_in, rotation,
// refresh tokens valid 2 s) is kept alive by keep-alive refreshes at half
// the limit, and stays active across 10 s (4 s with -short); revoked at
// the provider, it turns needs_reauth at the next keep-alive, after one
// provider call, and is not tried again.
func TestKeepAliveIdleLimit(t *testing.T) {
	span := 10 * time.Second
	if testing.Short() {
		span = 4 * time.Second
	}
	prof, err := catalog.Parse("idle-2s", []byte(idleProfile))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, false, nil, oauthtest.WithRefreshLifetime(2*time.Second),
		oauthtest.WithPersonality(oauthtest.Personality{OmitExpiresIn: true, Rotates: true, AuthStyle: "header"}))
	ctx := context.Background()
	st := w.open("a", nil)
	if err := st.CreateProvider(ctx, &tokenkeeper.Provider{Name: "idle", TokenURL: w.idp.TokenURL(), ClientID: "app",
		ClientSecret: w.secret, AuthStyle: tokenkeeper.AuthStyleHeader, Preset: prof.Name}); err != nil {
		t.Fatal(err)
	}
	rt := w.idp.IssueRefreshToken("app", "")
	w.secrets = append(w.secrets, rt)
	if err := st.CreateCredential(ctx, &tokenkeeper.Credential{Name: "kept", Provider: "idle",
		GrantType: tokenkeeper.GrantRefreshToken, RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	w.replica("a", st, refresh.Config{
		MinKeepAlive: 100 * time.Millisecond,
		Profiles: func(name string) (*catalog.Profile, error) {
			if name == prof.Name {
				return prof, nil
			}
			return catalog.Lookup(name)
		},
	}, false)

	// The stored token, not the served one: a token replaced every second
	// is served with an expiry shortened by ExpiryMargin (2 s), which this
	// test's 2 s idle limit is too short for; real idle limits are hours.
	eventually(t, 5*time.Second, "the first token", func() bool { return stored(t, st, "kept").Token != nil })
	start := w.refreshes()
	for end := time.Now().Add(span); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		c := stored(t, st, "kept")
		if c.Status != tokenkeeper.StatusActive {
			t.Fatalf("after %d keep-alives: status %s (%s)", w.refreshes()-start, c.Status, c.LastErrorCode)
		}
		if c.Token == nil || !c.Token.ExpiresAt.After(time.Now().Add(24*time.Hour)) {
			t.Fatalf("a token without expires_in of a profile whose tokens never expire: %+v", c.Token)
		}
	}
	n := w.refreshes() - start
	t.Logf("%d keep-alive refreshes in %s with a 2 s idle limit", n, span)
	// One keep-alive a second (half the idle limit); a loaded machine may
	// lose a few, but never enough to let 2 s pass idle.
	if n < int(span/time.Second)/2 || n > 3*int(span/time.Second) {
		t.Errorf("%d keep-alive refreshes in %s, want about one a second", n, span)
	}
	if c := stored(t, st, "kept"); !w.idp.ValidAccessToken(c.Token.AccessToken) {
		t.Error("the current token is not valid at the provider")
	}
	w.checkProvider()

	// Refused calls are counted as refresh requests that issued no token,
	// so that a keep-alive in flight at the revocation cannot blur them.
	refused := func() int { return w.refreshes() - w.idp.Stats().AccessTokensIssued }
	before := refused()
	w.idp.RevokeClientTokens("app")
	eventually(t, 5*time.Second, "needs_reauth at the next keep-alive", func() bool {
		return stored(t, st, "kept").Status == tokenkeeper.StatusNeedsReauth
	})
	time.Sleep(1500 * time.Millisecond) // three keep-alive periods
	if got := refused() - before; got != 1 {
		t.Errorf("%d provider calls for the revoked grant, want 1", got)
	}
	if c := stored(t, st, "kept"); c.LastErrorCode != "invalid_grant" {
		t.Errorf("last error code %q", c.LastErrorCode)
	}
}

// checkProfile is a profile whose access tokens never expire, with no
// known idle limit, and a token check (Slack's style: 200 and ok true).
const checkProfile = `{"name":"checked","display_name":"Checked","docs":["https://example.com/docs"],
	"token_url":"https://example.com/token","auth_style":"header","pkce":true,"tokens_expire":false,
	"refresh_tokens":{"issued":true,"rotates":true},"api":{"base_url":"https://api.example.com"},
	"check":{"path":"/auth.test","method":"POST","ok_member":"ok"},"errors":{"error_in_200":true}}`

// TestKeepAliveTokenCheck: a grant whose tokens never expire and whose
// profile has a token check is kept alive by checks, not refreshes (no
// refresh token spent); revoked at the provider, the next keep-alive's
// check fails, the refresh that follows gets invalid_grant, and the
// credential needs re-authorization after those two calls.
func TestKeepAliveTokenCheck(t *testing.T) {
	prof, err := catalog.Parse("checked", []byte(checkProfile))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, false, nil, oauthtest.WithPersonality(oauthtest.Personality{OmitExpiresIn: true, Rotates: true,
		AuthStyle: "header", ErrorIn200: true, ResourcePaths: []string{"/auth.test"}}))
	ctx := context.Background()
	st := w.open("a", nil)
	if err := st.CreateProvider(ctx, &tokenkeeper.Provider{Name: "ck", TokenURL: w.idp.TokenURL(), ClientID: "app",
		ClientSecret: w.secret, AuthStyle: tokenkeeper.AuthStyleHeader, Preset: prof.Name, APIBaseURL: w.idp.URL()}); err != nil {
		t.Fatal(err)
	}
	rt := w.idp.IssueRefreshToken("app", "")
	w.secrets = append(w.secrets, rt)
	if err := st.CreateCredential(ctx, &tokenkeeper.Credential{Name: "checked", Provider: "ck",
		GrantType: tokenkeeper.GrantRefreshToken, RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	w.replica("a", st, refresh.Config{
		KeepAliveInterval: 300 * time.Millisecond, MinKeepAlive: 100 * time.Millisecond,
		Profiles: func(name string) (*catalog.Profile, error) {
			if name == prof.Name {
				return prof, nil
			}
			return catalog.Lookup(name)
		},
	}, false)
	eventually(t, 5*time.Second, "the first token", func() bool { return stored(t, st, "checked").Token != nil })
	first := stored(t, st, "checked").Token.AccessToken
	checks := w.idp.Stats().ResourceRequests
	eventually(t, 10*time.Second, "three keep-alive checks", func() bool { return w.idp.Stats().ResourceRequests-checks >= 3 })
	c := stored(t, st, "checked")
	if n := w.refreshes(); n != 1 || c.Token.AccessToken != first || c.Status != tokenkeeper.StatusActive {
		t.Fatalf("after checks: %d refreshes (want the first only), token kept %v, status %s", n, c.Token.AccessToken == first, c.Status)
	}
	if evs, err := st.Events(ctx, "checked", 1); err != nil || len(evs) == 0 || !strings.Contains(evs[0].Message, "no refresh needed") {
		t.Errorf("the check is not recorded: %v", err)
	}

	// Failed checks and refused refreshes, counted so that a check in
	// flight at the revocation cannot blur them.
	failed := func() (int, int) {
		st := w.idp.Stats()
		return st.TokenRequests["refresh_token"] - st.AccessTokensIssued, st.ResourceRejected
	}
	r0, k0 := failed()
	w.idp.RevokeClientTokens("app")
	eventually(t, 5*time.Second, "needs_reauth", func() bool { return stored(t, st, "checked").Status == tokenkeeper.StatusNeedsReauth })
	time.Sleep(time.Second)
	if r1, k1 := failed(); r1-r0 != 1 || k1-k0 != 1 {
		t.Errorf("revoked grant: %d refused refreshes and %d failed checks, want 1 and 1", r1-r0, k1-k0)
	}
}
