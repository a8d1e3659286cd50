package http_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

func (h *harness) provider(name string) map[string]any {
	return map[string]any{"name": name, "authorization_url": h.idp.AuthorizeURL(), "token_url": h.idp.TokenURL(),
		"revocation_url": h.idp.RevokeURL(), "client_id": "app", "client_secret": h.secret, "scopes": []string{"read"}}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func names(t *testing.T, r *response, key string) string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var out []string
	for _, c := range r.json(t)[key].([]any) {
		out = append(out, c.(map[string]any)["name"].(string))
	}
	return strings.Join(out, ",")
}

// TestProviderLifecycle creates a provider, credentials of it in both
// forms, lists them by provider, status and end user, refuses to delete
// the provider in use, and rotates its secret: the next refresh of each
// credential uses the new one.
func TestProviderLifecycle(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	r := h.do("POST", "/v1/providers", h.admin, h.provider("idp"))
	if r.status != http.StatusCreated || r.header.Get("Location") != "/v1/providers/idp" {
		t.Fatalf("create provider: %d %s", r.status, r.body)
	}
	p := r.json(t)
	if p["has_client_secret"] != true || p["pkce"] != true || p["auth_style"] != "header" || bytes.Contains(r.body, []byte(h.secret)) {
		t.Fatalf("provider answer: %s", r.body)
	}
	if r := h.do("POST", "/v1/providers", h.admin, h.provider("idp")); r.status != http.StatusConflict {
		t.Fatalf("duplicate provider: %d %s", r.status, r.body)
	}

	h.create(map[string]any{"name": "svc", "provider": "idp", "grant_type": "client_credentials"})
	rt := h.idp.IssueRefreshToken("app", "read")
	h.create(map[string]any{"name": "alice-idp", "provider": "idp", "grant_type": "refresh_token", "refresh_token": rt, "end_user_id": "alice"})
	// The inline form still works, and reuses the provider whose token
	// URL, client id, auth style and secret all match.
	h.create(h.ccCredential("inline"))
	got := h.do("GET", "/v1/credentials/inline", h.admin, nil).json(t)
	if got["provider"] != "idp" {
		t.Fatalf("inline credential with idp's values got provider %v", got["provider"])
	}
	alice := h.do("GET", "/v1/credentials/alice-idp", h.admin, nil).json(t)
	if alice["end_user_id"] != "alice" || alice["provider"] != "idp" || alice["scopes"].([]any)[0] != "read" {
		t.Fatalf("alice-idp: %v", alice)
	}
	for _, name := range []string{"svc", "alice-idp", "inline"} {
		if r := h.token(name, h.admin); r.status != http.StatusOK || !h.idp.ValidAccessToken(r.json(t)["access_token"].(string)) {
			t.Fatalf("token of %s: %d %s", name, r.status, r.body)
		}
	}

	// Another secret is another provider, named after the credential.
	other := h.ccCredential("other")
	h.idp.AddClient("app2", "second-secret-value")
	other["client_id"], other["client_secret"] = "app2", "second-secret-value"
	h.create(other)
	if got := h.do("GET", "/v1/credentials/other", h.admin, nil).json(t)["provider"]; got != "other" {
		t.Fatalf("inline credential with new values got provider %v, want one named after it", got)
	}
	if r := h.token("other", h.admin); r.status != http.StatusOK {
		t.Fatalf("token of other: %d %s", r.status, r.body)
	}

	for query, want := range map[string]string{
		"":                     "alice-idp,inline,other,svc",
		"?provider=idp":        "alice-idp,inline,svc",
		"?provider=other":      "other",
		"?provider=none":       "",
		"?end_user_id=alice":   "alice-idp",
		"?status=active":       "alice-idp,inline,other,svc",
		"?status=needs_reauth": "",
		"?provider=idp&status=active&end_user_id=alice": "alice-idp",
	} {
		if got := names(t, h.do("GET", "/v1/credentials"+query, h.admin, nil), "credentials"); got != want {
			t.Errorf("GET /v1/credentials%s = %q, want %q", query, got, want)
		}
	}
	if r := h.do("GET", "/v1/credentials?status=sleeping", h.admin, nil); r.status != http.StatusBadRequest {
		t.Errorf("bad status filter: %d %s", r.status, r.body)
	}
	if got := names(t, h.do("GET", "/v1/providers", h.admin, nil), "providers"); got != "idp,other" {
		t.Fatalf("providers = %q", got)
	}
	show := h.do("GET", "/v1/providers/idp", h.admin, nil).json(t)
	if show["credentials"].(float64) != 3 {
		t.Fatalf("provider show: %v", show)
	}

	// In use: deleting is refused with the count, and nothing changes.
	r = h.do("DELETE", "/v1/providers/idp", h.admin, nil)
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "3 credential") ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("delete provider in use: %d %s", r.status, r.body)
	}

	// Rotation: the provider now only knows the new secret; one update of
	// the provider, and each credential's next refresh uses it.
	newSecret := randomSecret()
	h.idp.AddClient("app", newSecret)
	before := h.idp.Stats()
	if r := h.do("PATCH", "/v1/providers/idp", h.admin, map[string]any{"client_secret": newSecret}); r.status != http.StatusOK ||
		bytes.Contains(r.body, []byte(newSecret)) {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	for _, name := range []string{"svc", "alice-idp", "inline"} {
		r := h.do("POST", "/v1/credentials/"+name+"/refresh", h.admin, nil)
		if r.status != http.StatusOK || !h.idp.ValidAccessToken(r.json(t)["access_token"].(string)) {
			t.Fatalf("refresh of %s after the rotation: %d %s", name, r.status, r.body)
		}
	}
	// Exactly one token request each, all answered: the old secret, which
	// the provider now refuses, was never sent.
	after := h.idp.Stats()
	if n := total(after.TokenRequests) - total(before.TokenRequests); n != 3 || after.AccessTokensIssued-before.AccessTokensIssued != 3 {
		t.Fatalf("after the rotation: %d token requests, %d tokens issued; want 3 and 3", n, after.AccessTokensIssued-before.AccessTokensIssued)
	}
	h.secret = newSecret // the log check looks for it too

	// Deleted once unused.
	for _, name := range []string{"svc", "alice-idp", "inline"} {
		if r := h.do("DELETE", "/v1/credentials/"+name, h.admin, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete %s: %d", name, r.status)
		}
	}
	if r := h.do("DELETE", "/v1/providers/idp", h.admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete unused provider: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/v1/providers/idp", h.admin, nil); r.status != http.StatusNotFound {
		t.Fatalf("deleted provider: %d %s", r.status, r.body)
	}
}

