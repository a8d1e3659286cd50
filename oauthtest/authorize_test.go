package oauthtest

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B
	testRedirect = "https://app.example/cb?keep=1"
)

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize calls the authorize endpoint and returns the response.
func authorize(t *testing.T, s *Server, params url.Values) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.AuthorizeURL()+"?"+params.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// authorizeCode runs an authorization request with PKCE and returns the code.
func authorizeCode(t *testing.T, s *Server, clientID, scope, challenge string) string {
	t.Helper()
	p := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {testRedirect},
		"state": {"xyz"}, "scope": {scope}}
	if challenge != "" {
		p.Set("code_challenge", challenge)
		p.Set("code_challenge_method", "S256")
	}
	r := authorize(t, s, p)
	if r.status != http.StatusFound {
		t.Fatalf("authorize: status %d body %s", r.status, r.raw)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		t.Fatalf("authorize redirected with error %q: %s", q.Get("error"), q.Get("error_description"))
	}
	return q.Get("code")
}

func exchange(t *testing.T, s *Server, clientID, secret, code, redirect, verifier string) reply {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	var b *basicCreds
	if secret != "" {
		b = &basicCreds{clientID, secret}
	} else {
		form.Set("client_id", clientID)
	}
	return postForm(t, s.TokenURL(), form, b)
}

func TestAuthorizationCodeWithPKCE(t *testing.T) {
	s := NewServer(WithClient("web", "s"), WithRotation(true), WithReuseDetection(0))
	defer s.Close()

	if s256(testVerifier) != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("S256 helper disagrees with RFC 7636 appendix B")
	}
	r := authorize(t, s, url.Values{
		"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {testRedirect},
		"state": {"st&ate"}, "scope": {"openid profile"},
		"code_challenge": {s256(testVerifier)}, "code_challenge_method": {"S256"},
	})
	if r.status != http.StatusFound {
		t.Fatalf("authorize: %d %s", r.status, r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("authorize redirect is cacheable")
	}
	loc, _ := url.Parse(r.header.Get("Location"))
	q := loc.Query()
	if loc.Host != "app.example" || loc.Path != "/cb" || q.Get("keep") != "1" {
		t.Errorf("redirect target %s lost the redirect_uri", loc)
	}
	if q.Get("state") != "st&ate" || q.Get("iss") != s.URL() || !strings.HasPrefix(q.Get("code"), codePrefix) {
		t.Errorf("redirect query = %v", q)
	}
	code := q.Get("code")

	res := exchange(t, s, "web", "s", code, testRedirect, testVerifier)
	if res.status != 200 || res.str("refresh_token") == "" || res.str("scope") != "openid profile" {
		t.Fatalf("exchange: %d %s", res.status, res.raw)
	}
	at, rt := res.str("access_token"), res.str("refresh_token")
	if g := getResource(t, s, at); g.status != 200 || g.str("scope") != "openid profile" {
		t.Errorf("resource: %d %s", g.status, g.raw)
	}
	mustRefresh(t, s, "web", "s", rt)

	// The code is single use: a second exchange fails and revokes the
	// tokens it granted (RFC 6749 §4.1.2).
	wantOAuthError(t, exchange(t, s, "web", "s", code, testRedirect, testVerifier), 400, "invalid_grant")
	if s.ValidAccessToken(at) {
		t.Errorf("tokens granted by a reused code are still valid")
	}
	st := s.Stats()
	if st.CodesIssued != 1 || st.CodeReuses != 1 || st.FamiliesRevoked != 1 || st.FamiliesStarted != 1 ||
		st.TokenRequests["authorization_code"] != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAuthorizationCodeFailures(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(WithClient("web", "s"), WithClient("other", "o"), WithClient("pub", ""), WithNow(clock.Now))
	defer s.Close()
	challenge := s256(testVerifier)
	otherVerifier := strings.Repeat("a", 43)

	for _, tc := range []struct {
		name   string
		run    func() reply
		status int
		code   string
	}{
		{"wrong verifier", func() reply {
			return exchange(t, s, "web", "s", authorizeCode(t, s, "web", "", challenge), testRedirect, otherVerifier)
		}, 400, "invalid_grant"},
		{"missing verifier", func() reply {
			return exchange(t, s, "web", "s", authorizeCode(t, s, "web", "", challenge), testRedirect, "")
		}, 400, "invalid_grant"},
		{"malformed verifier", func() reply {
			return exchange(t, s, "web", "s", authorizeCode(t, s, "web", "", challenge), testRedirect, "short")
		}, 400, "invalid_request"},
		{"verifier without challenge", func() reply {
			return exchange(t, s, "web", "s", authorizeCode(t, s, "web", "", ""), testRedirect, testVerifier)
		}, 400, "invalid_grant"},
		{"redirect_uri mismatch", func() reply {
			return exchange(t, s, "web", "s", authorizeCode(t, s, "web", "", challenge), "https://evil.example/cb", testVerifier)
		}, 400, "invalid_grant"},
		{"redirect_uri missing", func() reply {
			return exchange(t, s, "web", "s", authorizeCode(t, s, "web", "", challenge), "", testVerifier)
		}, 400, "invalid_request"},
		{"another client's code", func() reply {
			return exchange(t, s, "other", "o", authorizeCode(t, s, "web", "", challenge), testRedirect, testVerifier)
		}, 400, "invalid_grant"},
		{"unknown code", func() reply {
			return exchange(t, s, "web", "s", "oac_nope", testRedirect, testVerifier)
		}, 400, "invalid_grant"},
		{"expired code", func() reply {
			code := authorizeCode(t, s, "web", "", challenge)
			clock.Advance(time.Minute)
			return exchange(t, s, "web", "s", code, testRedirect, testVerifier)
		}, 400, "invalid_grant"},
		{"code of a revoked client", func() reply {
			code := authorizeCode(t, s, "web", "", challenge)
			s.RevokeClientTokens("web")
			return exchange(t, s, "web", "s", code, testRedirect, testVerifier)
		}, 400, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantOAuthError(t, tc.run(), tc.status, tc.code) })
	}

	// A code survives a failed attempt: the right verifier still works.
	code := authorizeCode(t, s, "web", "", challenge)
	wantOAuthError(t, exchange(t, s, "web", "s", code, testRedirect, otherVerifier), 400, "invalid_grant")
	if r := exchange(t, s, "web", "s", code, testRedirect, testVerifier); r.status != 200 {
		t.Errorf("exchange after a failed attempt: %d %s", r.status, r.raw)
	}

	// A public client exchanges with client_id and PKCE.
	code = authorizeCode(t, s, "pub", "", challenge)
	if r := exchange(t, s, "pub", "", code, testRedirect, testVerifier); r.status != 200 || r.str("refresh_token") == "" {
		t.Errorf("public client exchange: %d %s", r.status, r.raw)
	}
}

