package oauthtest

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// browser is an HTTP client with a cookie jar that does not follow
// redirects, standing in for a browser.
func browser(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// page is a fetched HTML page.
type page struct {
	status int
	header http.Header
	body   string
}

func fetchPage(t testing.TB, c *http.Client, method, u string, form url.Values) page {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return page{resp.StatusCode, resp.Header, string(b)}
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// formFields returns the hidden fields of the consent form.
func formFields(t testing.TB, p page) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(p.body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	if v.Get("request") == "" || v.Get("csrf_token") == "" {
		t.Fatalf("no consent form in page (status %d):\n%s", p.status, p.body)
	}
	return v
}

// with returns a copy of v with k set to val.
func with(v url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

func authorizeParams(clientID, scope string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {testRedirect},
		"state": {"st<&>"}, "scope": {scope},
		"code_challenge": {s256(testVerifier)}, "code_challenge_method": {"S256"}}
}

// redirectQuery checks a 303 to testRedirect and returns its query.
func redirectQuery(t testing.TB, p page) url.Values {
	t.Helper()
	if p.status != http.StatusSeeOther {
		t.Fatalf("status %d, want 303; body %s", p.status, p.body)
	}
	loc, err := url.Parse(p.header.Get("Location"))
	if err != nil || loc.Host != "app.example" || loc.Path != "/cb" || loc.Query().Get("keep") != "1" {
		t.Fatalf("redirect to %q, want the redirect_uri", p.header.Get("Location"))
	}
	return loc.Query()
}

func TestConsentPageApprove(t *testing.T) {
	s := NewServer(WithConsent(true), WithClient("<web&app>", "s"))
	defer s.Close()
	b := browser(t)

	p := fetchPage(t, b, http.MethodGet, s.AuthorizeURL()+"?"+authorizeParams("<web&app>", "read <x> offline_access").Encode(), nil)
	if p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		t.Fatalf("consent page: %d %s", p.status, p.header.Get("Content-Type"))
	}
	for _, want := range []string{"&lt;web&amp;app&gt;", "<code class=\"scope\">read</code>", "&lt;x&gt;",
		"<code class=\"scope\">offline_access</code>", "refresh token", "https://app.example", `action="authorize"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<web", "<x>", codePrefix, accessPrefix, "st<&>"} {
		if strings.Contains(p.body, bad) {
			t.Errorf("page contains %q unescaped or leaks it", bad)
		}
	}
	for h, want := range map[string]string{
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
	} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if ck := p.header.Get("Set-Cookie"); !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") {
		t.Errorf("browser cookie = %q", ck)
	}
	if st := s.Stats(); st.CodesIssued != 0 {
		t.Fatalf("a code was issued before consent: %+v", st)
	}
	css := fetchPage(t, b, http.MethodGet, s.URL()+cssPath, nil)
	if css.status != 200 || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") || !strings.Contains(css.body, ".card") {
		t.Errorf("stylesheet: %d %s", css.status, css.header.Get("Content-Type"))
	}

	fields := formFields(t, p)
	q := redirectQuery(t, fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(fields, "decision", "approve")))
	if q.Get("state") != "st<&>" || q.Get("iss") != s.URL() || !strings.HasPrefix(q.Get("code"), codePrefix) || q.Get("error") != "" {
		t.Fatalf("redirect query = %v", q)
	}
	res := exchange(t, s, "<web&app>", "s", q.Get("code"), testRedirect, testVerifier)
	if res.status != 200 || res.str("refresh_token") == "" || res.str("scope") != "read <x> offline_access" {
		t.Fatalf("exchange: %d %s", res.status, res.raw)
	}
	if g := getResource(t, s, res.str("access_token")); g.status != 200 {
		t.Errorf("resource: %d %s", g.status, g.raw)
	}

	// The answer cannot be replayed: the consent request is gone.
	for _, d := range []string{"approve", "deny"} {
		r := fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(fields, "decision", d))
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" || !strings.Contains(r.body, "no longer valid") {
			t.Errorf("replayed %s: %d Location %q", d, r.status, r.header.Get("Location"))
		}
	}
	if st := s.Stats(); st.CodesIssued != 1 || st.ConsentApprovals != 1 || st.ConsentDenials != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestConsentPageDeny(t *testing.T) {
	s := NewServer(WithConsent(true), WithClient("web", "s"))
	defer s.Close()
	b := browser(t)
	p := fetchPage(t, b, http.MethodGet, s.AuthorizeURL()+"?"+authorizeParams("web", "read").Encode(), nil)
	q := redirectQuery(t, fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(formFields(t, p), "decision", "deny")))
	if q.Get("error") != "access_denied" || q.Get("state") != "st<&>" || q.Get("iss") != s.URL() || q.Get("code") != "" {
		t.Errorf("redirect query = %v", q)
	}
	if st := s.Stats(); st.CodesIssued != 0 || st.ConsentDenials != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// A consent answer that is forged, sent from another browser, expired,
// malformed or sent to the other flow is refused and changes nothing; the
// genuine answer still works afterwards.
func TestConsentPageRefusesForgedAnswers(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(WithConsent(true), WithClient("web", "s"), WithNow(clock.Now))
	defer s.Close()
	b := browser(t)
	open := func() url.Values {
		return formFields(t, fetchPage(t, b, http.MethodGet, s.AuthorizeURL()+"?"+authorizeParams("web", "read").Encode(), nil))
	}
	fields := open()
	other := open() // a second pending request in the same browser

	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		form   url.Values
		status int
	}{
		{"wrong CSRF token", b, "/authorize", with(fields, "decision", "approve", "csrf_token", other.Get("csrf_token")), 403},
		{"missing CSRF token", b, "/authorize", with(fields, "decision", "approve", "csrf_token", ""), 403},
		{"another browser", browser(t), "/authorize", with(fields, "decision", "approve"), 403},
		{"unknown request", b, "/authorize", with(fields, "decision", "approve", "request", "ocr_nope"), 400},
		{"no decision", b, "/authorize", fields, 400},
		{"odd decision", b, "/authorize", with(fields, "decision", "maybe"), 400},
		{"bad email", b, "/authorize", with(fields, "decision", "approve", "email", "not an address"), 400},
		{"posted to the device page", b, "/device", with(fields, "decision", "approve"), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fetchPage(t, tc.client, http.MethodPost, s.URL()+tc.path, tc.form)
			if r.status != tc.status || r.header.Get("Location") != "" {
				t.Errorf("status %d Location %q, want %d and no redirect", r.status, r.header.Get("Location"), tc.status)
			}
			if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
			}
		})
	}
	if st := s.Stats(); st.CodesIssued != 0 || st.ConsentApprovals+st.ConsentDenials != 0 {
		t.Fatalf("a refused answer changed something: %+v", st)
	}
	q := redirectQuery(t, fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(fields, "decision", "approve")))
	if q.Get("code") == "" {
		t.Fatalf("the genuine answer failed: %v", q)
	}

	// An unanswered consent page expires.
	clock.Advance(consentLifetime)
	if r := fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(other, "decision", "approve")); r.status != 400 {
		t.Errorf("expired consent request: status %d", r.status)
	}
	if st := s.Stats(); st.CodesIssued != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// Without WithConsent the authorize endpoint approves at once, and errors
// carry state and iss both ways (RFC 9207).
func TestAuthorizeIssOnEveryRedirect(t *testing.T) {
	for _, consent := range []bool{false, true} {
		s := NewServer(WithConsent(consent), WithClient("web", "s"), WithClient("pub", ""))
		p := authorizeParams("pub", "read")
		p.Del("code_challenge")
		p.Del("code_challenge_method")
		r := authorize(t, s, p) // a public client without PKCE: redirected before any page
		loc, _ := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc.Query().Get("error") != "invalid_request" ||
			loc.Query().Get("iss") != s.URL() || loc.Query().Get("state") != "st<&>" {
			t.Errorf("consent=%v: public client without PKCE: %d %v", consent, r.status, loc)
		}
		r = authorize(t, s, authorizeParams("web", "read"))
		want := http.StatusFound
		if consent {
			want = http.StatusOK
		}
		if r.status != want {
			t.Errorf("consent=%v: status %d, want %d", consent, r.status, want)
		}
		s.Close()
	}
}

// The logs of full consent and device flows, at debug level, hold no
// token, code, user code, form token, cookie or secret.
func TestFlowLogsHoldNoSecrets(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const secret = "client-secret-VALUE-3"
	s := NewServer(WithConsent(true), WithOIDC(true), WithClient("web", secret), WithDeviceInterval(time.Hour), WithLogger(logger))
	defer s.Close()
	secrets := []string{secret, testVerifier}
	b := browser(t)

	params := authorizeParams("web", "openid offline_access")
	params.Set("nonce", "nonce-VALUE")
	fields := formFields(t, fetchPage(t, b, http.MethodGet, s.AuthorizeURL()+"?"+params.Encode(), nil))
	secrets = append(secrets, fields.Get("request"), fields.Get("csrf_token"), "nonce-VALUE")
	fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(fields, "decision", "approve", "csrf_token", "forged-VALUE"))
	q := redirectQuery(t, fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(fields, "decision", "approve")))
	res := exchange(t, s, "web", secret, q.Get("code"), testRedirect, testVerifier)
	secrets = append(secrets, q.Get("code"), res.str("access_token"), res.str("refresh_token"), res.str("id_token"), "forged-VALUE")
	u, _ := url.Parse(s.URL())
	for _, ck := range b.Jar.Cookies(u) {
		secrets = append(secrets, ck.Value)
	}

	d := deviceAuthorize(t, s, "web", secret, "openid")
	pollDevice(t, s, "web", secret, d.str("device_code"))
	pollDevice(t, s, "web", secret, d.str("device_code")) // slow_down
	fields = formFields(t, fetchPage(t, b, http.MethodGet, d.str("verification_uri_complete"), nil))
	fetchPage(t, b, http.MethodPost, s.VerificationURL(), with(fields, "decision", "deny"))
	pollDevice(t, s, "web", secret, d.str("device_code"))
	fetchPage(t, b, http.MethodGet, s.VerificationURL()+"?user_code=WRONG-CODE", nil)
	user, _ := normalizeUserCode(d.str("user_code"))
	secrets = append(secrets, d.str("device_code"), d.str("user_code"), user, fields.Get("request"), fields.Get("csrf_token"))

	logs := buf.String()
	for _, sec := range secrets {
		if sec == "" {
			t.Fatalf("a secret to look for is empty")
		}
		if strings.Contains(logs, sec) {
			t.Errorf("log contains a secret %.12s…", sec)
		}
	}
	for _, want := range []string{`"outcome":"approved"`, `"outcome":"denied"`, `"reason":"csrf"`, `"error":"slow_down"`, `"error":"access_denied"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}