// TestProviderBadInput: each bad request gets problem+json and changes
// nothing.
func TestProviderBadInput(t *testing.T) {
	h := newHarness(t)
	if r := h.do("POST", "/v1/providers", h.admin, h.provider("idp")); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	h.create(map[string]any{"name": "grant", "provider": "idp", "grant_type": "refresh_token", "refresh_token": h.idp.IssueRefreshToken("app", "read")})
	bad := func(method, path string, body any, status int) {
		t.Helper()
		r := h.do(method, path, h.admin, body)
		if r.status != status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s %s %v: %d %s, want %d", method, path, body, r.status, r.body, status)
		}
		if bytes.Contains(r.body, []byte(h.secret)) {
			t.Errorf("%s %s: the secret is in the error", method, path)
		}
	}
	p := h.provider("x")
	p["token_url"] = "http://provider.example/token"
	bad("POST", "/v1/providers", p, http.StatusBadRequest)
	p = h.provider("x")
	p["authorization_url"] = "ftp://provider.example/authorize"
	bad("POST", "/v1/providers", p, http.StatusBadRequest)
	p = h.provider("x")
	p["auth_style"] = "guess"
	bad("POST", "/v1/providers", p, http.StatusBadRequest)
	p = h.provider("x")
	p["token_params"] = map[string]string{"client_secret": "no"}
	bad("POST", "/v1/providers", p, http.StatusBadRequest)
	p = h.provider("bad name!")
	bad("POST", "/v1/providers", p, http.StatusBadRequest)
	bad("POST", "/v1/credentials", map[string]any{"name": "c", "provider": "nope", "grant_type": "client_credentials"}, http.StatusNotFound)
	both := h.ccCredential("c")
	both["provider"] = "idp"
	bad("POST", "/v1/credentials", both, http.StatusBadRequest)
	bad("PATCH", "/v1/providers/nope", map[string]any{"scopes": []string{"a"}}, http.StatusNotFound)
	bad("PATCH", "/v1/providers/idp", map[string]any{"auth_style": "guess"}, http.StatusBadRequest)
	// The token endpoint cannot move to another host while grants of the
	// old one are stored.
	bad("PATCH", "/v1/providers/idp", map[string]any{"token_url": "https://elsewhere.example/token"}, http.StatusConflict)
	if got := names(t, h.do("GET", "/v1/providers", h.admin, nil), "providers"); got != "idp" {
		t.Fatalf("providers after bad input: %q", got)
	}
	pr, err := h.store.Provider(context.Background(), "idp")
	if err != nil || pr.Version != 1 || pr.TokenURL != h.idp.TokenURL() || pr.ClientSecret != h.secret {
		t.Fatalf("idp after bad input: %+v, %v", pr, err)
	}
}

