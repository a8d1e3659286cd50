package oauthtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzTokenEndpoint sends arbitrary bodies and Authorization headers to the
// token endpoint: it must answer 200 with tokens or a well-formed RFC 6749
// error, never panic or echo a secret.
func FuzzTokenEndpoint(f *testing.F) {
	s := NewHandler(WithClient("c", "s3cret"), WithClient("pub", ""), WithRotation(true), WithReuseDetection(0))
	rt := s.IssueRefreshToken("c", "read")
	for _, seed := range []struct{ body, auth string }{
		{"grant_type=client_credentials", "Basic YzpzM2NyZXQ="},
		{"grant_type=client_credentials&client_id=c&client_secret=s3cret", ""},
		{"grant_type=refresh_token&refresh_token=" + rt, "Basic YzpzM2NyZXQ="},
		{"grant_type=refresh_token&refresh_token=" + rt + "&scope=read+write", "Basic YzpzM2NyZXQ="},
		{"grant_type=authorization_code&code=x&redirect_uri=https://a/&code_verifier=" + testVerifier + "&client_id=pub", ""},
		{"grant_type=client_credentials&grant_type=refresh_token", "Basic YzpzM2NyZXQ="},
		{"grant_type=%zz", "Basic %%%"},
		{"", "Bearer x"},
		{"grant_type=password&\x00=\xff", "Basic Yzo="},
	} {
		f.Add(seed.body, seed.auth)
	}
	f.Fuzz(func(t *testing.T, body, auth string) {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth != "" {
			req.Header["Authorization"] = []string{auth}
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("status %d, body not JSON: %q", rec.Code, rec.Body)
		}
		switch rec.Code {
		case http.StatusOK:
			if m["access_token"] == nil || m["token_type"] != "Bearer" {
				t.Errorf("success without a token: %v", m)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
			code, _ := m["error"].(string)
			if code == "" {
				t.Errorf("error without a code: %v", m)
			}
			desc, _ := m["error_description"].(string)
			if printable(desc, len(desc)) != desc {
				t.Errorf("error_description has characters RFC 6749 forbids: %q", desc)
			}
			if strings.Contains(desc, "s3cret") {
				t.Errorf("error_description echoes the secret")
			}
			if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		default:
			t.Errorf("status %d: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzAuthorize sends arbitrary query strings to the authorize endpoint: it
// must answer a redirect or 400, never panic, and redirect only to the
// registered client's redirect_uri.
func FuzzAuthorize(f *testing.F) {
	s := NewHandler(WithClient("c", "s"), WithClient("pub", ""))
	s.SetIssuer("http://idp.test")
	for _, seed := range []string{
		"response_type=code&client_id=c&redirect_uri=https%3A%2F%2Fa.test%2Fcb&state=x",
		"response_type=code&client_id=pub&redirect_uri=https%3A%2F%2Fa.test%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
		"response_type=token&client_id=c&redirect_uri=app%3A%2Fcb",
		"client_id=c&redirect_uri=%zz",
		"client_id=c&client_id=c",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodGet, "/authorize", nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusFound:
			loc := rec.Header().Get("Location")
			if loc == "" || !req.URL.Query().Has("redirect_uri") {
				t.Errorf("redirect to %q for query %q", loc, query)
			}
		case http.StatusBadRequest:
		default:
			t.Errorf("status %d for query %q", rec.Code, query)
		}
	})
}
