package oauthtest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// deviceAuthorize asks for a device code with Basic authentication (or
// client_id alone when secret is "").
func deviceAuthorize(t testing.TB, s *Server, id, secret, scope string) reply {
	t.Helper()
	form := url.Values{"scope": {scope}}
	var b *basicCreds
	if secret != "" {
		b = &basicCreds{id, secret}
	} else {
		form.Set("client_id", id)
	}
	r := postForm(t, s.DeviceAuthorizationURL(), form, b)
	if r.status != 200 {
		t.Fatalf("device authorization: %d %s", r.status, r.raw)
	}
	return r
}

// pollDevice sends one device_code token request.
func pollDevice(t testing.TB, s *Server, id, secret, deviceCode string) reply {
	t.Helper()
	form := url.Values{"grant_type": {deviceCodeGrantType}, "device_code": {deviceCode}}
	var b *basicCreds
	if secret != "" {
		b = &basicCreds{id, secret}
	} else {
		form.Set("client_id", id)
	}
	return postForm(t, s.TokenURL(), form, b)
}

func TestDeviceFlowAutoApprove(t *testing.T) {
	s := NewServer(WithClient("tv", "s"), WithDeviceInterval(0), WithDeviceCodeLifetime(90*time.Second))
	defer s.Close()
	d := deviceAuthorize(t, s, "tv", "s", "read write")
	if d.header.Get("Cache-Control") != "no-store" {
		t.Errorf("device authorization response is cacheable")
	}
	userCode := d.str("user_code")
	if !strings.HasPrefix(d.str("device_code"), devicePrefix) || len(userCode) != 9 || userCode[4] != '-' ||
		d.str("verification_uri") != s.VerificationURL() ||
		d.str("verification_uri_complete") != s.VerificationURL()+"?user_code="+userCode ||
		d.json["expires_in"] != float64(90) || d.json["interval"] != float64(0) {
		t.Fatalf("device authorization response: %s", d.raw)
	}
	if _, ok := normalizeUserCode(userCode); !ok {
		t.Errorf("user code %q does not normalize", userCode)
	}
	dc := d.str("device_code")
	wantOAuthError(t, pollDevice(t, s, "tv", "s", dc), 400, "authorization_pending")

	// The verification page without a code asks for it.
	b := browser(t)
	p := fetchPage(t, b, http.MethodGet, s.VerificationURL(), nil)
	if p.status != 200 || !strings.Contains(p.body, `name="user_code"`) {
		t.Fatalf("verification page: %d %s", p.status, p.body)
	}
	// Without WithConsent, entering the code (in lower case, without the
	// dash) approves at once.
	typed := strings.ToLower(strings.ReplaceAll(userCode, "-", ""))
	p = fetchPage(t, b, http.MethodGet, s.VerificationURL()+"?user_code="+typed, nil)
	if p.status != 200 || !strings.Contains(p.body, `data-outcome="approved"`) || !strings.Contains(p.body, "tv") {
		t.Fatalf("approval page: %d %s", p.status, p.body)
	}
	tok := pollDevice(t, s, "tv", "s", dc)
	if tok.status != 200 || tok.str("refresh_token") == "" || tok.str("scope") != "read write" {
		t.Fatalf("token: %d %s", tok.status, tok.raw)
	}
	if g := getResource(t, s, tok.str("access_token")); g.status != 200 || g.str("scope") != "read write" {
		t.Errorf("resource: %d %s", g.status, g.raw)
	}
	mustRefresh(t, s, "tv", "s", tok.str("refresh_token"))
	// A device code is redeemed once; its user code no longer works.
	wantOAuthError(t, pollDevice(t, s, "tv", "s", dc), 400, "invalid_grant")
	if p := fetchPage(t, b, http.MethodGet, d.str("verification_uri_complete"), nil); p.status != 400 || !strings.Contains(p.body, `id="error"`) {
		t.Errorf("used user code: %d", p.status)
	}
	if st := s.Stats(); st.DeviceCodesIssued != 1 || st.FamiliesStarted != 1 || st.TokenRequests[deviceCodeGrantType] != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestDeviceFlowConsentPage(t *testing.T) {
	s := NewServer(WithConsent(true), WithClient("cli", ""), WithDeviceInterval(0))
	defer s.Close()
	d := deviceAuthorize(t, s, "cli", "", "openid <b>")
	b := browser(t)
	p := fetchPage(t, b, http.MethodGet, d.str("verification_uri_complete"), nil)
	if p.status != 200 || !strings.Contains(p.body, d.str("user_code")) || !strings.Contains(p.body, `action="device"`) ||
		!strings.Contains(p.body, "&lt;b&gt;") || !strings.Contains(p.body, ">cli<") {
		t.Fatalf("device consent page: %d\n%s", p.status, p.body)
	}
	fields := formFields(t, p)
	wantOAuthError(t, pollDevice(t, s, "cli", "", d.str("device_code")), 400, "authorization_pending")
	// A device consent form posted to the code flow's endpoint is refused.
	if r := fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(fields, "decision", "approve")); r.status != 400 {
		t.Errorf("device answer at /authorize: %d", r.status)
	}
	r := fetchPage(t, b, http.MethodPost, s.VerificationURL(), with(fields, "decision", "approve"))
	if r.status != 200 || !strings.Contains(r.body, `data-outcome="approved"`) {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	if r := fetchPage(t, b, http.MethodPost, s.VerificationURL(), with(fields, "decision", "deny")); r.status != 400 {
		t.Errorf("replayed answer: %d", r.status)
	}
	tok := pollDevice(t, s, "cli", "", d.str("device_code"))
	if tok.status != 200 || tok.str("access_token") == "" {
		t.Fatalf("token: %d %s", tok.status, tok.raw)
	}

	// Deny: the next poll gets access_denied, and keeps getting it.
	d = deviceAuthorize(t, s, "cli", "", "read")
	fields = formFields(t, fetchPage(t, b, http.MethodGet, d.str("verification_uri_complete"), nil))
	r = fetchPage(t, b, http.MethodPost, s.VerificationURL(), with(fields, "decision", "deny"))
	if r.status != 200 || !strings.Contains(r.body, `data-outcome="denied"`) {
		t.Fatalf("deny: %d %s", r.status, r.body)
	}
	for range 2 {
		wantOAuthError(t, pollDevice(t, s, "cli", "", d.str("device_code")), 400, "access_denied")
	}
}

func TestDeviceFlowPollingErrors(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(WithClient("tv", "s"), WithClient("other", "o"), WithNow(clock.Now),
		WithDeviceInterval(2*time.Second), WithDeviceCodeLifetime(time.Minute))
	defer s.Close()
	d := deviceAuthorize(t, s, "tv", "s", "")
	if d.json["interval"] != float64(2) || d.json["expires_in"] != float64(60) {
		t.Fatalf("response: %s", d.raw)
	}
	dc := d.str("device_code")
	wantOAuthError(t, pollDevice(t, s, "tv", "s", dc), 400, "authorization_pending")
	clock.Advance(time.Second)
	wantOAuthError(t, pollDevice(t, s, "tv", "s", dc), 400, "slow_down")
	// The interval grew by 5 s: 2 s is no longer enough, 7 s is.
	clock.Advance(2 * time.Second)
	wantOAuthError(t, pollDevice(t, s, "tv", "s", dc), 400, "slow_down")
	clock.Advance(12 * time.Second)
	wantOAuthError(t, pollDevice(t, s, "tv", "s", dc), 400, "authorization_pending")
	if st := s.Stats(); st.SlowDowns != 2 {
		t.Errorf("SlowDowns = %d, want 2", st.SlowDowns)
	}

	wantOAuthError(t, pollDevice(t, s, "other", "o", dc), 400, "invalid_grant")
	wantOAuthError(t, pollDevice(t, s, "tv", "s", "odc_unknown"), 400, "invalid_grant")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{"grant_type": {deviceCodeGrantType}}, &basicCreds{"tv", "s"}), 400, "invalid_request")
	if r := postForm(t, s.DeviceAuthorizationURL(), url.Values{}, &basicCreds{"tv", "wrong"}); r.status != 401 || r.str("error") != "invalid_client" {
		t.Errorf("wrong secret: %d %s", r.status, r.raw)
	}

	// ApproveDevice approves without a browser, but not an expired code.
	if err := s.ApproveDevice("nope"); err == nil {
		t.Errorf("ApproveDevice accepted a malformed code")
	}
	clock.Advance(time.Minute)
	wantOAuthError(t, pollDevice(t, s, "tv", "s", dc), 400, "expired_token")
	if err := s.ApproveDevice(d.str("user_code")); err == nil {
		t.Errorf("ApproveDevice approved an expired code")
	}
	if p := fetchPage(t, browser(t), http.MethodGet, d.str("verification_uri_complete"), nil); p.status != 400 {
		t.Errorf("verification page for an expired code: %d", p.status)
	}

	d = deviceAuthorize(t, s, "tv", "s", "")
	if err := s.ApproveDevice(strings.ToLower(d.str("user_code"))); err != nil {
		t.Fatal(err)
	}
	if err := s.DenyDevice(d.str("user_code")); err == nil {
		t.Errorf("DenyDevice changed an answered code")
	}
	if r := pollDevice(t, s, "tv", "s", d.str("device_code")); r.status != 200 {
		t.Errorf("approved device code: %d %s", r.status, r.raw)
	}

	// Revoking the client's tokens voids its pending device codes.
	d = deviceAuthorize(t, s, "tv", "s", "")
	s.RevokeClientTokens("tv")
	if err := s.ApproveDevice(d.str("user_code")); err == nil {
		t.Errorf("ApproveDevice approved a revoked code")
	}
	wantOAuthError(t, pollDevice(t, s, "tv", "s", d.str("device_code")), 400, "invalid_grant")
}

func TestUserCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := newUserCode()
		if n, ok := normalizeUserCode(formatUserCode(c)); !ok || n != c {
			t.Fatalf("user code %q does not round-trip", c)
		}
		seen[c] = true
	}
	if len(seen) < 990 {
		t.Errorf("only %d distinct user codes in 1000", len(seen))
	}
	for _, bad := range []string{"", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF_GHJK", "bcdf-ghjk\x00"} {
		if _, ok := normalizeUserCode(bad); ok {
			t.Errorf("normalizeUserCode(%q) accepted", bad)
		}
	}
}
