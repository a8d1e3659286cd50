package catalog

import (
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// TestEmbeddedProfilesValidate fails naming the file and the field of any
// embedded profile that does not validate.
func TestEmbeddedProfilesValidate(t *testing.T) {
	ps, err := Load(embedded, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) < 25 {
		t.Errorf("%d profiles, want at least 25", len(ps))
	}
	for _, name := range []string{"github", "salesforce", "zendesk", "slack", "microsoft", "google", "atlassian", "notion",
		"quickbooks", "dropbox", "xero", "gitlab", "bitbucket", "box", "zoom", "hubspot", "shopify", "linear", "figma",
		"spotify", "discord", "reddit", "linkedin", "okta", "auth0", "keycloak", "strava", "asana"} {
		if _, err := Lookup(name); err != nil {
			t.Errorf("issue-named provider missing: %v", err)
		}
	}
}

// TestEveryProfileApplies fills each profile's template variables and
// checks that the result is a provider the broker accepts and an
// oauth.Config that validates.
func TestEveryProfileApplies(t *testing.T) {
	for _, p := range All() {
		t.Run(p.Name, func(t *testing.T) {
			vars := map[string]string{}
			for _, v := range p.Needs() {
				vars[v] = "acme-" + v
			}
			a, err := p.Apply(vars)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(a.TokenURL, "{") || strings.Contains(a.AuthorizationURL, "{") || strings.Contains(a.APIBaseURL, "{") {
				t.Errorf("unfilled template: %s %s %s", a.TokenURL, a.AuthorizationURL, a.APIBaseURL)
			}
			for _, v := range vars {
				u, _ := url.Parse(a.TokenURL)
				if !strings.Contains(u.Host+u.Path, v) {
					t.Errorf("token URL %s does not use %s", a.TokenURL, v)
				}
			}
			prov := a.Provider("x-"+p.Name, "client", "secret")
			if err := prov.Validate(); err != nil {
				t.Errorf("provider does not validate: %v", err)
			}
			c := &oauth.Config{TokenURL: a.TokenURL, ClientID: "client", ClientSecret: "secret", AuthStyle: oauth.AuthStyleHeader}
			a.Configure(c)
			if err := c.Validate(); err != nil {
				t.Errorf("oauth config does not validate: %v", err)
			}
			if len(p.Quirks()) == 0 && p.Name != "spotify" {
				t.Logf("%s has no quirks", p.Name)
			}
		})
	}
}

func TestBadProfilesNameFileAndField(t *testing.T) {
	good := `{"name":"NAME","display_name":"X","docs":["https://example.com/docs"],"token_url":"https://example.com/token",
	"auth_style":"body","pkce":true,"tokens_expire":true,"refresh_tokens":{"issued":true}}`
	tests := []struct {
		name, body, field string
	}{
		{"unknown-field", strings.Replace(good, `"pkce":true`, `"pkce":true,"pkse":false`, 1), `unknown field "pkse"`},
		{"name-mismatch", strings.Replace(good, `"name":"NAME"`, `"name":"other"`, 1), "field name"},
		{"no-docs", strings.Replace(good, `["https://example.com/docs"]`, `[]`, 1), "field docs"},
		{"http-docs", strings.Replace(good, `https://example.com/docs`, `http://example.com/docs`, 1), "field docs[0]"},
		{"no-tls", strings.Replace(good, `https://example.com/token`, `http://example.com/token`, 1), "field token_url"},
		{"undeclared-var", strings.Replace(good, `https://example.com/token`, `https://{tenant}.example.com/token`, 1), "field token_url: uses {tenant}"},
		{"unknown-var", strings.Replace(good, `https://example.com/token`, `https://{planet}.example.com/token`, 1), "unknown template variable {planet}"},
		{"unused-var", strings.Replace(good, `"auth_style"`, `"vars":{"tenant":"t"},"auth_style"`, 1), "field vars"},
		{"bad-style", strings.Replace(good, `"body"`, `"basic"`, 1), "field auth_style"},
		{"bad-format", strings.Replace(good, `"auth_style":"body"`, `"auth_style":"body","body_format":"xml"`, 1), "field body_format"},
		{"no-pkce", strings.Replace(good, `"pkce":true,`, ``, 1), "field pkce"},
		{"no-expire", strings.Replace(good, `"tokens_expire":true,`, ``, 1), "field tokens_expire"},
		{"no-issued", strings.Replace(good, `{"issued":true}`, `{}`, 1), "field refresh_tokens.issued"},
		{"reserved-param", strings.Replace(good, `"pkce":true`, `"pkce":true,"token_params":{"grant_type":"x"}`, 1), "field token_params"},
		{"secret-param", strings.Replace(good, `"pkce":true`, `"pkce":true,"authorize_params":{"api_secret":"x"}`, 1), "field authorize_params.api_secret"},
		{"bad-path", strings.Replace(good, `"pkce":true`, `"pkce":true,"response":{"access_token":"a..b"}`, 1), "field response.access_token"},
		{"bad-duration", strings.Replace(good, `{"issued":true}`, `{"issued":true,"idle_lifetime":"90 days"}`, 1), "field refresh_tokens.idle_lifetime"},
		{"bad-status", strings.Replace(good, `"pkce":true`, `"pkce":true,"errors":{"invalid_grant_statuses":[200]}`, 1), "field errors.invalid_grant_statuses"},
		{"separator", strings.Replace(good, `"pkce":true`, `"pkce":true,"scope_separator":";"`, 1), "field scope_separator"},
		{"contradiction", strings.Replace(good, `{"issued":true}`, `{"issued":false,"rotates":true}`, 1), "field refresh_tokens"},
		{"scheme-alone", strings.Replace(good, `"pkce":true`, `"pkce":true,"api":{"scheme":"Token"}`, 1), "field api.scheme"},
		{"bad-header", strings.Replace(good, `"pkce":true`, `"pkce":true,"api":{"header":"Cookie"}`, 1), "field api.header"},
		{"check-expiring", strings.Replace(good, `"pkce":true`, `"pkce":true,"api":{"base_url":"https://api.example.com"},"check":{"path":"/me"}`, 1), "field check"},
		{"check-no-api", strings.Replace(strings.Replace(good, `"tokens_expire":true`, `"tokens_expire":false`, 1), `"pkce":true`, `"pkce":true,"check":{"path":"/me"}`, 1), "field check: needs api.base_url"},
		{"check-path", strings.Replace(strings.Replace(good, `"tokens_expire":true`, `"tokens_expire":false`, 1), `"pkce":true`, `"pkce":true,"api":{"base_url":"https://api.example.com"},"check":{"path":"me/../x"}`, 1), "field check.path"},
		{"check-idle", strings.Replace(strings.Replace(good, `"tokens_expire":true`, `"tokens_expire":false`, 1), `{"issued":true}`, `{"issued":true,"idle_lifetime":"24h"},"api":{"base_url":"https://api.example.com"},"check":{"path":"/me"}`, 1), "field check: cannot stand in"},
		{"check-header", strings.Replace(strings.Replace(good, `"tokens_expire":true`, `"tokens_expire":false`, 1), `"pkce":true`, `"pkce":true,"api":{"base_url":"https://api.example.com"},"check":{"path":"/me","headers":{"Authorization":"x"}}`, 1), "field check.headers.Authorization"},
		{"keep-secret", strings.Replace(good, `"pkce":true`, `"pkce":true,"response":{"keep":["id_token"]}`, 1), "field response.keep[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(tt.body, `"name":"NAME"`, `"name":"`+tt.name+`"`, 1)
			fsys := fstest.MapFS{
				"p/" + tt.name + ".json": {Data: []byte(body)},
				"p/fine.json":            {Data: []byte(strings.Replace(good, "NAME", "fine", 1))},
			}
			_, err := Load(fsys, "p")
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), "p/"+tt.name+".json") || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name the file and %q", err, tt.field)
			}
			if strings.Contains(err.Error(), "fine.json") {
				t.Errorf("error blames the good file: %v", err)
			}
		})
	}
}

