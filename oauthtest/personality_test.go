package oauthtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// authorizeCode runs an authorization request with q and returns the
// redirect's query (a code, or an error).
func authorizeWith(t *testing.T, s *Server, q url.Values) url.Values {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.AuthorizeURL()+"?"+q.Encode(), nil)
	r := do(t, req)
	if r.status != http.StatusFound {
		t.Fatalf("authorize: %d %s", r.status, r.raw)
	}
	u, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func postJSON(t *testing.T, u string, body map[string]string, basic *basicCreds) reply {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if basic != nil {
		setBasic(req, basic.id, basic.secret)
	}
	return do(t, req)
}

// TestPersonalitySlackLike: a form body with client_secret_basic only,
// scopes joined with commas, tokens under authed_user, no expires_in,
// extra members, rotation, and every error in a 200 body.
func TestPersonalitySlackLike(t *testing.T) {
	s := NewServer(WithClient("app", "sec"), WithPersonality(Personality{
		AuthStyle: "header", ScopeSeparator: ",", NoPKCE: true,
		AccessTokenPath: "authed_user.access_token", RefreshTokenPath: "authed_user.refresh_token",
		ScopePath: "authed_user.scope", OmitExpiresIn: true, Rotates: true, ErrorIn200: true,
		Extra: map[string]string{"team.id": "T1", "team.name": "Acme"}, ResourcePaths: []string{"/auth.test"},
	}))
	defer s.Close()
	base := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {"http://127.0.0.1/cb"}}

	q := url.Values{}
	for k, v := range base {
		q[k] = v
	}
	q.Set("scope", "chat:write channels:read")
	if got := authorizeWith(t, s, q); got.Get("error") != "invalid_scope" {
		t.Errorf("space-separated scopes: %v", got)
	}
	q.Set("scope", "chat:write,channels:read")
	q.Set("code_challenge", strings.Repeat("a", 43))
	q.Set("code_challenge_method", "S256")
	if got := authorizeWith(t, s, q); got.Get("error") != "invalid_request" {
		t.Errorf("PKCE to a provider without it: %v", got)
	}
	q.Del("code_challenge")
	q.Del("code_challenge_method")
	code := authorizeWith(t, s, q).Get("code")
	if code == "" {
		t.Fatal("no code")
	}

	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1/cb"},
		"client_id": {"app"}, "client_secret": {"sec"}}
	if r := postForm(t, s.TokenURL(), form, nil); r.status != http.StatusOK || r.json["ok"] != false || r.str("error") != "invalid_client" {
		t.Errorf("client_secret_post to a header-only provider: %d %s", r.status, r.raw)
	}
	form.Del("client_secret")
	form.Del("client_id")
	r := postForm(t, s.TokenURL(), form, &basicCreds{"app", "sec"})
	user, _ := r.json["authed_user"].(map[string]any)
	team, _ := r.json["team"].(map[string]any)
	if r.status != http.StatusOK || user["access_token"] == nil || user["refresh_token"] == nil || user["scope"] != "chat:write,channels:read" ||
		r.json["access_token"] != nil || r.json["expires_in"] != nil || team["id"] != "T1" || team["name"] != "Acme" {
		t.Fatalf("shaped response: %d %s", r.status, r.raw)
	}
	at, rt := user["access_token"].(string), user["refresh_token"].(string)
	if !s.ValidAccessToken(at) {
		t.Error("issued access token not valid")
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/auth.test", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	if res := do(t, req); res.status != http.StatusOK || res.json["ok"] != true {
		t.Errorf("/auth.test with a good token: %d %s", res.status, res.raw)
	}
	req, _ = http.NewRequest(http.MethodPost, s.URL()+"/auth.test", nil)
	req.Header.Set("Authorization", "Bearer nope")
	if res := do(t, req); res.status != http.StatusOK || res.json["ok"] != false || res.str("error") != "invalid_auth" {
		t.Errorf("/auth.test with a bad token: %d %s", res.status, res.raw)
	}
	r = postForm(t, s.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, &basicCreds{"app", "sec"})
	user, _ = r.json["authed_user"].(map[string]any)
	if rt2, _ := user["refresh_token"].(string); r.status != http.StatusOK || rt2 == "" || rt2 == rt {
		t.Fatalf("rotating refresh: %d %s", r.status, r.raw)
	}
	r = postForm(t, s.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, &basicCreds{"app", "sec"})
	if r.status != http.StatusOK || r.json["ok"] != false || r.str("error") != "invalid_grant" {
		t.Errorf("retired refresh token: %d %s", r.status, r.raw)
	}
}

