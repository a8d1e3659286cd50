package console_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// Browser tests drive Debian's chromium through chromedp over the real
// server (internal/browsertest): without chromium they skip under -short
// and fail otherwise, and always fail in CI (CI=true).

// run runs steps in the browser, failing the test with what.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, whereAmI(ctx))
	}
}

// whereAmI says which page the browser shows and what it says, for a
// failed step: its context may be over, so it asks with 5 s of its own.
func whereAmI(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	page, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`location.href + " (" + document.title + "):\n" + document.body.innerText.slice(0, 2000)`))
	if err != nil {
		return "the page cannot be read: " + err.Error()
	}
	return "the browser shows " + page
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits (generously: the machine may be loaded) until expr is true.
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	var s string
	run(t, ctx, "read #"+id, browsertest.TextOf(id, &s))
	return strings.TrimSpace(s)
}

// signInBrowser signs in through the form, starting at path.
func signInBrowser(t *testing.T, ctx context.Context, h *harness, path, user, password string) {
	t.Helper()
	run(t, ctx, "sign in",
		chromedp.Navigate(h.url+path),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("whoami")),
	)
}

// approve opens a connect link and approves on oauthtest's consent page.
func approve(t *testing.T, ctx context.Context, link string) {
	t.Helper()
	run(t, ctx, "consent",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("approve")),
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.ID("credential")),
	)
}

// TestBrowserJourneys, in chromium over the real server:
//  1. sign in, add a provider from a preset, connect a credential through
//     oauthtest's consent page, and see it active with a live countdown;
//  2. a forced refresh shows its new event without a reload;
//  3. oauthtest revokes the grant: the needs_reauth badge appears without
//     a reload, and Reconnect brings it back to active.
//
// Then it saves a screenshot of every page at 1280 and 390 px.
func TestBrowserJourneys(t *testing.T) {
	if testing.Short() && browsertestShortSkip() {
		t.Skip("the browser journeys take a while; they run without -short")
	}
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithConsent(true), oauthtest.WithRotation(true),
		oauthtest.WithOIDC(true), oauthtest.WithEndUser("sub-ada", "ada@example.com"))
	ctx := browsertest.Chrome(t, 1280, 900)

	// 1. Sign in, add a provider from a preset, connect a credential.
	signInBrowser(t, ctx, h, "/ui/providers", adminUser, adminPassword)
	if loc := eval[string](t, ctx, "location.pathname"); loc != "/ui/providers" {
		t.Fatalf("after sign-in: %s, want the page asked for", loc)
	}
	run(t, ctx, "add a provider from a preset",
		chromedp.SendKeys(chromedp.ID("p-name"), "idp"),
		chromedp.SetValue(chromedp.ID("p-preset"), "keycloak"),
		chromedp.SetValue(chromedp.ID("p-vars"), "domain=idp.example\nrealm=test"),
		chromedp.SendKeys(chromedp.ID("p-client-id"), "app"),
		chromedp.SendKeys(chromedp.ID("p-client-secret"), h.secret),
		chromedp.SetValue(chromedp.ID("p-scopes"), "openid email"),
		chromedp.SetValue(chromedp.ID("p-auth-url"), h.idp.AuthorizeURL()),
		chromedp.SetValue(chromedp.ID("p-token-url"), h.idp.TokenURL()),
		chromedp.Click(chromedp.ID("add-provider")),
		chromedp.WaitVisible(chromedp.ID("provider-name")),
	)
	if p, err := h.store.Provider(context.Background(), "idp"); err != nil || p.Preset != "keycloak" {
		t.Fatalf("provider from the preset: %+v %v", p, err)
	}
	if uri := text(t, ctx, "redirect-uri"); uri != h.url+"/connect/callback" {
		t.Fatalf("redirect URI shown: %q", uri)
	}
	var link string
	run(t, ctx, "start a connect session",
		chromedp.SendKeys(chromedp.ID("c-name"), "calendar"),
		chromedp.Click(chromedp.ID("start-connect")),
		chromedp.WaitVisible(chromedp.ID("open-link")),
	)
	link = text(t, ctx, "connect-link")
	approve(t, ctx, link)
	run(t, ctx, "credential page", chromedp.Navigate(h.url+"/ui/credentials/calendar"), chromedp.WaitVisible(chromedp.ID("status")))
	if st := text(t, ctx, "status"); !strings.Contains(st, "active") {
		t.Fatalf("status after connecting: %q", st)
	}
	first := eval[string](t, ctx, `document.querySelector("#expires time.countdown").textContent`)
	if !strings.HasPrefix(first, "in ") {
		t.Fatalf("countdown %q", first)
	}
	waitFor(t, ctx, "the countdown to move", fmt.Sprintf(`document.querySelector("#expires time.countdown").textContent !== %q`, first))

	// 2. A forced refresh: its event appears without a reload.
	waitFor(t, ctx, "the event stream", `document.body.dataset.liveState === "live"`)
	run(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	n := eval[int](t, ctx, `document.querySelectorAll("#events li.ev").length`)
	if st, out := h.api("POST", "/v1/credentials/calendar/refresh", nil); st != 200 {
		t.Fatalf("forced refresh: %d %v", st, out)
	}
	waitFor(t, ctx, "the new event", fmt.Sprintf(`document.querySelectorAll("#events li.ev").length > %d`, n))
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page was reloaded")
	}
	if k := eval[string](t, ctx, `document.querySelector("#events li.ev .kind").textContent`); k != "refresh" {
		t.Fatalf("newest event %q", k)
	}

	// 3. The provider revokes the grant: needs_reauth without a reload.
	h.idp.RevokeAll()
	if st, _ := h.api("POST", "/v1/credentials/calendar/refresh", nil); st == 200 {
		t.Fatal("a refresh of a revoked grant succeeded")
	}
	waitFor(t, ctx, "the needs_reauth badge", `document.querySelector("#status").textContent.includes("needs_reauth")`)
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page was reloaded")
	}
	run(t, ctx, "screenshot", browsertest.Screenshot(t, browsertest.ScreenshotDir(t), "console-needs-reauth-1280"))
	run(t, ctx, "reconnect", chromedp.Click(chromedp.ID("reconnect")), chromedp.WaitVisible(chromedp.ID("open-link")))
	if c := text(t, ctx, "connect-credential"); c != "calendar" {
		t.Fatalf("reconnecting %q", c)
	}
	approve(t, ctx, text(t, ctx, "connect-link"))
	run(t, ctx, "credential page", chromedp.Navigate(h.url+"/ui/credentials/calendar"), chromedp.WaitVisible(chromedp.ID("status")))
	if st := text(t, ctx, "status"); !strings.Contains(st, "active") {
		t.Fatalf("status after reconnecting: %q", st)
	}
	c, err := h.store.Credential(context.Background(), "calendar")
	if err != nil || c.Status != tokenkeeper.StatusActive || !h.idp.ValidAccessToken(c.Token.AccessToken) {
		t.Fatalf("after reconnecting: %v %v", c, err)
	}
	// No secret reached a page.
	html := eval[string](t, ctx, `document.documentElement.outerHTML`)
	for _, s := range []string{h.secret, c.RefreshToken, c.Token.AccessToken} {
		if strings.Contains(html, s) {
			t.Fatal("a secret is on the credential page")
		}
	}
	h.waitAudit("user:ada", "connect.create")

	// The screenshots in a browser of their own: each has 90 s at most.
	shots := browsertest.Chrome(t, 1280, 900)
	signInBrowser(t, shots, h, "/ui/", adminUser, adminPassword)
	screenshots(t, shots, h)
}