func TestApplyRefusesBadVariables(t *testing.T) {
	ms, err := Lookup("microsoft")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ms.Apply(nil)
	if !isInvalid(err) || !strings.Contains(err.Error(), "needs template variables: tenant (") {
		t.Errorf("missing tenant: %v", err)
	}
	kc, _ := Lookup("keycloak")
	_, err = kc.Apply(map[string]string{"domain": "kc.example.com"})
	if !isInvalid(err) || !strings.Contains(err.Error(), "realm (") || strings.Contains(err.Error(), "domain (") {
		t.Errorf("missing realm: %v", err)
	}
	for _, bad := range []string{"evil.com/x", "a@b", "x?y", "..", "a b", "-x"} {
		if _, err := ms.Apply(map[string]string{"tenant": bad}); !isInvalid(err) {
			t.Errorf("tenant %q accepted: %v", bad, err)
		}
	}
	if _, err := ms.Apply(map[string]string{"tenant": "common", "shop": "x"}); !isInvalid(err) || !strings.Contains(err.Error(), "uses: tenant") {
		t.Errorf("unused variable: %v", err)
	}
	a, err := ms.Apply(map[string]string{"tenant": "contoso.onmicrosoft.com"})
	if err != nil {
		t.Fatal(err)
	}
	if a.TokenURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" {
		t.Errorf("token URL = %s", a.TokenURL)
	}
	if _, err := Lookup("nope"); !isInvalid(err) || !strings.Contains(err.Error(), "google") {
		t.Errorf("unknown preset: %v", err)
	}
}

