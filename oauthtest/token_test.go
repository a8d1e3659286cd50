package oauthtest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestClientCredentials(t *testing.T) {
	s := NewServer(WithClient("svc", "s3cret"), WithLifetime(90*time.Second))
	defer s.Close()

	r := postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"client_credentials"},
		"scope":      {"read  write read"},
		"audience":   {"https://api.example"}, // unknown parameters are ignored
	}, &basicCreds{"svc", "s3cret"})
	if r.status != http.StatusOK {
		t.Fatalf("status %d body %s", r.status, r.raw)
	}
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	at := r.str("access_token")
	if !strings.HasPrefix(at, accessPrefix) || len(at) < len(accessPrefix)+43 {
		t.Errorf("access_token %q is not an opaque 256-bit token", at)
	}
	if r.str("token_type") != "Bearer" {
		t.Errorf("token_type = %v", r.json["token_type"])
	}
	if r.json["expires_in"] != float64(90) {
		t.Errorf("expires_in = %v, want 90", r.json["expires_in"])
	}
	if r.str("scope") != "read write" {
		t.Errorf("scope = %q, want normalized %q", r.str("scope"), "read write")
	}
	if _, ok := r.json["refresh_token"]; ok {
		t.Errorf("client_credentials response has a refresh_token")
	}
	if !s.ValidAccessToken(at) {
		t.Errorf("ValidAccessToken = false for a new token")
	}
	if s.ValidAccessToken(at+"x") || s.ValidAccessToken("") {
		t.Errorf("ValidAccessToken accepts a token never issued")
	}

	res := getResource(t, s, at)
	if res.status != http.StatusOK || res.json["ok"] != true || res.str("client_id") != "svc" ||
		res.str("scope") != "read write" || res.json["expires_in"] != float64(90) {
		t.Errorf("resource: status %d body %s", res.status, res.raw)
	}

	other := clientCredentials(t, s, "svc", "s3cret")
	if other == at {
		t.Errorf("two grants returned the same access token")
	}
	st := s.Stats()
	if st.TokenRequests["client_credentials"] != 2 || st.AccessTokensIssued != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestExpiresInRoundsUpAndExpiryIsPrecise(t *testing.T) {
	for _, tc := range []struct {
		lifetime time.Duration
		want     float64
	}{
		{500 * time.Millisecond, 1},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{2 * time.Second, 2},
		{time.Hour, 3600},
	} {
		t.Run(tc.lifetime.String(), func(t *testing.T) {
			clock := newFakeClock()
			s := NewServer(WithClient("c", "s"), WithLifetime(tc.lifetime), WithNow(clock.Now))
			defer s.Close()
			r := postForm(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}}, &basicCreds{"c", "s"})
			if r.json["expires_in"] != tc.want {
				t.Fatalf("expires_in = %v, want %v", r.json["expires_in"], tc.want)
			}
			at := r.str("access_token")
			clock.Advance(tc.lifetime - time.Nanosecond)
			if res := getResource(t, s, at); res.status != http.StatusOK || res.json["expires_in"] != float64(1) {
				t.Fatalf("1ns before expiry: status %d body %s", res.status, res.raw)
			}
			clock.Advance(time.Nanosecond)
			if s.ValidAccessToken(at) {
				t.Fatalf("ValidAccessToken true at expiry")
			}
			res := getResource(t, s, at)
			if res.status != http.StatusUnauthorized {
				t.Fatalf("at expiry: status %d body %s", res.status, res.raw)
			}
			if !strings.Contains(res.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", res.header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestClientAuthentication(t *testing.T) {
	const id, secret = "my client:1", "p@ss w+rd/%"
	type style int
	const (
		none style = iota
		basic
		post
		both
	)
	for _, tc := range []struct {
		name                string
		allowBasic, allowPo bool
		use                 style
		id, secret          string
		status              int
		code                string
	}{
		{"basic allowed", true, true, basic, id, secret, 200, ""},
		{"post allowed", true, true, post, id, secret, 200, ""},
		{"basic only, basic used", true, false, basic, id, secret, 200, ""},
		{"basic only, post used", true, false, post, id, secret, 401, "invalid_client"},
		{"post only, post used", false, true, post, id, secret, 200, ""},
		{"post only, basic used", false, true, basic, id, secret, 401, "invalid_client"},
		{"both methods in one request", true, true, both, id, secret, 400, "invalid_request"},
		{"no authentication", true, true, none, id, secret, 401, "invalid_client"},
		{"wrong secret basic", true, true, basic, id, "nope", 401, "invalid_client"},
		{"wrong secret post", true, true, post, id, "nope", 401, "invalid_client"},
		{"secret prefix", true, true, basic, id, secret[:3], 401, "invalid_client"},
		{"unknown client", true, true, basic, "stranger", secret, 401, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(WithClient(id, secret), WithAuthStyles(tc.allowBasic, tc.allowPo))
			defer s.Close()
			form := url.Values{"grant_type": {"client_credentials"}}
			var b *basicCreds
			switch tc.use {
			case basic:
				b = &basicCreds{tc.id, tc.secret}
			case post:
				form.Set("client_id", tc.id)
				form.Set("client_secret", tc.secret)
			case both:
				b = &basicCreds{tc.id, tc.secret}
				form.Set("client_secret", tc.secret)
			case none:
				form.Set("client_id", tc.id)
			}
			r := postForm(t, s.TokenURL(), form, b)
			if tc.status == 200 {
				if r.status != 200 || r.str("access_token") == "" {
					t.Fatalf("status %d body %s", r.status, r.raw)
				}
				return
			}
			wantOAuthError(t, r, tc.status, tc.code)
			if strings.Contains(r.raw, secret) || strings.Contains(r.raw, tc.secret) {
				t.Errorf("error body contains the secret: %s", r.raw)
			}
		})
	}
}

func TestClientAuthenticationEdgeCases(t *testing.T) {
	s := NewServer(WithClient("c", "a+b"), WithClient("pub", ""))
	defer s.Close()

	// The secret "a+b" sent without form-urlencoding decodes to "a b".
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("c", "a+b")
	wantOAuthError(t, do(t, req), 401, "invalid_client")

	// A malformed escape in the Basic credentials.
	req, _ = http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("c", "%zz")
	wantOAuthError(t, do(t, req), 401, "invalid_client")

	// A non-Basic Authorization header.
	req, _ = http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer abc")
	wantOAuthError(t, do(t, req), 401, "invalid_client")

	// client_id in the body that contradicts the Basic header.
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"pub"},
	}, &basicCreds{"c", "a+b"}), 400, "invalid_request")

	// client_secret in the body without client_id.
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "client_secret": {"a+b"},
	}, nil), 401, "invalid_client")

	// A confidential client cannot skip its secret.
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"c"},
	}, nil), 401, "invalid_client")

	// A public client authenticates with client_id alone but may not use
	// client_credentials, and may not present a secret.
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"pub"},
	}, nil), 400, "unauthorized_client")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"pub"}, "client_secret": {""},
	}, nil), 401, "invalid_client")

	// AddClient registers and re-keys clients at run time.
	s.AddClient("late", "x")
	clientCredentials(t, s, "late", "x")
	s.AddClient("late", "y")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}}, &basicCreds{"late", "x"}), 401, "invalid_client")
	clientCredentials(t, s, "late", "y")
}

