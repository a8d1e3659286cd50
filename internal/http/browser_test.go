package http_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// Browser tests drive Debian's chromium through chromedp: the broker's
// connect pages and oauthtest's consent and device pages, as an end user
// sees them. Without chromium they skip under -short and fail otherwise,
// and always fail in CI (CI=true), where .ci/run installs it.

// chrome starts chromium for one test (internal/browsertest).
func chrome(t *testing.T) context.Context { return browsertest.Chrome(t, 720, 720) }

// screenshot saves a PNG of the page to $TOKENKEEPER_SCREENSHOTS (or a
// temporary directory) as name.png.
func screenshot(t *testing.T, name string) chromedp.Action[chromedp.Void] {
	return browsertest.Screenshot(t, browsertest.ScreenshotDir(t), name)
}

var textOf = browsertest.TextOf

// cssText reads the visible text of the first element matching the CSS
// selector into out.
func cssText(sel string, out *string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		s, err := chromedp.Text(chromedp.CSS(sel))(ctx, tg)
		*out = s
		return err
	})
}

// locationOf reads the browser's current URL into out.
func locationOf(out *string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		s, err := chromedp.Location()(ctx, tg)
		*out = s
		return err
	})
}

// TestBrowserConnect: in chromium, a connect link leads to oauthtest's
// consent page; Approve lands on the broker's success page; the credential
// is active, its token accepted, and still active after two refreshes with
// no reuse detected. The replayed callback URL shows a refusal and changes
// nothing. Deny fails the session with access_denied and stores nothing.
// A credential the provider revoked is reconnected through a new link:
// needs_reauth to active, same name, old events kept.
func TestBrowserConnect(t *testing.T) {
	ctx := chrome(t)
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithConsent(true), oauthtest.WithRotation(true),
		oauthtest.WithReuseDetection(0), oauthtest.WithOIDC(true), oauthtest.WithEndUser("sub-ada", "ada@example.com"))
	h.connectProvider("read", "openid", "email")

	// Approve.
	id, link := h.startConnect(map[string]any{"provider": "idp", "name": "ada"})
	var title, credential, email, callbackURL string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("approve")),
		screenshot(t, "connect-consent"),
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.ID("credential")),
		cssText("h1", &title),
		textOf("credential", &credential),
		textOf("email", &email),
		locationOf(&callbackURL),
		screenshot(t, "connect-success"),
	); err != nil {
		t.Fatalf("connect in the browser: %v", err)
	}
	if !strings.Contains(title, "Connected") || credential != "ada" || email != "ada@example.com" {
		t.Fatalf("success page: title %q, credential %q, email %q", title, credential, email)
	}
	if s := h.session(id); s["status"] != "connected" {
		t.Fatalf("session: %v", s)
	}
	c, err := h.store.Credential(context.Background(), "ada")
	if err != nil || c.Status != tokenkeeper.StatusActive || !h.idp.ValidAccessToken(c.Token.AccessToken) {
		t.Fatalf("credential: %v", err)
	}
	at := c.Token.AccessToken
	for i := 0; i < 2; i++ {
		if r := h.do("POST", "/v1/credentials/ada/refresh", h.admin, map[string]any{"rejected_token": at}); r.status != http.StatusOK {
			t.Fatalf("refresh %d: %d %s", i, r.status, r.body)
		}
		at, _ = h.do("GET", "/v1/credentials/ada/token", h.admin, nil).json(t)["access_token"].(string)
	}
	c, _ = h.store.Credential(context.Background(), "ada")
	if st := h.idp.Stats(); c.Status != tokenkeeper.StatusActive || st.ReuseDetections != 0 || !h.idp.ValidAccessToken(at) {
		t.Fatalf("after two refreshes: %s, %d reuse detections", c.Status, st.ReuseDetections)
	}

	// The replayed callback URL is refused; nothing changes.
	var replay string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(callbackURL),
		chromedp.WaitVisible(chromedp.ID("reason")),
		textOf("reason", &replay),
		screenshot(t, "connect-replay"),
	); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if replay != "used" {
		t.Fatalf("replay reason %q", replay)
	}
	if c2, _ := h.store.Credential(context.Background(), "ada"); c2.Version != c.Version || c2.RefreshToken != c.RefreshToken {
		t.Fatal("the replay changed the credential")
	}
	if st := h.idp.Stats(); st.TokenRequests["authorization_code"] != 1 || st.CodeReuses != 0 {
		t.Fatalf("code exchanges %d, reuses %d", st.TokenRequests["authorization_code"], st.CodeReuses)
	}

	// Deny.
	id, link = h.startConnect(map[string]any{"provider": "idp", "name": "bea"})
	var reason string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("deny")),
		chromedp.Click(chromedp.ID("deny")),
		chromedp.WaitVisible(chromedp.ID("reason")),
		textOf("reason", &reason),
		screenshot(t, "connect-denied"),
	); err != nil {
		t.Fatalf("deny: %v", err)
	}
	if s := h.session(id); reason != "access_denied" || s["status"] != "failed" || s["reason"] != "access_denied" {
		t.Fatalf("denied: page %q, session %v", reason, s)
	}
	if _, err := h.store.Credential(context.Background(), "bea"); err == nil {
		t.Fatal("a denied session stored a credential")
	}

	// The provider revokes ada's grant; a reconnect link repairs it.
	h.idp.RevokeAll()
	h.do("POST", "/v1/credentials/ada/refresh", h.admin, map[string]any{"rejected_token": at})
	if c, _ := h.store.Credential(context.Background(), "ada"); c.Status != tokenkeeper.StatusNeedsReauth {
		t.Fatalf("after the revocation: %s", c.Status)
	}
	oldEvents, _ := h.store.Events(context.Background(), "ada", 1000)
	id, link = h.startConnect(map[string]any{"provider": "idp", "name": "ada"})
	if err := chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("approve")),
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.ID("credential")),
		cssText("h1", &title),
		screenshot(t, "connect-reconnected"),
	); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	c2, _ := h.store.Credential(context.Background(), "ada")
	if !strings.Contains(title, "Reconnected") || c2.ID != c.ID || c2.Status != tokenkeeper.StatusActive || !h.idp.ValidAccessToken(c2.Token.AccessToken) {
		t.Fatalf("after the reconnect: title %q, status %s", title, c2.Status)
	}
	evs, _ := h.store.Events(context.Background(), "ada", 1000)
	if len(evs) <= len(oldEvents) || evs[len(evs)-1].ID != oldEvents[len(oldEvents)-1].ID {
		t.Fatalf("events: %d before, %d after", len(oldEvents), len(evs))
	}
	if s := h.session(id); s["status"] != "connected" || s["reconnect"] != true {
		t.Fatalf("reconnect session: %v", s)
	}
}

