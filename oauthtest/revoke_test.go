package oauthtest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func revoke(t *testing.T, s *Server, id, secret, token string) reply {
	t.Helper()
	return postForm(t, s.RevokeURL(), url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}, &basicCreds{id, secret})
}

func TestRevokeEndpoint(t *testing.T) {
	s := NewServer(WithClient("c", "s"), WithClient("d", "t"), WithRotation(true))
	defer s.Close()

	// An access token is revoked alone.
	rt := s.IssueRefreshToken("c", "")
	r := mustRefresh(t, s, "c", "s", rt)
	at, rt2 := r.str("access_token"), r.str("refresh_token")
	if got := revoke(t, s, "c", "s", at); got.status != 200 || got.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("revoke access token: %d %s", got.status, got.raw)
	}
	if s.ValidAccessToken(at) || getResource(t, s, at).status != http.StatusUnauthorized {
		t.Errorf("revoked access token still accepted")
	}
	r = mustRefresh(t, s, "c", "s", rt2)
	at3, rt3 := r.str("access_token"), r.str("refresh_token")

	// A refresh token takes its family with it.
	if got := revoke(t, s, "c", "s", rt3); got.status != 200 {
		t.Fatalf("revoke refresh token: %d %s", got.status, got.raw)
	}
	if s.ValidAccessToken(at3) {
		t.Errorf("access token of a revoked family still valid")
	}
	wantOAuthError(t, refresh(t, s, "c", "s", rt3), 400, "invalid_grant")

	// Unknown tokens get 200 (RFC 7009 §2.2).
	if got := revoke(t, s, "c", "s", "never-issued"); got.status != 200 {
		t.Errorf("revoke unknown token: %d", got.status)
	}
	// Another client's token is refused and left alone.
	dAT := clientCredentials(t, s, "d", "t")
	wantOAuthError(t, revoke(t, s, "c", "s", dAT), 400, "invalid_request")
	if !s.ValidAccessToken(dAT) {
		t.Errorf("a client revoked another client's token")
	}
	// The client must authenticate, and name a token.
	wantOAuthError(t, revoke(t, s, "c", "wrong", dAT), 401, "invalid_client")
	wantOAuthError(t, postForm(t, s.RevokeURL(), url.Values{}, &basicCreds{"c", "s"}), 400, "invalid_request")
	// client_secret_post works too.
	got := postForm(t, s.RevokeURL(), url.Values{"token": {dAT}, "client_id": {"d"}, "client_secret": {"t"}}, nil)
	if got.status != 200 || s.ValidAccessToken(dAT) {
		t.Errorf("revoke with client_secret_post: %d", got.status)
	}
	if st := s.Stats(); st.Revocations != 7 || st.FamiliesRevoked != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRevokeMethods(t *testing.T) {
	s := NewServer(WithClient("a", "sa"), WithClient("b", "sb"), WithRotation(true))
	defer s.Close()

	// RevokeToken: an access token alone.
	at := clientCredentials(t, s, "a", "sa")
	keep := clientCredentials(t, s, "a", "sa")
	if !s.RevokeToken(at) || s.ValidAccessToken(at) || !s.ValidAccessToken(keep) {
		t.Errorf("RevokeToken(access) did not revoke exactly that token")
	}
	if s.RevokeToken("unknown") {
		t.Errorf("RevokeToken reported an unknown token as known")
	}
	// RevokeToken: a refresh token with its family.
	rt := s.IssueRefreshToken("a", "")
	r := mustRefresh(t, s, "a", "sa", rt)
	if !s.RevokeToken(r.str("refresh_token")) || s.ValidAccessToken(r.str("access_token")) {
		t.Errorf("RevokeToken(refresh) left the family's access token valid")
	}

	// RevokeClientTokens: every token of one client, none of another.
	aRT := s.IssueRefreshToken("a", "")
	aAT := clientCredentials(t, s, "a", "sa")
	bRT := s.IssueRefreshToken("b", "")
	bAT := clientCredentials(t, s, "b", "sb")
	s.RevokeClientTokens("a")
	s.RevokeClientTokens("nobody") // no-op
	if s.ValidAccessToken(aAT) || s.ValidAccessToken(keep) {
		t.Errorf("RevokeClientTokens left an access token valid")
	}
	if info, ok := s.AccessTokenInfo(aAT); !ok || !info.Revoked || info.ClientID != "a" || info.Family != "" {
		t.Errorf("AccessTokenInfo = %+v, %v", info, ok)
	}
	wantOAuthError(t, refresh(t, s, "a", "sa", aRT), 400, "invalid_grant")
	if !s.ValidAccessToken(bAT) {
		t.Errorf("RevokeClientTokens revoked another client's token")
	}
	bRT = mustRefresh(t, s, "b", "sb", bRT).str("refresh_token")
	// New tokens of the revoked client work.
	after := clientCredentials(t, s, "a", "sa")
	if !s.ValidAccessToken(after) {
		t.Errorf("a token issued after RevokeClientTokens is not valid")
	}
	mustRefresh(t, s, "a", "sa", s.IssueRefreshToken("a", ""))

	// RevokeAll: everything.
	s.RevokeAll()
	if s.ValidAccessToken(after) || s.ValidAccessToken(bAT) {
		t.Errorf("RevokeAll left an access token valid")
	}
	wantOAuthError(t, refresh(t, s, "b", "sb", bRT), 400, "invalid_grant")
	if st := s.Stats(); st.FamiliesRevoked != 4 || st.ReuseDetections != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestResourceRejections(t *testing.T) {
	s := NewServer(WithClient("c", "s"))
	defer s.Close()
	good := clientCredentials(t, s, "c", "s")
	revoked := clientCredentials(t, s, "c", "s")
	s.RevokeToken(revoked)

	for name, header := range map[string]string{
		"missing":       "",
		"basic scheme":  "Basic Yzpz",
		"empty bearer":  "Bearer ",
		"unknown token": "Bearer oat_unknown",
		"revoked token": "Bearer " + revoked,
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, s.ResourceURL(), nil)
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			r := do(t, req)
			if r.status != http.StatusUnauthorized || r.str("error") != "invalid_token" {
				t.Fatalf("status %d body %s", r.status, r.raw)
			}
			if wa := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", wa)
			}
			if strings.Contains(r.raw, revoked) {
				t.Errorf("response echoes the token")
			}
		})
	}

	// A POST with a body is accepted and the body size reported; the
	// scheme is case-insensitive.
	req, _ := http.NewRequest(http.MethodPost, s.ResourceURL(), strings.NewReader("hello"))
	req.Header.Set("Authorization", "bearer "+good)
	r := do(t, req)
	if r.status != 200 || r.json["body_bytes"] != float64(5) || r.str("method") != "POST" {
		t.Errorf("POST resource: %d %s", r.status, r.raw)
	}
	if st := s.Stats(); st.ResourceRequests != 6 || st.ResourceRejected != 5 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRevokePrevious(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := NewServer(WithClient("c", "s"), WithRotation(true), WithRevokePrevious(on))
		defer s.Close()

		// refresh_token: each refresh revokes the family's previous access
		// token, not another family's.
		other := mustRefresh(t, s, "c", "s", s.IssueRefreshToken("c", "")).str("access_token")
		r := mustRefresh(t, s, "c", "s", s.IssueRefreshToken("c", ""))
		at1 := r.str("access_token")
		r = mustRefresh(t, s, "c", "s", r.str("refresh_token"))
		at2 := r.str("access_token")
		if got := s.ValidAccessToken(at1); got == on {
			t.Errorf("revoke previous %v: previous access token valid = %v", on, got)
		}
		if !s.ValidAccessToken(at2) || !s.ValidAccessToken(other) {
			t.Errorf("revoke previous %v: the new token or another family's token was revoked", on)
		}
		if on && getResource(t, s, at1).status != http.StatusUnauthorized {
			t.Errorf("the resource accepted a token revoked by a refresh")
		}

		// client_credentials: per client and scope.
		cc1 := clientCredentials(t, s, "c", "s")
		cc2 := clientCredentials(t, s, "c", "s")
		if got := s.ValidAccessToken(cc1); got == on {
			t.Errorf("revoke previous %v: previous client_credentials token valid = %v", on, got)
		}
		if !s.ValidAccessToken(cc2) {
			t.Errorf("revoke previous %v: the new client_credentials token is not valid", on)
		}
		want := 0
		if on {
			want = 2
		}
		if got := s.Stats().AccessTokensRevokedByRefresh; got != want {
			t.Errorf("revoke previous %v: AccessTokensRevokedByRefresh = %d, want %d", on, got, want)
		}
	}
}
