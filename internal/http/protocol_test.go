package http_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// A known path with the wrong method is 405 with Allow, as a problem
// document; an unknown path stays 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		method, path, allow string
	}{
		{"PUT", "/v1/credentials", "GET, HEAD, POST"},
		{"POST", "/v1/credentials/x/token", "GET, HEAD"},
		{"DELETE", "/v1/apikeys", "GET, HEAD, POST"},
		{"GET", "/v1/auth/login", "POST"},
		{"POST", "/healthz", "GET, HEAD"},
	}
	for _, tc := range cases {
		r := h.do(tc.method, tc.path, h.admin, nil)
		if r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, want 405: %s", tc.method, tc.path, r.status, r.body)
			continue
		}
		if got := r.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		p := r.json(t)
		if r.header.Get("Content-Type") != "application/problem+json" || p["code"] != "method_not_allowed" || !strings.Contains(p["detail"].(string), tc.allow) {
			t.Errorf("%s %s: not a 405 problem naming the methods: %s", tc.method, tc.path, r.body)
		}
	}
	for _, path := range []string{"/v1/nothing", "/nothing", "/v1/credentials/x/y/z"} {
		r := h.do("GET", path, h.admin, nil)
		if r.status != http.StatusNotFound || r.json(t)["code"] != tokenkeeper.ENOTFOUND {
			t.Errorf("GET %s: %d %s, want a 404 problem", path, r.status, r.body)
		}
	}
}

// A body over the limit is 413 on the JSON API and on the token endpoint.
func TestOversizedBodyIs413(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("x", 70<<10)
	r := h.do("POST", "/v1/credentials", h.admin, `{"name":"`+long+`"}`)
	if r.status != http.StatusRequestEntityTooLarge || r.json(t)["code"] != tokenkeeper.ETOOLARGE {
		t.Fatalf("JSON API: %d %s", r.status, r.body)
	}
	r = h.doForm("/oauth2/token", "", url.Values{"grant_type": {"client_credentials"}, "scope": {strings.Repeat("s", 20<<10)}})
	if r.status != http.StatusRequestEntityTooLarge || r.json(t)["error"] != "invalid_request" {
		t.Fatalf("token endpoint: %d %s", r.status, r.body)
	}
}

// curl -d sends application/x-www-form-urlencoded: a JSON body is read as
// JSON whatever the Content-Type says (as Vault does), so README examples
// work when pasted.
func TestJSONBodyWhateverTheContentType(t *testing.T) {
	h := newHarness(t)
	for i, ct := range []string{"application/x-www-form-urlencoded", "text/plain", ""} {
		name := []string{"form", "text", "none"}[i]
		req, _ := http.NewRequest("POST", h.url+"/v1/credentials", strings.NewReader(jsonString(h.ccCredential(name))))
		req.Header.Set("Authorization", "Bearer "+h.admin)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if r := h.send(req); r.status != http.StatusCreated {
			t.Fatalf("Content-Type %q: %d %s", ct, r.status, r.body)
		}
	}
	// Still strict about what the body holds.
	req, _ := http.NewRequest("POST", h.url+"/v1/credentials", strings.NewReader("name=x&token_url=y"))
	req.Header.Set("Authorization", "Bearer "+h.admin)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r := h.send(req); r.status != http.StatusBadRequest || !strings.Contains(r.json(t)["detail"].(string), "malformed JSON") {
		t.Fatalf("a form body: %d %s", r.status, r.body)
	}
}

// A refresh-token reuse is its own audit record, naming the user and the
// revoked family, and never the token.
func TestRefreshTokenReuseIsAudited(t *testing.T) {
	h := newHarness(t)
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	first := h.login("alice", "correct horse battery")
	if r, _ := h.refreshLogin(first.RefreshToken); r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if r, _ := h.refreshLogin(first.RefreshToken); r.status != http.StatusUnauthorized {
		t.Fatalf("reuse: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := h.store.(tokenkeeper.AuthStore).Audit(context.Background(), tokenkeeper.AuditFilter{Action: "auth.refresh_reuse"})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 {
			rec := recs[0]
			if rec.Target != "user:alice" || rec.Outcome != "family_revoked" || !strings.Contains(rec.Detail, "family ") {
				t.Fatalf("reuse record: %+v", rec)
			}
			if strings.Contains(rec.Detail, first.RefreshToken) || strings.Contains(rec.Detail, "tkrt_") {
				t.Fatalf("the record quotes a token: %+v", rec)
			}
			return
		}
		if len(recs) > 1 || time.Now().After(deadline) {
			t.Fatalf("%d reuse records, want 1", len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A disabled credential serves no token: 409 naming its status, on the
// API and on the token endpoint; set active again, it serves again.
func TestDisabledCredentialServesNoToken(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("pay"))
	if r := h.token("pay", h.admin); r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	if r := h.do("PATCH", "/v1/credentials/pay", h.admin, map[string]any{"status": "disabled"}); r.status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	r := h.token("pay", h.admin)
	p := r.json(t)
	if r.status != http.StatusConflict || p["credential_status"] != "disabled" || !strings.Contains(p["detail"].(string), "disabled") {
		t.Fatalf("token of a disabled credential: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "access_token") {
		t.Fatal("a disabled credential's answer holds a token")
	}
	if r := h.do("PATCH", "/v1/credentials/pay", h.admin, map[string]any{"status": "active"}); r.status != http.StatusOK {
		t.Fatalf("enable: %d %s", r.status, r.body)
	}
	if r := h.token("pay", h.admin); r.status != http.StatusOK {
		t.Fatalf("token after enabling: %d %s", r.status, r.body)
	}
}

// A PATCH of scopes gets a token with the new scopes at once.
func TestScopesPatchRefreshes(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	body := h.ccCredential("pay")
	body["scopes"] = []string{"read"}
	h.create(body)
	first := h.token("pay", h.admin).json(t)["access_token"].(string)
	if info, ok := h.idp.AccessTokenInfo(first); !ok || info.Scope != "read" {
		t.Fatalf("first token: %+v", info)
	}
	if r := h.do("PATCH", "/v1/credentials/pay", h.admin, map[string]any{"scopes": []string{"read", "write"}}); r.status != http.StatusOK {
		t.Fatalf("patch scopes: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tok := h.token("pay", h.admin).json(t)["access_token"].(string)
		if info, ok := h.idp.AccessTokenInfo(tok); ok && info.Scope == "read write" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token with the new scopes 5 s after the PATCH")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
