package tokenkeeper_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func validCredential() *tokenkeeper.Credential {
	return &tokenkeeper.Credential{
		Name: "github", TokenURL: "https://example.com/token", GrantType: tokenkeeper.GrantClientCredentials,
		ClientID: "id", ClientSecret: "s3cret-value", AuthStyle: tokenkeeper.AuthStyleHeader,
	}
}

func TestCredentialValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *tokenkeeper.Credential)
		want   string // substring of the error message, "" for valid
	}{
		{"valid", func(c *tokenkeeper.Credential) {}, ""},
		{"loopback http", func(c *tokenkeeper.Credential) { c.TokenURL = "http://127.0.0.1:9/token" }, ""},
		{"localhost http", func(c *tokenkeeper.Credential) { c.TokenURL = "http://localhost:9/token" }, ""},
		{"ipv6 loopback", func(c *tokenkeeper.Credential) { c.TokenURL = "http://[::1]:9/token" }, ""},
		{"refresh grant", func(c *tokenkeeper.Credential) {
			c.GrantType = tokenkeeper.GrantRefreshToken
			c.ClientSecret = ""
			c.RefreshToken = "rt"
		}, ""},
		{"empty name", func(c *tokenkeeper.Credential) { c.Name = "" }, "invalid name"},
		{"slash in name", func(c *tokenkeeper.Credential) { c.Name = "a/b" }, "invalid name"},
		{"long name", func(c *tokenkeeper.Credential) { c.Name = strings.Repeat("a", 65) }, "invalid name"},
		{"no url", func(c *tokenkeeper.Credential) { c.TokenURL = "" }, "token_url is required"},
		{"relative url", func(c *tokenkeeper.Credential) { c.TokenURL = "/token" }, "not an absolute URL"},
		{"plain http", func(c *tokenkeeper.Credential) { c.TokenURL = "http://example.com/token" }, "https"},
		{"ftp", func(c *tokenkeeper.Credential) { c.TokenURL = "ftp://example.com/token" }, "https"},
		{"userinfo", func(c *tokenkeeper.Credential) { c.TokenURL = "https://u:p@example.com/token" }, "user information"},
		{"bad grant", func(c *tokenkeeper.Credential) { c.GrantType = "password" }, "grant_type"},
		{"no secret", func(c *tokenkeeper.Credential) { c.ClientSecret = "" }, "client_secret is required"},
		{"no refresh token", func(c *tokenkeeper.Credential) { c.GrantType = tokenkeeper.GrantRefreshToken }, "refresh_token is required"},
		{"no client id", func(c *tokenkeeper.Credential) { c.ClientID = "" }, "client_id is required"},
		{"bad auth style", func(c *tokenkeeper.Credential) { c.AuthStyle = "auto" }, "auth_style"},
		{"empty scope", func(c *tokenkeeper.Credential) { c.Scopes = []string{""} }, "invalid scope"},
		{"reserved param", func(c *tokenkeeper.Credential) { c.Params = map[string]string{"grant_type": "x"} }, "params may not set"},
		{"negative lead", func(c *tokenkeeper.Credential) { c.RefreshLead = -time.Second }, "refresh_lead"},
		{"bad status", func(c *tokenkeeper.Credential) { c.Status = "broken" }, "invalid status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validCredential()
			tt.mutate(c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
				t.Fatalf("Validate() code = %q (%v), want EINVALID", tokenkeeper.ErrorCode(err), err)
			}
			if msg := tokenkeeper.ErrorMessage(err); !strings.Contains(msg, tt.want) {
				t.Fatalf("message %q does not contain %q", msg, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Fatalf("error leaks the client secret: %v", err)
			}
		})
	}
}

func TestAPIKeyCanRead(t *testing.T) {
	admin := &tokenkeeper.APIKey{Role: tokenkeeper.RoleAdmin}
	consumer := &tokenkeeper.APIKey{Role: tokenkeeper.RoleConsumer, Credentials: []string{"a"}}
	revoked := &tokenkeeper.APIKey{Role: tokenkeeper.RoleAdmin, RevokedAt: time.Now()}
	if !admin.CanRead("x") || !consumer.CanRead("a") || consumer.CanRead("b") || revoked.CanRead("x") {
		t.Fatal("CanRead gives wrong answers")
	}
}

func TestTokenValid(t *testing.T) {
	now := time.Now()
	tok := &tokenkeeper.Token{AccessToken: "a", ExpiresAt: now.Add(10 * time.Second)}
	if !tok.Valid(now, 5*time.Second) || tok.Valid(now, 10*time.Second) {
		t.Fatal("Valid ignores the leeway")
	}
	var nilTok *tokenkeeper.Token
	if nilTok.Valid(now, 0) || (&tokenkeeper.Token{}).Valid(now, 0) {
		t.Fatal("empty token reported valid")
	}
}
