package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestAdminPages: API keys, service clients, users, providers by hand and
// key rotation through the console's forms. A new key or client secret is
// shown once and works; bad input shows the field's error, keeps what was
// typed (secrets aside) and changes nothing; every action is audited as
// the user.
func TestAdminPages(t *testing.T) {
	h := newHarness(t)
	h.credential("cal")
	b := h.browser()
	b.signIn(adminUser, adminPassword)
	ctx := context.Background()

	// An API key, shown once.
	b.get("/ui/apikeys")
	resp := b.post("/ui/apikeys", url.Values{"csrf": {b.csrf()}, "name": {"billing"}, "role": {"consumer"}, "credentials": {"cal"}})
	key := regexp.MustCompile(`<code id="new-secret">(tk_[^<]+)</code>`).FindStringSubmatch(b.last)
	if resp.StatusCode != http.StatusOK || key == nil {
		t.Fatalf("create key: %d %.500s", resp.StatusCode, b.last)
	}
	req, _ := http.NewRequest("GET", h.url+"/v1/credentials/cal/token", nil)
	req.Header.Set("Authorization", "Bearer "+key[1])
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("the new key reads its credential: %v %v", r, err)
	}
	if b.get("/ui/apikeys"); strings.Contains(b.last, key[1]) {
		t.Fatal("the key is shown again")
	}
	// A name taken: the field's error, the typed values kept.
	resp = b.post("/ui/apikeys", url.Values{"csrf": {b.csrf()}, "name": {"billing"}, "role": {"consumer"}, "credentials": {"cal"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(b.last, `value="billing"`) || !strings.Contains(b.last, `class="error"`) {
		t.Fatalf("duplicate key name: %d %.800s", resp.StatusCode, b.last)
	}
	keys, _ := h.store.APIKeys(ctx)
	var id string
	for _, k := range keys {
		if k.Name == "billing" {
			id = k.ID
		}
	}
	b.get("/ui/apikeys")
	if resp = b.post("/ui/apikeys/"+id+"/revoke", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d %.300s", resp.StatusCode, b.last)
	}
	if r, _ := http.DefaultClient.Do(req); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a revoked key: %d", r.StatusCode)
	}

	// A service client, its secret shown once.
	b.get("/ui/clients")
	resp = b.post("/ui/clients", url.Values{"csrf": {b.csrf()}, "client_id": {"billing-svc"}, "credentials": {"cal"}})
	secret := regexp.MustCompile(`<code id="new-secret">(tkcs_[^<]+)</code>`).FindStringSubmatch(b.last)
	if resp.StatusCode != http.StatusOK || secret == nil {
		t.Fatalf("create client: %d %.500s", resp.StatusCode, b.last)
	}
	if _, err := h.auth.AuthenticateClient(ctx, "billing-svc", secret[1]); err != nil {
		t.Fatalf("the client secret shown does not authenticate: %v", err)
	}
	b.get("/ui/clients")
	if strings.Contains(b.last, secret[1]) {
		t.Fatal("the client secret is shown again")
	}
	if resp = b.post("/ui/clients/billing-svc/delete", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete client: %d", resp.StatusCode)
	}

	// Users: a bad password keeps the username, never the password.
	b.get("/ui/users")
	resp = b.post("/ui/users", url.Values{"csrf": {b.csrf()}, "username": {"carol"}, "password": {"short"}, "role": {"viewer"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(b.last, `value="carol"`) || strings.Contains(b.last, `value="short"`) {
		t.Fatalf("bad password: %d %.800s", resp.StatusCode, b.last)
	}
	if _, err := h.auth.User(ctx, "carol"); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Fatalf("a refused user was created: %v", err)
	}
	resp = b.post("/ui/users", url.Values{"csrf": {b.csrf()}, "username": {"carol"}, "password": {"carol's long enough password"}, "role": {"viewer"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add user: %d %.500s", resp.StatusCode, b.last)
	}
	b.get("/ui/users")
	if resp = b.post("/ui/users/carol/delete", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete user: %d %.300s", resp.StatusCode, b.last)
	}

	// A provider by hand with a bad token URL: the field's error, what was
	// typed kept, the client secret not.
	b.get("/ui/providers")
	form := url.Values{"csrf": {b.csrf()}, "name": {"hand"}, "client_id": {"cid"}, "client_secret": {"hand-secret-value"},
		"token_url": {"not a url"}, "authorization_url": {h.idp.AuthorizeURL()}}
	resp = b.post("/ui/providers", form)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(b.last, `id="provider-token_url-error"`) ||
		!strings.Contains(b.last, `aria-invalid="true" aria-describedby="provider-token_url-error"`) ||
		!strings.Contains(b.last, `value="not a url"`) || strings.Contains(b.last, "hand-secret-value") {
		t.Fatalf("bad token URL: %d %.1500s", resp.StatusCode, b.last)
	}
	if _, err := h.store.Provider(ctx, "hand"); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Fatalf("a refused provider was created: %v", err)
	}
	// An unknown preset and a bad template variable line are refused too.
	resp = b.post("/ui/providers", url.Values{"csrf": {b.csrf()}, "name": {"pp"}, "preset": {"nosuch"}, "client_id": {"c"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(b.last, "unknown preset") {
		t.Fatalf("unknown preset: %d %.300s", resp.StatusCode, b.last)
	}
	resp = b.post("/ui/providers", url.Values{"csrf": {b.csrf()}, "name": {"pp"}, "preset": {"microsoft"}, "client_id": {"c"}, "template_vars": {"tenant"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(b.last, "name=value") {
		t.Fatalf("bad template variables: %d %.300s", resp.StatusCode, b.last)
	}
	form.Set("token_url", h.idp.TokenURL())
	form.Set("csrf", b.csrf())
	if resp = b.post("/ui/providers", form); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/providers/hand" {
		t.Fatalf("provider by hand: %d %s %.300s", resp.StatusCode, resp.Header.Get("Location"), b.last)
	}
	b.get("/ui/providers/hand")
	if !strings.Contains(b.last, "/connect/callback") || strings.Contains(b.last, "hand-secret-value") {
		t.Fatalf("provider page: %.500s", b.last)
	}

	// Key rotation.
	b.get("/ui/keys")
	if resp = b.post("/ui/keys/rotate", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("rotate: %d %.300s", resp.StatusCode, b.last)
	}
	b.get("/ui/keys")
	if !strings.Contains(b.last, "re-sealed") {
		t.Fatalf("no notice of the rotation: %.500s", b.last)
	}

	for _, action := range []string{"apikey.create", "apikey.revoke", "client.create", "client.delete", "user.create", "user.delete", "provider.create", "keys.rotate"} {
		h.waitAudit("user:ada", action)
	}
}
