package oauthtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
)

// Browser tests drive Debian's chromium through chromedp against the real
// pages. Without chromium they skip under -short and fail otherwise, and
// always fail in CI (CI=true), where .ci/run installs it.

// chrome starts chromium for one test (internal/browsertest).
func chrome(t *testing.T) context.Context { return browsertest.Chrome(t, 720, 820) }

var (
	screenshotDir = browsertest.ScreenshotDir
	screenshot    = browsertest.Screenshot
	textOf        = browsertest.TextOf
)

// callbackServer is the client's redirect URI: it records each query it
// receives and shows a small page.
func callbackServer(t *testing.T) (string, <-chan url.Values) {
	got := make(chan url.Values, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>client</title><h1 id="callback">callback received</h1>`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/cb", got
}

func receive(t *testing.T, ch <-chan url.Values) url.Values {
	t.Helper()
	select {
	case q := <-ch:
		return q
	case <-time.After(30 * time.Second):
		t.Fatal("the redirect never reached the client")
		return nil
	}
}

// openConsent opens an authorization request in the browser and checks
// what the consent page shows.
func openConsent(t *testing.T, ctx context.Context, s *Server, redirect, shot string) {
	t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {"photo-app"}, "redirect_uri": {redirect},
		"state": {"st-123"}, "scope": {"openid email photos.read offline_access"},
		"code_challenge": {s256(testVerifier)}, "code_challenge_method": {"S256"}}
	var client, scopes, returnTo string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.AuthorizeURL()+"?"+q.Encode()),
		chromedp.WaitVisible(chromedp.ID("approve")),
		textOf("client", &client),
		textOf("scopes", &scopes),
		textOf("return-to", &returnTo),
		screenshot(t, screenshotDir(t), shot),
	); err != nil {
		t.Fatalf("consent page: %v", err)
	}
	if client != "photo-app" {
		t.Errorf("client shown = %q", client)
	}
	for _, want := range []string{"openid", "email", "photos.read", "offline_access", "See your email address"} {
		if !strings.Contains(scopes, want) {
			t.Errorf("scopes shown = %q, lack %q", scopes, want)
		}
	}
	if !strings.HasPrefix(redirect, returnTo) {
		t.Errorf("return-to shown = %q, redirect %q", returnTo, redirect)
	}
}

func TestBrowserConsentApprove(t *testing.T) {
	ctx := chrome(t)
	s := NewServer(WithConsent(true), WithOIDC(true), WithClient("photo-app", "s"))
	defer s.Close()
	redirect, got := callbackServer(t)
	openConsent(t, ctx, s, redirect, "consent")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.ID("callback")),
	); err != nil {
		t.Fatalf("approve: %v", err)
	}
	q := receive(t, got)
	if q.Get("state") != "st-123" || q.Get("iss") != s.URL() || !strings.HasPrefix(q.Get("code"), codePrefix) || q.Get("error") != "" {
		t.Fatalf("callback query = %v", q)
	}
	res := exchange(t, s, "photo-app", "s", q.Get("code"), redirect, testVerifier)
	if res.status != 200 || res.str("refresh_token") == "" || res.str("id_token") == "" {
		t.Fatalf("exchange: %d %s", res.status, res.raw)
	}
	if g := getResource(t, s, res.str("access_token")); g.status != 200 {
		t.Errorf("resource: %d", g.status)
	}
}

func TestBrowserConsentDeny(t *testing.T) {
	ctx := chrome(t)
	s := NewServer(WithConsent(true), WithClient("photo-app", "s"))
	defer s.Close()
	redirect, got := callbackServer(t)
	openConsent(t, ctx, s, redirect, "consent-deny")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("deny")),
		chromedp.WaitVisible(chromedp.ID("callback")),
	); err != nil {
		t.Fatalf("deny: %v", err)
	}
	q := receive(t, got)
	if q.Get("error") != "access_denied" || q.Get("state") != "st-123" || q.Get("iss") != s.URL() || q.Get("code") != "" {
		t.Errorf("callback query = %v", q)
	}
	if st := s.Stats(); st.CodesIssued != 0 || st.ConsentDenials != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// The device flow: a goroutine polls the token endpoint as a device would,
// while the end user enters the code on the verification page and
// approves.
func TestBrowserDeviceFlow(t *testing.T) {
	ctx := chrome(t)
	s := NewServer(WithConsent(true), WithClient("smart-tv", ""), WithDeviceInterval(100*time.Millisecond))
	defer s.Close()
	d := deviceAuthorize(t, s, "smart-tv", "", "tv.watch offline_access")
	shots := screenshotDir(t)

	type outcome struct {
		tok  map[string]any
		errs []string
	}
	polled := make(chan outcome, 1)
	pollCtx, stopPolling := context.WithCancel(context.Background())
	defer stopPolling()
	go func() {
		var o outcome
		for pollCtx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			form := url.Values{"grant_type": {deviceCodeGrantType}, "device_code": {d.str("device_code")}, "client_id": {"smart-tv"}}
			resp, err := http.PostForm(s.TokenURL(), form)
			if err != nil {
				o.errs = append(o.errs, err.Error())
				break
			}
			r := reply{status: resp.StatusCode}
			r.json = decodeBody(resp)
			if r.status == 200 {
				o.tok = r.json
				break
			}
			if e := r.str("error"); e != "authorization_pending" {
				o.errs = append(o.errs, e)
				break
			}
		}
		polled <- o
	}()

	var client, userCode, result string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(d.str("verification_uri")),
		chromedp.WaitVisible(chromedp.ID("user_code")),
		screenshot(t, shots, "device-entry"),
		chromedp.SendKeys(chromedp.ID("user_code"), strings.ToLower(d.str("user_code"))),
		chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.ID("approve")),
		textOf("client", &client),
		textOf("user-code", &userCode),
		screenshot(t, shots, "device-consent"),
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.ID("result")),
		textOf("result", &result),
		screenshot(t, shots, "device-approved"),
	); err != nil {
		t.Fatalf("verification page: %v", err)
	}
	if client != "smart-tv" || userCode != d.str("user_code") || result != "Device connected" {
		t.Errorf("pages showed client %q, user code %q, result %q", client, userCode, result)
	}
	var o outcome
	select {
	case o = <-polled:
	case <-time.After(30 * time.Second):
		t.Fatal("the polling device never got its tokens")
	}
	if len(o.errs) > 0 || o.tok == nil {
		t.Fatalf("polling: %v", o.errs)
	}
	at, _ := o.tok["access_token"].(string)
	if rt, _ := o.tok["refresh_token"].(string); rt == "" || !s.ValidAccessToken(at) {
		t.Errorf("device tokens: %v", o.tok)
	}

	// A wrong code shows an error on the entry page.
	var errText string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.VerificationURL()),
		chromedp.WaitVisible(chromedp.ID("user_code")),
		chromedp.SendKeys(chromedp.ID("user_code"), "BCDF-GHJK"),
		chromedp.Click(chromedp.ID("continue")),
		chromedp.WaitVisible(chromedp.ID("error")),
		textOf("error", &errText),
		screenshot(t, shots, "device-wrong-code"),
	); err != nil {
		t.Fatalf("wrong code: %v", err)
	}
	if !strings.Contains(errText, "unknown, expired or already used") {
		t.Errorf("error shown = %q", errText)
	}
}
