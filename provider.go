package tokenkeeper

import (
	"context"
	"strings"
	"time"
)

// PKCE methods a provider's authorization code flow may use (RFC 7636).
const (
	PKCES256 = "S256" // the default
	PKCENone = "none" // for providers that refuse a code_challenge
)

// Provider is one OAuth2 client registration at an authorization server:
// what every grant (credential) of that client shares. Credentials refer to
// it; the client secret is stored once, on the provider, so rotating it is
// one update. ClientSecret is a secret: stores seal it at rest and it never
// appears in JSON, logs, events or error messages.
type Provider struct {
	// ID is random, assigned by the store on creation and never changes. It
	// is part of the associated data that binds the sealed secret to its row.
	ID   string
	Name string

	AuthorizationURL       string // "" for a provider used only without a browser
	TokenURL               string
	DeviceAuthorizationURL string // optional (RFC 8628)
	RevocationURL          string // optional (RFC 7009)

	ClientID     string
	ClientSecret string // secret; "" for a public client (PKCE)
	AuthStyle    AuthStyle

	// Scopes are requested when a grant is obtained and none are given.
	Scopes []string
	// AuthorizeParams are added to the authorization request; TokenParams
	// to every token request (a credential's own Params override them).
	AuthorizeParams map[string]string
	TokenParams     map[string]string
	// PKCE is the code challenge method: PKCES256 (an empty value on
	// creation) or PKCENone.
	PKCE string

	// APIBaseURL is the API the provider's tokens are for: the broker's
	// proxy forwards /v1/proxy/{credential}/{path} to it, adding the
	// current token as APIToken says. "" for none. The access token is
	// sent there, so it is validated like the token URL.
	APIBaseURL string
	APIToken   APIToken

	// Preset names the profile of the catalog (internal/catalog) the
	// provider was made from, "" for none; TemplateVars are the values its
	// endpoints were filled with. A refresh applies the profile's
	// departures from RFC 6749. Both are set on creation only.
	Preset       string
	TemplateVars map[string]string
	// Issuer is the issuer whose OpenID Connect or RFC 8414 metadata the
	// provider's endpoints were discovered from, "" for none. Set on
	// creation only.
	Issuer string

	// Version moves on every update. An update of anything a refresh
	// depends on (token URL, client id and secret, auth style, token
	// parameters) also moves the Version of each of its credentials, so
	// that a refresh in flight with the old values is fenced out.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ProviderUpdate holds the fields of a provider to change; nil fields are
// left alone.
type ProviderUpdate struct {
	AuthorizationURL       *string
	TokenURL               *string
	DeviceAuthorizationURL *string
	RevocationURL          *string
	ClientID               *string
	ClientSecret           *string
	AuthStyle              *AuthStyle
	Scopes                 *[]string
	AuthorizeParams        *map[string]string
	TokenParams            *map[string]string
	PKCE                   *string
	APIBaseURL             *string
	APIToken               *APIToken
}

// SendsSecrets reports whether upd changes where or how a provider's
// secrets, or its grants' refresh tokens, are sent: such a change needs a
// fresh caller.
func (upd ProviderUpdate) SendsSecrets() bool {
	return upd.AuthorizationURL != nil || upd.TokenURL != nil || upd.DeviceAuthorizationURL != nil ||
		upd.RevocationURL != nil || upd.ClientID != nil || upd.ClientSecret != nil || upd.AuthStyle != nil ||
		upd.TokenParams != nil || upd.AuthorizeParams != nil || upd.APIBaseURL != nil || upd.APIToken != nil
}

// CredentialFilter selects credentials; empty fields match any.
type CredentialFilter struct {
	Provider  string // provider name
	Status    Status
	EndUserID string
}

// Match reports whether c passes f.
func (f CredentialFilter) Match(c *Credential) bool {
	return (f.Provider == "" || f.Provider == c.Provider) &&
		(f.Status == "" || f.Status == c.Status) &&
		(f.EndUserID == "" || f.EndUserID == c.EndUserID)
}

// ProviderStore keeps providers. Every method is safe for concurrent use.
type ProviderStore interface {
	// CreateProvider validates and inserts p, assigning ID, Version,
	// CreatedAt and UpdatedAt; an empty PKCE becomes PKCES256. Returns
	// EINVALID or ECONFLICT (name taken).
	CreateProvider(ctx context.Context, p *Provider) error
	// Provider returns the named provider with its secret opened. Returns
	// ENOTFOUND.
	Provider(ctx context.Context, name string) (*Provider, error)
	// Providers returns all providers ordered by name, secrets opened.
	Providers(ctx context.Context) ([]*Provider, error)
	// UpdateProvider applies upd in one transaction. A change of anything a
	// refresh depends on moves the fencing version of every credential of
	// the provider; their next refresh uses the new values. Returns
	// ENOTFOUND or EINVALID; nothing is written on error.
	UpdateProvider(ctx context.Context, name string, upd ProviderUpdate) (*Provider, error)
	// DeleteProvider removes a provider no credential uses. Returns
	// ENOTFOUND, or ECONFLICT naming how many credentials still use it.
	DeleteProvider(ctx context.Context, name string) error
	// ProviderCredentialCount returns how many credentials use the named
	// provider. Returns ENOTFOUND.
	ProviderCredentialCount(ctx context.Context, name string) (int, error)
	// FilterCredentials returns the credentials f selects ordered by name,
	// secrets opened. Returns EINVALID for an invalid status.
	FilterCredentials(ctx context.Context, f CredentialFilter) ([]*Credential, error)
}

// ValidateEndpoint reports whether u may be used as the named endpoint
// (token_url, authorization_url, ...): an absolute https URL, or http to a
// loopback address. Returns EINVALID.
func ValidateEndpoint(field, u string) error {
	if err := ValidateTokenURL(u); err != nil {
		e := err.(*Error)
		return &Error{Code: e.Code, Message: strings.ReplaceAll(e.Message, "token_url", field)}
	}
	return nil
}

// Validate checks the configuration of p and returns EINVALID describing
// the first problem found. The secret is never quoted.
func (p *Provider) Validate() error {
	if err := ValidateName(p.Name); err != nil {
		return err
	}
	if err := ValidateTokenURL(p.TokenURL); err != nil {
		return err
	}
	for _, ep := range []struct{ field, u string }{
		{"authorization_url", p.AuthorizationURL},
		{"device_authorization_url", p.DeviceAuthorizationURL},
		{"revocation_url", p.RevocationURL},
	} {
		if ep.u != "" {
			if err := ValidateEndpoint(ep.field, ep.u); err != nil {
				return err
			}
		}
	}
	if p.ClientID == "" {
		return Errorf(EINVALID, "client_id is required")
	}
	if len(p.ClientID) > 512 || len(p.ClientSecret) > 4096 {
		return Errorf(EINVALID, "client_id or client_secret is too long")
	}
	switch p.AuthStyle {
	case AuthStyleHeader, AuthStyleBody:
	default:
		return Errorf(EINVALID, "auth_style must be header (client_secret_basic) or body (client_secret_post)")
	}
	switch p.PKCE {
	case PKCES256, PKCENone:
	default:
		return Errorf(EINVALID, "pkce must be S256 or none")
	}
	if err := validateScopes(p.Scopes); err != nil {
		return err
	}
	if p.APIBaseURL != "" {
		if err := ValidateAPIBaseURL(p.APIBaseURL); err != nil {
			return err
		}
	}
	if err := p.APIToken.Validate(); err != nil {
		return err
	}

	if p.Preset != "" && ValidateName(p.Preset) != nil {
		return Errorf(EINVALID, "invalid preset name %q", truncate(p.Preset, 80))
	}
	if p.Issuer != "" {
		if err := ValidateEndpoint("issuer", p.Issuer); err != nil {
			return err
		}
	}
	if len(p.TemplateVars) > 0 && p.Preset == "" {
		return Errorf(EINVALID, "template_vars need a preset")
	}
	for k, v := range p.TemplateVars {
		if k == "" || len(k) > 40 || len(v) > 253 {
			return Errorf(EINVALID, "template_vars: %q is not a template variable", truncate(k, 40))
		}
	}
	for k, v := range p.TokenParams {
		if k == "" || reservedParams[k] {
			return Errorf(EINVALID, "token_params may not set %q", truncate(k, 80))
		}
		if v == SealedParamValue && IsSecretParam(k) {
			return Errorf(EINVALID, "token_params: %q has no stored value to keep: give the value itself", truncate(k, 80))
		}
	}
	for k, v := range p.AuthorizeParams {
		if k == "" || reservedAuthorizeParams[k] {
			return Errorf(EINVALID, "authorize_params may not set %q", truncate(k, 80))
		}
		if v == SealedParamValue && IsSecretParam(k) {
			return Errorf(EINVALID, "authorize_params: %q has no stored value to keep: give the value itself", truncate(k, 80))
		}
	}
	return nil
}

// reservedAuthorizeParams are set by the authorization request itself.
var reservedAuthorizeParams = map[string]bool{
	"response_type": true, "client_id": true, "redirect_uri": true, "scope": true, "state": true,
	"code_challenge": true, "code_challenge_method": true,
}

func validateScopes(scopes []string) error {
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return Errorf(EINVALID, "invalid scope %q", truncate(s, 80))
		}
	}
	return nil
}
