package connect

import (
	"net/url"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

func TestCheckReturnTo(t *testing.T) {
	if _, err := New(Config{PublicURL: "https://broker.example"}); err == nil {
		t.Fatal("New without a store succeeded")
	}
	if _, err := newForTest([]string{"https://user@app.example/"}); err == nil {
		t.Fatal("an allow-list entry with user info was accepted")
	}
	s, err := newForTest([]string{"https://app.example/oauth/done", "http://127.0.0.1:9000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"", true},
		{"https://app.example/oauth/done", true},
		{"https://app.example/oauth/done/42?tab=1", true},
		{"https://APP.example/oauth/done", true},
		{"http://127.0.0.1:9000/", true},
		{"http://127.0.0.1:9000/anything", true},
		{"https://app.example/oauth/done-not", false},
		{"https://app.example/oauth", false},
		{"http://app.example/oauth/done", false},
		{"https://app.example:444/oauth/done", false},
		{"https://evil.example/oauth/done", false},
		{"https://user@app.example/oauth/done", false},
		{"https://app.example/oauth/done#frag", false},
		{"//app.example/oauth/done", false},
		{"/oauth/done", false},
		{"http://127.0.0.1:9001/", false},
	} {
		err := s.CheckReturnTo(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckReturnTo(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
		if err != nil && tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("CheckReturnTo(%q): code %s", tc.url, tokenkeeper.ErrorCode(err))
		}
	}
}

// newForTest is New without a store, for the pure functions.
func newForTest(returnTo []string) (*Service, error) {
	return New(Config{Store: nopStore{}, PublicURL: "https://broker.example/", ReturnTo: returnTo})
}

// nopStore satisfies tokenkeeper.Store for tests that never reach it.
type nopStore struct{ tokenkeeper.Store }

func TestIssuerOf(t *testing.T) {
	p := &tokenkeeper.Provider{AuthorizationURL: "https://idp.example/tenant/oauth2/authorize", TokenURL: "https://idp.example/tenant/oauth2/token"}
	for _, tc := range []struct {
		iss string
		ok  bool
	}{
		{"https://idp.example", true},
		{"https://idp.example/", true},
		{"https://idp.example/tenant", true},
		{"https://idp.example/tenant/oauth2", true},
		{"https://idp.example/ten", false},
		{"https://idp.example/other", false},
		{"https://attacker.example", false},
		{"http://idp.example", false},
		{"https://idp.example?x=1", false},
		{"", false},
	} {
		if got := issuerOf(p, tc.iss); got != tc.ok {
			t.Errorf("issuerOf(%q) = %v, want %v", tc.iss, got, tc.ok)
		}
	}
}

func TestIssuerCandidates(t *testing.T) {
	p := &tokenkeeper.Provider{AuthorizationURL: "https://accounts.example/o/oauth2/v2/auth"}
	got := issuerCandidates(p, "")
	want := []string{"https://accounts.example/o/oauth2/v2", "https://accounts.example/o/oauth2", "https://accounts.example/o", "https://accounts.example"}
	if len(got) != len(want) {
		t.Fatalf("candidates = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("candidates = %v, want %v", got, want)
		}
	}
}

func TestDeriveAndChallenge(t *testing.T) {
	link := random(32)
	if len(link) != 43 {
		t.Fatalf("link token of %d characters, want 43 (256 bits)", len(link))
	}
	st, nonce := derive("state", link), derive("nonce", link)
	if st == nonce || st == link || derive("state", link) != st || derive("state", random(32)) == st {
		t.Fatal("derived values are not distinct per purpose and link")
	}
	// RFC 7636 Appendix B.
	if got := challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("challenge = %s", got)
	}
}

// TestProfileApplied: a provider made from a preset gets its profile in
// the code exchange (Notion: JSON body; Slack: comma scopes and the
// response shape) and keeps only the redirect parameters its profile names
// (QuickBooks' realmId); a provider without preset is plain RFC 6749.
func TestProfileApplied(t *testing.T) {
	s, err := newForTest(nil)
	if err != nil {
		t.Fatal(err)
	}
	notion := &tokenkeeper.Provider{Name: "n", Preset: "notion", TokenURL: "https://api.notion.com/v1/oauth/token", ClientID: "c", AuthStyle: tokenkeeper.AuthStyleHeader}
	if c := s.oauthConfig(notion, nil); c.BodyFormat.String() != "json" {
		t.Errorf("notion exchange body: %s", c.BodyFormat)
	}
	slack := &tokenkeeper.Provider{Name: "s", Preset: "slack-user", TokenURL: "https://slack.com/api/oauth.v2.access", ClientID: "c", AuthStyle: tokenkeeper.AuthStyleHeader}
	if c := s.oauthConfig(slack, nil); c.ScopeSeparator != "," || c.Response.AccessToken != "authed_user.access_token" {
		t.Errorf("slack-user exchange: %q %+v", c.ScopeSeparator, c.Response)
	}
	plain := &tokenkeeper.Provider{Name: "p", TokenURL: "https://idp.example/token", ClientID: "c", AuthStyle: tokenkeeper.AuthStyleHeader}
	if c := s.oauthConfig(plain, nil); c.BodyFormat.String() != "form" || c.ScopeSeparator != "" {
		t.Errorf("plain provider: %s %q", c.BodyFormat, c.ScopeSeparator)
	}

	q := url.Values{"code": {"x"}, "state": {"y"}, "realmId": {"4620816365"}, "other": {"z"}}
	qb := &tokenkeeper.Provider{Name: "q", Preset: "quickbooks"}
	if got := keptFromRedirect(qb, q); len(got) != 1 || got["realmId"] != "4620816365" {
		t.Errorf("quickbooks keeps %v", got)
	}
	if got := keptFromRedirect(plain, q); got != nil {
		t.Errorf("a provider without preset keeps %v", got)
	}
	q.Set("realmId", "bad\nvalue")
	if got := keptFromRedirect(qb, q); got != nil {
		t.Errorf("a control character was kept: %v", got)
	}
}