func isInvalid(err error) bool {
	var e *tokenkeeper.Error
	return errors.As(err, &e) && e.Code == tokenkeeper.EINVALID
}

// TestREADMETableIsCurrent: the README's preset table is the one the
// profiles generate.
func TestREADMETableIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), MarkdownTable()) {
		t.Error("README.md's preset table is stale: paste the output of `tokenkeeper provider presets --markdown`")
	}
}

func TestKeepAlive(t *testing.T) {
	for _, tt := range []struct {
		preset string
		want   time.Duration
	}{
		{"atlassian", 45 * 24 * time.Hour}, // 90 days idle
		{"keycloak", 15 * time.Minute},     // 30 min idle
		{"slack", DefaultKeepAlive},        // tokens without expiry, idle limit unknown
		{"shopify", 45 * 24 * time.Hour},   // 90 days idle
		{"spotify", 0},                     // expiring tokens keep the grant alive
	} {
		p, err := Lookup(tt.preset)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.KeepAlive(0); got != tt.want {
			t.Errorf("%s: KeepAlive() = %s, want %s", tt.preset, got, tt.want)
		}
		if got := p.KeepAlive(2 * time.Hour); tt.want == DefaultKeepAlive && got != 2*time.Hour {
			t.Errorf("%s: KeepAlive(2h) = %s", tt.preset, got)
		}
	}
}

// TestForProviderAndConfigure: ForProvider applies a provider's preset or
// gives nil; Configure keeps the profile's refresh URL only with its own
// token URL; Provider carries the API base URL and token presentation.
func TestForProviderAndConfigure(t *testing.T) {
	if ForProvider("", nil) != nil || ForProvider("nope", nil) != nil || ForProvider("microsoft", nil) != nil {
		t.Error("ForProvider without a usable preset should be nil")
	}
	a := ForProvider("figma", nil)
	if a == nil {
		t.Fatal("figma")
	}
	c := &oauth.Config{TokenURL: a.TokenURL}
	a.Configure(c)
	if c.RefreshURL != "https://api.figma.com/v1/oauth/refresh" {
		t.Errorf("refresh URL with the profile's token URL: %q", c.RefreshURL)
	}
	c = &oauth.Config{TokenURL: "http://127.0.0.1:9/token", RefreshURL: "https://stale.example/refresh"}
	a.Configure(c)
	if c.RefreshURL != "" {
		t.Errorf("refresh URL with another token URL: %q", c.RefreshURL)
	}
	shop := ForProvider("shopify", map[string]string{"shop": "acme"})
	p := shop.Provider("s", "id", "secret")
	if p.APIBaseURL != "https://acme.myshopify.com/admin/api" || p.APIToken != (tokenkeeper.APIToken{Header: "X-Shopify-Access-Token"}) {
		t.Errorf("shopify provider API: %q %+v", p.APIBaseURL, p.APIToken)
	}
	if g := ForProvider("google", nil).Provider("g", "id", "secret"); g.APIToken != (tokenkeeper.APIToken{}) || g.APIBaseURL != "https://www.googleapis.com" {
		t.Errorf("google provider API: %q %+v", g.APIBaseURL, g.APIToken)
	}
}