// TestBrowserConnectDevice: a device session completed by the end user in
// chromium on oauthtest's verification page; the broker's poller stores
// the grant.
func TestBrowserConnectDevice(t *testing.T) {
	ctx := chrome(t)
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithConsent(true), oauthtest.WithDeviceInterval(time.Second))
	h.connectProvider()
	r := h.do("POST", "/v1/connect/device", h.admin, map[string]any{"provider": "idp", "name": "tv"})
	if r.status != http.StatusCreated {
		t.Fatalf("device: %d %s", r.status, r.body)
	}
	d := r.json(t)
	var result string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(d["verification_uri"].(string)),
		chromedp.WaitVisible(chromedp.ID("user_code")),
		chromedp.SendKeys(chromedp.ID("user_code"), d["user_code"].(string)),
		chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.ID("approve")),
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.ID("result")),
		textOf("result", &result),
		screenshot(t, "connect-device-approved"),
	); err != nil {
		t.Fatalf("verification page: %v", err)
	}
	if s := h.waitSession(d["id"].(string)); s["status"] != "connected" {
		t.Fatalf("session: %v", s)
	}
	c, err := h.store.Credential(context.Background(), "tv")
	if err != nil || c.Status != tokenkeeper.StatusActive || !h.idp.ValidAccessToken(c.Token.AccessToken) {
		t.Fatalf("credential: %v", err)
	}
}
