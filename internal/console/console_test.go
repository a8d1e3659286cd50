package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestSignInSessionsAndHeaders: a page asked for while signed out leads to
// the sign-in form and back; the session cookies are HttpOnly and
// SameSite=Strict; every page is no-store with a strict CSP; a wrong
// password is refused with the username kept; sign-out ends the session,
// and its cookies no longer open a page.
func TestSignInSessionsAndHeaders(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	resp := b.get("/ui/credentials?status=active")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next="+url.QueryEscape("/ui/credentials?status=active") {
		t.Fatalf("signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	b.get(resp.Header.Get("Location"))
	resp = b.post("/ui/login", url.Values{"csrf": {b.csrf()}, "username": {adminUser}, "password": {"wrong"}, "next": {"/ui/credentials?status=active"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b.last, "Wrong username or password") || !strings.Contains(b.last, `value="ada"`) {
		t.Fatalf("wrong password: %d %.500s", resp.StatusCode, b.last)
	}
	resp = b.post("/ui/login", url.Values{"csrf": {b.csrf()}, "username": {adminUser}, "password": {adminPassword}, "next": {"/ui/credentials?status=active"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/credentials?status=active" {
		t.Fatalf("sign in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, ck := range resp.Cookies() {
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" {
			t.Errorf("cookie %s: HttpOnly %v SameSite %v Path %s", ck.Name, ck.HttpOnly, ck.SameSite, ck.Path)
		}
	}
	// A next outside the console is ignored.
	b2 := h.browser()
	b2.get("/ui/login")
	resp = b2.post("/ui/login", url.Values{"csrf": {b2.csrf()}, "username": {adminUser}, "password": {adminPassword}, "next": {"//evil.example/"}})
	if resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("next outside the console: %s", resp.Header.Get("Location"))
	}
	for _, p := range []string{"/ui/", "/ui/credentials", "/ui/providers", "/ui/apikeys", "/ui/clients", "/ui/users", "/ui/audit", "/ui/keys", "/ui/login?signed-out"} {
		br := b
		if strings.HasPrefix(p, "/ui/login") {
			br = h.browser() // signed in, the sign-in page goes on to the page asked for
		}
		resp = br.get(p)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %.300s", p, resp.StatusCode, br.last)
		}
		if resp.Header.Get("Cache-Control") != "no-store" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'; script-src 'self'") {
			t.Errorf("%s: headers %v", p, resp.Header)
		}
	}
	if resp = b.get("/ui/login?next=%2Fui%2Faudit"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/audit" {
		t.Errorf("the sign-in page, signed in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Sign-out ends the session: the same cookies no longer open a page.
	b.get("/ui/")
	saved := b.jar.Cookies(mustURL(h.url + "/ui/"))
	resp = b.post("/ui/logout", url.Values{"csrf": {b.csrf()}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("sign out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	old := h.browser()
	old.jar.SetCookies(mustURL(h.url+"/ui/"), saved)
	if resp = old.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a signed-out session's cookies still open a page: %d", resp.StatusCode)
	}
	// Sign-in and sign-out are audited by the API.
	h.waitAudit("user:ada", "auth.login")
	h.waitAudit("user:ada", "auth.logout")
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestFormsRefusedWithoutCSRF: a POST without the form's CSRF token, or
// with another session's, is refused (403) and changes nothing.
func TestFormsRefusedWithoutCSRF(t *testing.T) {
	h := newHarness(t)
	h.credential("cal")
	b := h.browser()
	b.signIn(adminUser, adminPassword)
	other := h.browser()
	other.signIn(adminUser, adminPassword)
	other.get("/ui/")
	for _, form := range []url.Values{
		{"status": {"disabled"}},
		{"status": {"disabled"}, "csrf": {"forged"}},
		{"status": {"disabled"}, "csrf": {other.csrf()}},
	} {
		resp := b.post("/ui/credentials/cal/status", form)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(b.last, "CSRF") {
			t.Fatalf("POST %v: %d %.300s", form, resp.StatusCode, b.last)
		}
	}
	if c, _ := h.store.Credential(context.Background(), "cal"); c.Status != tokenkeeper.StatusActive {
		t.Fatalf("status %s after refused forms", c.Status)
	}
	// With the token, the same form works.
	b.get("/ui/credentials/cal")
	if resp := b.post("/ui/credentials/cal/status", url.Values{"status": {"disabled"}, "csrf": {b.csrf()}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the token: %d %.300s", resp.StatusCode, b.last)
	}
	if c, _ := h.store.Credential(context.Background(), "cal"); c.Status != tokenkeeper.StatusDisabled {
		t.Fatalf("status %s", c.Status)
	}
}

// TestViewerSeesNoActions: a viewer sees the credential pages with no
// action button, is refused the admin pages, and a direct POST with a
// valid CSRF token is refused by the API and changes nothing.
func TestViewerSeesNoActions(t *testing.T) {
	h := newHarness(t)
	h.credential("cal")
	b := h.browser()
	b.signIn(viewerUser, viewerPassword)
	for _, p := range []string{"/ui/", "/ui/credentials", "/ui/credentials/cal", "/ui/providers", "/ui/providers/idp"} {
		if resp := b.get(p); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		for _, action := range []string{"/refresh\"", "/status\"", "/reconnect\"", "/delete\"", "/connect\"", `action="/ui/providers"`} {
			if strings.Contains(b.last, action) {
				t.Errorf("%s shows a viewer the action %s", p, action)
			}
		}
	}
	for _, p := range []string{"/ui/apikeys", "/ui/users", "/ui/clients", "/ui/audit", "/ui/keys"} {
		if resp := b.get(p); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s for a viewer: %d", p, resp.StatusCode)
		}
	}
	b.get("/ui/credentials/cal")
	csrf := b.csrf()
	for _, a := range []struct {
		path string
		form url.Values
	}{
		{"/ui/credentials/cal/status", url.Values{"status": {"disabled"}}},
		{"/ui/credentials/cal/refresh", url.Values{}},
		{"/ui/credentials/cal/delete", url.Values{"confirm": {"cal"}}},
		{"/ui/providers", url.Values{"name": {"x"}, "preset": {"github"}, "client_id": {"x"}, "client_secret": {"y"}}},
	} {
		a.form.Set("csrf", csrf)
		if resp := b.post(a.path, a.form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d %.300s", a.path, resp.StatusCode, b.last)
		}
	}
	c, err := h.store.Credential(context.Background(), "cal")
	if err != nil || c.Status != tokenkeeper.StatusActive {
		t.Fatalf("after the viewer's POSTs: %v %v", c, err)
	}
	if _, err := h.store.Provider(context.Background(), "x"); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Fatalf("the viewer created a provider: %v", err)
	}
}

// TestStaleSessionAsksForPassword: once the sign-in is older than the
// access token's life, the session renews itself (not fresh); a delete
// then asks for the password, a wrong one changes nothing, the right one
// deletes. An expired session returns to sign-in and then to the page.
func TestStaleSessionAsksForPassword(t *testing.T) {
	h := newHarness(t)
	h.credential("cal")
	b := h.browser()
	b.signIn(adminUser, adminPassword)
	b.get("/ui/credentials/cal")
	if strings.Contains(b.last, `name="confirm_password"`) {
		t.Fatal("a fresh session is asked for its password")
	}
	h.authSkew.Store(int64(20 * time.Minute)) // the access token has expired; the refresh token has not
	if resp := b.get("/ui/credentials/cal"); resp.StatusCode != http.StatusOK {
		t.Fatalf("renewal: %d", resp.StatusCode)
	}
	if !strings.Contains(b.last, `name="confirm_password"`) {
		t.Fatal("a stale session is not asked for its password")
	}
	// Without the password the API refuses; the form says why.
	resp := b.post("/ui/credentials/cal/delete", url.Values{"csrf": {b.csrf()}, "confirm": {"cal"}, "page": {"/ui/credentials/cal"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b.last, "Enter your password") || !strings.Contains(b.last, `value="cal"`) {
		t.Fatalf("stale delete: %d %.600s", resp.StatusCode, b.last)
	}
	resp = b.post("/ui/credentials/cal/delete", url.Values{"csrf": {b.csrf()}, "confirm": {"cal"}, "confirm_password": {"wrong"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(b.last, "not right") {
		t.Fatalf("wrong password: %d %.600s", resp.StatusCode, b.last)
	}
	if strings.Contains(b.last, "wrong\"") {
		t.Fatal("the typed password is shown again")
	}
	if _, err := h.store.Credential(context.Background(), "cal"); err != nil {
		t.Fatalf("deleted without the password: %v", err)
	}
	// A wrong typed name changes nothing either.
	resp = b.post("/ui/credentials/cal/delete", url.Values{"csrf": {b.csrf()}, "confirm": {"calx"}, "confirm_password": {adminPassword}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(b.last, "to confirm") {
		t.Fatalf("wrong name: %d %.300s", resp.StatusCode, b.last)
	}
	b.get("/ui/credentials/cal")
	resp = b.post("/ui/credentials/cal/delete", url.Values{"csrf": {b.csrf()}, "confirm": {"cal"}, "confirm_password": {adminPassword}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete with the password: %d %.600s", resp.StatusCode, b.last)
	}
	if _, err := h.store.Credential(context.Background(), "cal"); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Fatalf("not deleted: %v", err)
	}

	// Past the refresh token's idle life the session has ended: sign in,
	// then back to the page.
	h.waitAudit("user:ada", "credential.delete")
	h.authSkew.Store(int64(26 * time.Hour))
	resp = b.get("/ui/audit?action=credential.delete")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/login?next=") {
		t.Fatalf("expired session: %d %s", resp.StatusCode, loc)
	}
	b.get(loc)
	next, _ := url.ParseQuery(strings.TrimPrefix(loc, "/ui/login?"))
	resp = b.post("/ui/login", url.Values{"csrf": {b.csrf()}, "username": {adminUser}, "password": {adminPassword}, "next": {next.Get("next")}})
	if resp.Header.Get("Location") != "/ui/audit?action=credential.delete" {
		t.Fatalf("back to the page: %s", resp.Header.Get("Location"))
	}
	b.get(resp.Header.Get("Location"))
	if !strings.Contains(b.last, "credential.delete") || !strings.Contains(b.last, "user:ada") {
		t.Fatalf("audit page: %.600s", b.last)
	}
}

// TestLiveFetchNeverClearsTheSession: a re-sign-in before a delete ends
// the stale session's family; a page's live fetch (X-Console-Live) that
// still carries the ended session is sent to sign in without clearing the
// cookies (its answer may reach the browser after the delete's, which set
// the new session), while a navigation carrying it has them cleared. The
// new session works throughout.
func TestLiveFetchNeverClearsTheSession(t *testing.T) {
	h := newHarness(t)
	h.credential("cal")
	b := h.browser()
	b.signIn(adminUser, adminPassword)
	h.authSkew.Store(int64(20 * time.Minute)) // the access token has expired; the refresh token has not
	b.get("/ui/credentials/cal")              // renews: a session that is not fresh
	u, _ := url.Parse(h.url + "/ui/")
	stale := b.jar.Cookies(u)
	resp := b.post("/ui/credentials/cal/delete", url.Values{"csrf": {b.csrf()}, "confirm": {"cal"}, "confirm_password": {adminPassword}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete with the password: %d %.600s", resp.StatusCode, b.last)
	}
	h.authSkew.Store(int64(40 * time.Minute)) // the stale session's access token has expired too: the next request renews
	noJar := &http.Client{Timeout: 30 * time.Second, CheckRedirect: b.c.CheckRedirect}
	fetch := func(live bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, h.url+"/ui/credentials/cal", nil)
		for _, ck := range stale {
			req.AddCookie(ck)
		}
		if live {
			req.Header.Set("X-Console-Live", "1")
		}
		// Another cookie store (none): this request's answer must not
		// reach the jar's.
		resp, err := noJar.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login") {
			t.Fatalf("the ended session (live %v): %d %s", live, resp.StatusCode, resp.Header.Get("Location"))
		}
		return resp
	}
	cleared := func(resp *http.Response) (names []string) {
		for _, ck := range resp.Cookies() {
			if (ck.Name == "tk_console_at" || ck.Name == "tk_console_rt") && ck.MaxAge < 0 {
				names = append(names, ck.Name)
			}
		}
		return names
	}
	if got := cleared(fetch(true)); len(got) != 0 {
		t.Fatalf("a live fetch cleared %v", got)
	}
	if got := cleared(fetch(false)); len(got) != 2 {
		t.Fatalf("a navigation with the ended session cleared %v, not both cookies", got)
	}
	// The jar holds the session the delete's answer set: it works.
	if resp := b.get("/ui/credentials"); resp.StatusCode != http.StatusOK || !strings.Contains(b.last, `id="whoami"`) {
		t.Fatalf("the new session: %d %.300s", resp.StatusCode, b.last)
	}
}

// TestNoSecretOnAnyPage renders every page of a broker holding a
// connected credential and finds none of its secrets, nor any in a URL.
func TestNoSecretOnAnyPage(t *testing.T) {
	h := newHarness(t)
	c := h.credential("cal")
	b := h.browser()
	b.signIn(adminUser, adminPassword)
	secrets := []string{h.secret, c.RefreshToken, c.Token.AccessToken, adminPassword, h.admin}
	for _, p := range []string{"/ui/", "/ui/credentials", "/ui/credentials/cal", "/ui/providers", "/ui/providers/idp",
		"/ui/apikeys", "/ui/clients", "/ui/users", "/ui/audit", "/ui/keys"} {
		b.get(p)
		for _, s := range secrets {
			if strings.Contains(b.last, s) {
				t.Errorf("%s shows a secret", p)
			}
		}
	}
	// A forced refresh answers the API with the new token: the console
	// drops it.
	b.get("/ui/credentials/cal")
	resp := b.post("/ui/credentials/cal/refresh", url.Values{"csrf": {b.csrf()}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("refresh: %d %.300s", resp.StatusCode, b.last)
	}
	c2, _ := h.store.Credential(context.Background(), "cal")
	b.get("/ui/credentials/cal")
	if strings.Contains(b.last, c2.Token.AccessToken) || strings.Contains(resp.Header.Get("Location"), c2.Token.AccessToken) {
		t.Error("the new token reached the page")
	}
	if !strings.Contains(b.last, "Refreshed") {
		t.Errorf("no notice of the refresh: %.300s", b.last)
	}
}