func TestTokenRequestErrors(t *testing.T) {
	s := NewServer(WithClient("c", "s"))
	defer s.Close()
	auth := &basicCreds{"c", "s"}

	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{}, auth), 400, "invalid_request")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{"grant_type": {"password"}}, auth), 400, "unsupported_grant_type")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials", "refresh_token"}}, auth), 400, "invalid_request")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{"grant_type": {"refresh_token"}}, auth), 400, "invalid_request")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{"grant_type": {"authorization_code"}}, auth), 400, "invalid_request")

	// A JSON body is not a form.
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	setBasic(req, "c", "s")
	wantOAuthError(t, do(t, req), 400, "invalid_request")

	// A body over the limit.
	big := url.Values{"grant_type": {"client_credentials"}, "pad": {strings.Repeat("x", maxFormBytes)}}
	wantOAuthError(t, postForm(t, s.TokenURL(), big, auth), 400, "invalid_request")

	// Parameters in the query string are ignored.
	r := postForm(t, s.TokenURL()+"?grant_type=client_credentials", url.Values{}, auth)
	wantOAuthError(t, r, 400, "invalid_request")

	// Only POST.
	req, _ = http.NewRequest(http.MethodGet, s.TokenURL(), nil)
	if got := do(t, req).status; got != http.StatusMethodNotAllowed {
		t.Errorf("GET /token: status %d", got)
	}

	st := s.Stats()
	if st.TokenRequests[""] != 4 || st.TokenRequests["password"] != 1 || st.TokenRequests["refresh_token"] != 1 {
		t.Errorf("TokenRequests = %v", st.TokenRequests)
	}
}