// browsertestShortSkip reports whether -short skips the slow journeys:
// always but in CI, where they run.
func browsertestShortSkip() bool { return !ciRun() }

// screenshots saves every page at 1280 and 390 px wide.
func screenshots(t *testing.T, ctx context.Context, h *harness) {
	t.Helper()
	dir := browsertest.ScreenshotDir(t)
	pages := []struct{ name, path, wait string }{
		{"overview", "/ui/", "overview-live"},
		{"credentials", "/ui/credentials", "credentials-live"},
		{"credential", "/ui/credentials/calendar", "status"},
		{"providers", "/ui/providers", "add-provider"},
		{"provider", "/ui/providers/idp", "provider-name"},
		{"apikeys", "/ui/apikeys", "create-key"},
		{"clients", "/ui/clients", "create-client"},
		{"users", "/ui/users", "create-user"},
		{"audit", "/ui/audit", "audit"},
		{"keys", "/ui/keys", "rotate"},
	}
	for _, w := range []struct{ w, h int64 }{{1280, 900}, {390, 844}} {
		run(t, ctx, "viewport", chromedp.EmulateViewport(w.w, w.h))
		for _, p := range pages {
			run(t, ctx, "screenshot "+p.name,
				chromedp.Navigate(h.url+p.path),
				chromedp.WaitVisible(chromedp.ID(p.wait)),
				browsertest.Screenshot(t, dir, fmt.Sprintf("console-%s-%d", p.name, w.w)),
			)
			// Nothing wider than the viewport but what scrolls inside.
			if over := eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`); over {
				t.Errorf("%s at %d px: the page scrolls sideways", p.name, w.w)
			}
		}
	}
	run(t, ctx, "viewport", chromedp.EmulateViewport(1280, 900))
}

// TestBrowserViewerCSRFAndStaleSession, in chromium: a viewer sees the
// same pages with no buttons, and a direct POST as a viewer is refused; a
// form POST without a CSRF token is refused; a stale session asks for the
// password before a delete, and the delete's answer is the next page.
//
// The event streams' heartbeat is 100 ms here, and the API takes 1 s
// more to delete: the re-sign-in ends the stale session's family before
// the delete, the page's event stream says "expired" at its next
// heartbeat while the form's answer is awaited, and the page must not
// answer that by renewing the ended session (which signs out the browser)
// or leaving for the sign-in page while its form is being submitted.
func TestBrowserViewerCSRFAndStaleSession(t *testing.T) {
	if testing.Short() && browsertestShortSkip() {
		t.Skip("the browser journeys take a while; they run without -short (the same rules are tested over HTTP)")
	}
	h := newHarnessWith(t, harnessConfig{heartbeat: 100 * time.Millisecond, beforeAPI: func(r *http.Request) {
		if r.Method == http.MethodDelete {
			time.Sleep(time.Second)
		}
	}})
	h.credential("cal")

	// 4. The viewer.
	vctx := browsertest.Chrome(t, 1280, 900)
	signInBrowser(t, vctx, h, "/ui/credentials/cal", viewerUser, viewerPassword)
	run(t, vctx, "credential page", chromedp.WaitVisible(chromedp.ID("status")))
	if st := text(t, vctx, "status"); !strings.Contains(st, "active") {
		t.Fatalf("the viewer sees status %q", st)
	}
	if n := eval[int](t, vctx, `document.querySelectorAll("main form[method=post], main button:not(.copy)").length`); n != 0 {
		t.Fatalf("the viewer sees %d forms or buttons", n)
	}
	if nav := text(t, vctx, "main"); strings.Contains(nav, "Refresh now") {
		t.Fatal("the viewer sees Refresh now")
	}
	post := func(ctx context.Context, path, body string) int {
		return eval[int](t, ctx, fmt.Sprintf(`(async () => {
			const csrf = (document.querySelector("input[name=csrf]") || {}).value || "";
			const r = await fetch(%q, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
				body: %s.replace("CSRF", encodeURIComponent(csrf)), redirect: "manual"});
			return r.status;
		})()`, path, "`"+body+"`"), chromedp.EvalAwaitPromise)
	}
	if st := post(vctx, "/ui/credentials/cal/status", "csrf=CSRF&status=disabled"); st != 403 {
		t.Fatalf("the viewer's direct POST: %d", st)
	}
	run(t, vctx, "screenshot", browsertest.Screenshot(t, browsertest.ScreenshotDir(t), "console-viewer-credential-1280"))

	// 5. CSRF, then a stale session before a delete.
	ctx := browsertest.Chrome(t, 1280, 900)
	signInBrowser(t, ctx, h, "/ui/credentials/cal", adminUser, adminPassword)
	run(t, ctx, "credential page", chromedp.WaitVisible(chromedp.ID("delete")))
	if st := post(ctx, "/ui/credentials/cal/status", "status=disabled"); st != 403 {
		t.Fatalf("a POST without a CSRF token: %d", st)
	}
	if c, _ := h.store.Credential(context.Background(), "cal"); c.Status != tokenkeeper.StatusActive {
		t.Fatalf("a refused POST changed the status to %s", c.Status)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("input[name=confirm_password]").length`); n != 0 {
		t.Fatalf("a fresh session is asked for its password (%d fields)", n)
	}
	h.authSkew.Store(int64(20 * time.Minute)) // the sign-in is no longer fresh
	run(t, ctx, "stale delete",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("confirm-delete")),
		chromedp.SendKeys(chromedp.ID("confirm-name"), "cal"),
		chromedp.SendKeys(chromedp.ID("confirm-delete"), adminPassword),
		browsertest.Screenshot(t, browsertest.ScreenshotDir(t), "console-stale-delete-1280"),
		chromedp.Click(chromedp.ID("delete")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if f := text(t, ctx, "flash"); !strings.Contains(f, "Deleted credential cal") {
		t.Fatalf("after the delete: %q", f)
	}
	if _, err := h.store.Credential(context.Background(), "cal"); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Fatalf("not deleted: %v", err)
	}
}
