package oauthtest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// idClaims are the claims the tests read from an ID token.
type idClaims struct {
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	AuthTime      int64  `json:"auth_time"`
}

// The ID token is verified with go-oidc, the library the broker uses,
// against the server's own discovery document and key set.
func TestOIDCIDTokenVerifiesWithGoOIDC(t *testing.T) {
	s := NewServer(WithOIDC(true), WithConsent(true), WithClient("web", "s"), WithClient("other", "o"))
	defer s.Close()
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, s.URL())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var disc struct {
		Device string `json:"device_authorization_endpoint"`
		JWKS   string `json:"jwks_uri"`
	}
	if err := provider.Claims(&disc); err != nil || disc.Device != s.DeviceAuthorizationURL() || disc.JWKS != s.JWKSURL() {
		t.Errorf("discovery document: %+v %v", disc, err)
	}
	if provider.Endpoint().TokenURL != s.TokenURL() || provider.Endpoint().AuthURL != s.AuthorizeURL() {
		t.Errorf("endpoints = %+v", provider.Endpoint())
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: "web"})

	// The end user signs in on the consent page with another address.
	b := browser(t)
	params := authorizeParams("web", "openid email")
	params.Set("nonce", "n-0S6_WzA2Mj")
	fields := formFields(t, fetchPage(t, b, http.MethodGet, s.AuthorizeURL()+"?"+params.Encode(), nil))
	q := redirectQuery(t, fetchPage(t, b, http.MethodPost, s.AuthorizeURL(),
		with(fields, "decision", "approve", "email", "alice@example.org")))
	res := exchange(t, s, "web", "s", q.Get("code"), testRedirect, testVerifier)
	raw := res.str("id_token")
	if res.status != 200 || raw == "" {
		t.Fatalf("exchange: %d %s", res.status, res.raw)
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var cl idClaims
	if err := idt.Claims(&cl); err != nil {
		t.Fatal(err)
	}
	if idt.Issuer != s.URL() || idt.Subject != SubjectFor("alice@example.org") || idt.Nonce != "n-0S6_WzA2Mj" ||
		len(idt.Audience) != 1 || idt.Audience[0] != "web" || cl.Email != "alice@example.org" || !cl.EmailVerified || cl.AuthTime == 0 {
		t.Errorf("ID token = %+v, claims %+v", idt, cl)
	}
	if err := idt.VerifyAccessToken(res.str("access_token")); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	if idt.VerifyAccessToken("oat_other") == nil {
		t.Errorf("at_hash matched another access token")
	}
	// Another client's verifier, and a tampered token, are refused.
	if _, err := provider.Verifier(&oidc.Config{ClientID: "other"}).Verify(ctx, raw); err == nil {
		t.Errorf("token for web verified for other")
	}
	parts := strings.Split(raw, ".")
	forged := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
	if _, err := verifier.Verify(ctx, forged); err == nil {
		t.Errorf("tampered token verified")
	}
	if s.Stats().IDTokensIssued != 1 {
		t.Errorf("stats = %+v", s.Stats())
	}

	// Without the openid scope there is no ID token.
	fields = formFields(t, fetchPage(t, b, http.MethodGet, s.AuthorizeURL()+"?"+authorizeParams("web", "read").Encode(), nil))
	q = redirectQuery(t, fetchPage(t, b, http.MethodPost, s.AuthorizeURL(), with(fields, "decision", "approve")))
	if res := exchange(t, s, "web", "s", q.Get("code"), testRedirect, testVerifier); res.status != 200 || res.str("id_token") != "" {
		t.Errorf("exchange without openid: %d %s", res.status, res.raw)
	}
}

// The device grant carries an ID token for the default end user, set with
// WithEndUser.
func TestOIDCDeviceGrantAndEndUser(t *testing.T) {
	s := NewServer(WithOIDC(true), WithClient("tv", ""), WithDeviceInterval(0), WithEndUser("u-42", "bob@example.net"))
	defer s.Close()
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	d := deviceAuthorize(t, s, "tv", "", "openid email")
	if err := s.ApproveDevice(d.str("user_code")); err != nil {
		t.Fatal(err)
	}
	tok := pollDevice(t, s, "tv", "", d.str("device_code"))
	idt, err := provider.Verifier(&oidc.Config{ClientID: "tv"}).Verify(ctx, tok.str("id_token"))
	if err != nil {
		t.Fatalf("verify: %v (%s)", err, tok.raw)
	}
	var cl idClaims
	_ = idt.Claims(&cl)
	if idt.Subject != "u-42" || cl.Email != "bob@example.net" || idt.Nonce != "" {
		t.Errorf("ID token = %+v %+v", idt, cl)
	}
}

func TestOIDCOffByDefault(t *testing.T) {
	s := NewServer(WithClient("web", "s"))
	defer s.Close()
	for _, u := range []string{s.OpenIDConfigurationURL(), s.JWKSURL()} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if r := do(t, req); r.status != 404 {
			t.Errorf("%s: %d", u, r.status)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.MetadataURL(), nil)
	if r := do(t, req); r.json["jwks_uri"] != nil {
		t.Errorf("metadata names a key set without OIDC: %s", r.raw)
	}
	code := authorizeCode(t, s, "web", "openid", s256(testVerifier))
	if r := exchange(t, s, "web", "s", code, testRedirect, testVerifier); r.status != 200 || r.str("id_token") != "" {
		t.Errorf("exchange: %d %s", r.status, r.raw)
	}
}

// With WithOfflineAccessRequired a refresh token comes only with
// offline_access, from either grant.
func TestOfflineAccessRequired(t *testing.T) {
	s := NewServer(WithOfflineAccessRequired(true), WithClient("web", "s"), WithDeviceInterval(0))
	defer s.Close()
	for _, tc := range []struct {
		scope       string
		wantRefresh bool
	}{{"openid", false}, {"", false}, {"openid offline_access", true}} {
		code := authorizeCode(t, s, "web", tc.scope, s256(testVerifier))
		r := exchange(t, s, "web", "s", code, testRedirect, testVerifier)
		if r.status != 200 || (r.str("refresh_token") != "") != tc.wantRefresh {
			t.Errorf("code grant, scope %q: %d %s", tc.scope, r.status, r.raw)
		}
		if g := getResource(t, s, r.str("access_token")); g.status != 200 {
			t.Errorf("resource: %d", g.status)
		}
		d := deviceAuthorize(t, s, "web", "s", tc.scope)
		if err := s.ApproveDevice(d.str("user_code")); err != nil {
			t.Fatal(err)
		}
		r = pollDevice(t, s, "web", "s", d.str("device_code"))
		if r.status != 200 || (r.str("refresh_token") != "") != tc.wantRefresh {
			t.Errorf("device grant, scope %q: %d %s", tc.scope, r.status, r.raw)
		}
	}
	// IssueRefreshToken is not affected.
	if r := refresh(t, s, "web", "s", s.IssueRefreshToken("web", "read")); r.status != 200 {
		t.Errorf("refresh: %d %s", r.status, r.raw)
	}
}

func TestFlowOptionsValidate(t *testing.T) {
	for name, opt := range map[string]Option{
		"negative lifetime": WithDeviceCodeLifetime(-1),
		"negative interval": WithDeviceInterval(-time.Second),
		"empty subject":     WithEndUser("", "a@example.com"),
		"bad email":         WithEndUser("u", "Alice <a@example.com>"),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewHandler accepted %s", name)
				}
			}()
			NewHandler(opt)
		})
	}
}