func TestMetadata(t *testing.T) {
	for _, tc := range []struct {
		basic, post bool
		public      bool
		want        []string
	}{
		{true, true, false, []string{"client_secret_basic", "client_secret_post"}},
		{true, false, false, []string{"client_secret_basic"}},
		{false, true, true, []string{"client_secret_post", "none"}},
	} {
		opts := []Option{WithAuthStyles(tc.basic, tc.post), WithClient("c", "s")}
		if tc.public {
			opts = append(opts, WithClient("pub", ""))
		}
		s := NewServer(opts...)
		req, _ := http.NewRequest(http.MethodGet, s.MetadataURL(), nil)
		r := do(t, req)
		s.Close()
		if r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		iss := s.URL()
		for k, want := range map[string]string{
			"issuer":                        iss,
			"token_endpoint":                s.TokenURL(),
			"authorization_endpoint":        s.AuthorizeURL(),
			"revocation_endpoint":           s.RevokeURL(),
			"device_authorization_endpoint": s.DeviceAuthorizationURL(),
		} {
			if r.str(k) != want {
				t.Errorf("%s = %q, want %q", k, r.str(k), want)
			}
		}
		if got := strings.Join(toStrings(r.json["token_endpoint_auth_methods_supported"]), ","); got != strings.Join(tc.want, ",") {
			t.Errorf("auth methods = %s, want %v", got, tc.want)
		}
		if got := strings.Join(toStrings(r.json["grant_types_supported"]), ","); got != "authorization_code,client_credentials,refresh_token,urn:ietf:params:oauth:grant-type:device_code" {
			t.Errorf("grant types = %s", got)
		}
		if got := strings.Join(toStrings(r.json["code_challenge_methods_supported"]), ","); got != "S256" {
			t.Errorf("code challenge methods = %s", got)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func TestConstructorsAndURLs(t *testing.T) {
	s := NewServer()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") && !strings.HasPrefix(s.URL(), "http://[::1]:") {
		t.Errorf("URL = %q, want loopback", s.URL())
	}
	for got, want := range map[string]string{
		s.TokenURL(): "/token", s.AuthorizeURL(): "/authorize", s.RevokeURL(): "/revoke",
		s.ResourceURL(): "/resource", s.MetadataURL(): "/.well-known/oauth-authorization-server",
	} {
		if got != s.URL()+want {
			t.Errorf("%q != URL()+%q", got, want)
		}
	}
	s.Close()
	s.Close() // idempotent

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	on := NewServerOn(ln, WithClient("c", "s"))
	if on.URL() != "http://"+ln.Addr().String() {
		t.Errorf("NewServerOn URL = %q, listener %s", on.URL(), ln.Addr())
	}
	clientCredentials(t, on, "c", "s")
	on.Close()
	if _, err := ln.Accept(); err == nil {
		t.Errorf("Close left the listener open")
	}
	if got := loopbackHostPort(&net.TCPAddr{IP: net.IPv4zero, Port: 80}); got != "127.0.0.1:80" {
		t.Errorf("loopbackHostPort(0.0.0.0) = %q", got)
	}
	if got := loopbackHostPort(&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}); got != "[::1]:80" {
		t.Errorf("loopbackHostPort(::) = %q", got)
	}

	h := NewHandler(WithClient("c", "s"))
	if h.TokenURL() != "/token" {
		t.Errorf("NewHandler TokenURL before SetIssuer = %q", h.TokenURL())
	}
	ts := httptest.NewServer(h.Handler())
	defer ts.Close()
	// Before SetIssuer, metadata derives the issuer from the request.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+metadataPath, nil)
	if r := do(t, req); r.str("issuer") != ts.URL {
		t.Errorf("derived issuer = %q, want %q", r.str("issuer"), ts.URL)
	}
	h.SetIssuer(ts.URL + "/")
	if h.URL() != ts.URL || h.TokenURL() != ts.URL+"/token" {
		t.Errorf("after SetIssuer: URL %q TokenURL %q", h.URL(), h.TokenURL())
	}
	clientCredentials(t, h, "c", "s")
	h.Close()
}

func TestInvalidOptionsPanic(t *testing.T) {
	for name, opt := range map[string]Option{
		"zero lifetime":         WithLifetime(0),
		"negative grace":        WithReuseDetection(-time.Second),
		"negative latency":      WithLatency(-time.Second),
		"negative refresh life": WithRefreshLifetime(-time.Second),
		"nil clock":             WithNow(nil),
		"nil logger":            WithLogger(nil),
		"empty client id":       WithClient("", "x"),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewHandler did not panic")
				}
			}()
			NewHandler(opt)
		})
	}
}