// TestPersonalityJSONAndHeaders: JSON bodies only, a required Accept header and
// token parameter, a dead grant answered 403 without an error code, a
// realmId in the redirect, and a resource reading a bare token from a
// header of its own.
func TestPersonalityJSONAndHeaders(t *testing.T) {
	s := NewServer(WithClient("app", "sec"), WithPersonality(Personality{
		BodyFormat: "json", AuthStyle: "body", Accept: "application/json",
		AuthorizeParams: map[string]string{"owner": "user"}, TokenParams: map[string]string{"expiring": "1"},
		RedirectParams: map[string]string{"realmId": "4620816365"}, InvalidGrantStatus: http.StatusForbidden,
		TokenHeader: "X-Shop-Token",
	}))
	defer s.Close()
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {"http://127.0.0.1/cb"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	if got := authorizeWith(t, s, q); got.Get("error") != "invalid_request" || got.Has("realmId") {
		t.Errorf("missing owner: %v", got)
	}
	q.Set("owner", "user")
	got := authorizeWith(t, s, q)
	if got.Get("code") == "" || got.Get("realmId") != "4620816365" {
		t.Fatalf("redirect: %v", got)
	}
	body := map[string]string{"grant_type": "authorization_code", "code": got.Get("code"), "redirect_uri": "http://127.0.0.1/cb",
		"code_verifier": verifier, "client_id": "app", "client_secret": "sec"}
	form := url.Values{}
	for k, v := range body {
		form.Set(k, v)
	}
	form.Set("expiring", "1")
	if r := postForm(t, s.TokenURL(), form, nil); r.status != http.StatusBadRequest || r.str("error") != "invalid_request" {
		t.Errorf("form body to a JSON provider: %d %s", r.status, r.raw)
	}
	if r := postJSON(t, s.TokenURL(), body, nil); r.status != http.StatusBadRequest {
		t.Errorf("JSON without Accept and expiring: %d %s", r.status, r.raw)
	}
	body["expiring"] = "1"
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	r := do(t, req)
	at := r.str("access_token")
	if r.status != http.StatusOK || at == "" || r.json["expires_in"] == nil {
		t.Fatalf("JSON exchange: %d %s", r.status, r.raw)
	}
	if res := getResource(t, s, at); res.status != http.StatusUnauthorized {
		t.Errorf("Bearer to a resource wanting X-Shop-Token: %d", res.status)
	}
	req, _ = http.NewRequest(http.MethodGet, s.ResourceURL(), nil)
	req.Header.Set("X-Shop-Token", at)
	if res := do(t, req); res.status != http.StatusOK {
		t.Errorf("X-Shop-Token: %d %s", res.status, res.raw)
	}

	body = map[string]string{"grant_type": "refresh_token", "refresh_token": "unknown", "client_id": "app", "client_secret": "sec", "expiring": "1"}
	b, _ = json.Marshal(body)
	req, _ = http.NewRequest(http.MethodPost, s.TokenURL(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if r := do(t, req); r.status != http.StatusForbidden || r.json["error"] != nil {
		t.Errorf("dead grant: %d %s", r.status, r.raw)
	}
}

func TestPersonalityInvalidPanics(t *testing.T) {
	for _, p := range []Personality{{BodyFormat: "xml"}, {AuthStyle: "both"}, {ScopeSeparator: ";"},
		{InvalidGrantStatus: 200}, {AccessTokenPath: "a..b"}, {Extra: map[string]string{"a b": "x"}},
		{ResourcePaths: []string{"/token"}}, {ResourcePaths: []string{"auth.test"}}, {ResourcePaths: []string{"/a/../b"}}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%+v did not panic", p)
				}
			}()
			NewHandler(WithPersonality(p))
		}()
	}
}