// TestNonFreshAdminCannotRedirectProviderSecrets is H1 for providers: a
// session that is not fresh may edit a provider's scopes, but not where or
// how its secrets are sent, nor the secret itself.
func TestNonFreshAdminCannotRedirectProviderSecrets(t *testing.T) {
	h := newHarness(t)
	if r := h.do("POST", "/v1/providers", h.admin, h.provider("idp")); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	stale := h.staleAdmin()
	for _, body := range []map[string]any{
		{"token_url": "http://127.0.0.1:1/token"},
		{"authorization_url": "http://127.0.0.1:1/authorize"},
		{"device_authorization_url": "http://127.0.0.1:1/device"},
		{"revocation_url": "http://127.0.0.1:1/revoke"},
		{"client_id": "other"},
		{"client_secret": "other"},
		{"auth_style": "body"},
		{"token_params": map[string]string{"audience": "x"}},
		{"authorize_params": map[string]string{"prompt": "consent"}},
	} {
		r := h.do("PATCH", "/v1/providers/idp", stale, body)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_user_authentication") {
			t.Errorf("stale PATCH %v: %d %s", body, r.status, r.body)
		}
	}
	if r := h.do("DELETE", "/v1/providers/idp", stale, nil); r.status != http.StatusUnauthorized {
		t.Errorf("stale DELETE: %d %s", r.status, r.body)
	}
	if r := h.do("PATCH", "/v1/providers/idp", stale, map[string]any{"scopes": []string{"a", "b"}}); r.status != http.StatusOK {
		t.Errorf("stale PATCH of scopes: %d %s", r.status, r.body)
	}
	pr, err := h.store.Provider(context.Background(), "idp")
	if err != nil || pr.TokenURL != h.idp.TokenURL() || pr.ClientID != "app" || pr.ClientSecret != h.secret || pr.AuthStyle != tokenkeeper.AuthStyleHeader {
		t.Fatalf("idp after stale edits: %+v, %v", pr, err)
	}
}

// TestViewerSeesProvidersWithoutSecrets: viewers may list and show
// providers, never change them, and no answer holds the secret.
func TestViewerSeesProvidersWithoutSecrets(t *testing.T) {
	h := newHarness(t)
	if r := h.do("POST", "/v1/providers", h.admin, h.provider("idp")); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	h.addUser("vera", "correct horse battery", tokenkeeper.RoleViewer)
	viewer := h.login("vera", "correct horse battery").AccessToken
	for _, path := range []string{"/v1/providers", "/v1/providers/idp"} {
		r := h.do("GET", path, viewer, nil)
		if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"idp"`)) || bytes.Contains(r.body, []byte(h.secret)) {
			t.Errorf("viewer GET %s: %d %s", path, r.status, r.body)
		}
	}
	if r := h.do("POST", "/v1/providers", viewer, h.provider("v")); r.status != http.StatusForbidden {
		t.Errorf("viewer POST: %d", r.status)
	}
	if r := h.do("PATCH", "/v1/providers/idp", viewer, map[string]any{"scopes": []string{"x"}}); r.status != http.StatusForbidden {
		t.Errorf("viewer PATCH: %d", r.status)
	}
	if r := h.do("DELETE", "/v1/providers/idp", viewer, nil); r.status != http.StatusForbidden {
		t.Errorf("viewer DELETE: %d", r.status)
	}
}

// TestProviderSecretParams (L2 for providers): token and authorize params
// named like secrets are shown as "<sealed>", kept when sent back so, and
// dropped when the token endpoint moves to another host without them.
func TestProviderSecretParams(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	assertion := "provider-assertion-" + t.Name()
	p := h.provider("jwtp")
	p["token_params"] = map[string]string{"client_assertion": assertion, "audience": "https://api.example"}
	p["authorize_params"] = map[string]string{"prompt": "consent"}
	r := h.do("POST", "/v1/providers", h.admin, p)
	if r.status != http.StatusCreated || bytes.Contains(r.body, []byte(assertion)) {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	shown := func() map[string]any {
		r := h.do("GET", "/v1/providers/jwtp", h.admin, nil)
		if bytes.Contains(r.body, []byte(assertion)) {
			t.Fatalf("a secret param shown: %s", r.body)
		}
		tp, _ := r.json(t)["token_params"].(map[string]any)
		return tp
	}
	if tp := shown(); tp["client_assertion"] != tokenkeeper.SealedParamValue || tp["audience"] != "https://api.example" {
		t.Fatalf("token_params shown: %v", tp)
	}
	tp := map[string]string{"client_assertion": tokenkeeper.SealedParamValue, "audience": "https://api2.example"}
	if r := h.do("PATCH", "/v1/providers/jwtp", h.admin, map[string]any{"token_params": tp}); r.status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	got, err := h.store.Provider(context.Background(), "jwtp")
	if err != nil || got.TokenParams["client_assertion"] != assertion || got.TokenParams["audience"] != "https://api2.example" {
		t.Fatalf("after a patch with %q: %v", tokenkeeper.SealedParamValue, err)
	}
	other := newRecorder(t)
	if r := h.do("PATCH", "/v1/providers/jwtp", h.admin, map[string]any{"token_url": other.TokenURL(),
		"token_params": map[string]string{"client_assertion": tokenkeeper.SealedParamValue}}); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "another host") {
		t.Fatalf("move with a placeholder: %d %s", r.status, r.body)
	}
	if r := h.do("PATCH", "/v1/providers/jwtp", h.admin, map[string]any{"token_url": other.TokenURL(), "client_secret": h.secret}); r.status != http.StatusOK {
		t.Fatalf("move: %d %s", r.status, r.body)
	}
	if tp := shown(); tp["client_assertion"] != nil || tp["audience"] != "https://api2.example" {
		t.Fatalf("token_params after a host change: %v", tp)
	}
	if strings.Contains(h.logs.String(), assertion) {
		t.Fatal("a secret param reached the log")
	}
}