func TestAuthorizeErrors(t *testing.T) {
	s := NewServer(WithClient("web", "s"), WithClient("pub", ""))
	defer s.Close()
	base := func() url.Values {
		return url.Values{"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {testRedirect}, "state": {"s1"}}
	}

	// Errors that must not redirect.
	for name, mutate := range map[string]func(url.Values){
		"unknown client":       func(v url.Values) { v.Set("client_id", "nobody") },
		"missing client":       func(v url.Values) { v.Del("client_id") },
		"missing redirect_uri": func(v url.Values) { v.Del("redirect_uri") },
		"relative redirect":    func(v url.Values) { v.Set("redirect_uri", "/cb") },
		"redirect fragment":    func(v url.Values) { v.Set("redirect_uri", "https://app.example/cb#frag") },
		"repeated parameter":   func(v url.Values) { v.Add("state", "s2") },
	} {
		t.Run(name, func(t *testing.T) {
			v := base()
			mutate(v)
			r := authorize(t, s, v)
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
				t.Errorf("status %d Location %q", r.status, r.header.Get("Location"))
			}
		})
	}

	// Errors redirected to the client with the state.
	for name, tc := range map[string]struct {
		mutate func(url.Values)
		code   string
	}{
		"response_type token": {func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		"plain PKCE": {func(v url.Values) {
			v.Set("code_challenge", s256(testVerifier))
			v.Set("code_challenge_method", "plain")
		}, "invalid_request"},
		"PKCE without method":  {func(v url.Values) { v.Set("code_challenge", s256(testVerifier)) }, "invalid_request"},
		"short challenge":      {func(v url.Values) { v.Set("code_challenge", "abc"); v.Set("code_challenge_method", "S256") }, "invalid_request"},
		"method without value": {func(v url.Values) { v.Set("code_challenge_method", "S256") }, "invalid_request"},
		"public without PKCE":  {func(v url.Values) { v.Set("client_id", "pub") }, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			v := base()
			tc.mutate(v)
			r := authorize(t, s, v)
			if r.status != http.StatusFound {
				t.Fatalf("status %d body %s", r.status, r.raw)
			}
			loc, _ := url.Parse(r.header.Get("Location"))
			q := loc.Query()
			if q.Get("error") != tc.code || q.Get("state") != "s1" || q.Get("code") != "" {
				t.Errorf("redirect query = %v", q)
			}
		})
	}
	if st := s.Stats(); st.CodesIssued != 0 {
		t.Errorf("codes issued for failed requests: %+v", st)
	}
}
