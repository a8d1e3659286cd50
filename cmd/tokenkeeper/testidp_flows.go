package main

import (
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// publicClientsFlag collects repeated --public-client ID flags.
type publicClientsFlag []string

func (p *publicClientsFlag) String() string { return "" }
func (p *publicClientsFlag) Type() string   { return "ID" }
func (p *publicClientsFlag) Set(v string) error {
	if v == "" || strings.Contains(v, ":") {
		return fmt.Errorf("expected a client ID without a secret")
	}
	*p = append(*p, v)
	return nil
}

// flowFlags are testidp's flags for the end-user flows: consent page,
// device grant, OpenID Connect and offline access.
type flowFlags struct {
	consent, oidc, offline *bool
	deviceLifetime         *time.Duration
	deviceInterval         *time.Duration
	user                   *string
	public                 publicClientsFlag
}

func registerFlowFlags(c *command) *flowFlags {
	f := &flowFlags{
		consent:        c.fs.Bool("consent", false, "show a consent page (Approve/Deny) at /authorize and /device instead of approving at once"),
		oidc:           c.fs.Bool("oidc", false, "issue OpenID Connect ID tokens for the openid scope; serve discovery and /jwks"),
		offline:        c.fs.Bool("offline-access-required", false, "issue refresh tokens only when the scope contains offline_access"),
		deviceLifetime: c.fs.Duration("device-code-lifetime", 10*time.Minute, "how long a device code and its user code stay valid"),
		deviceInterval: c.fs.Duration("device-interval", 5*time.Second, "minimum time between device code polls; faster ones get slow_down (0: no limit)"),
		user:           c.fs.String("end-user", "user-1:user@example.com", "the end user who approves, as SUB:EMAIL (the ID token's sub and email)"),
	}
	c.fs.Var(&f.public, "public-client", "register a public client ID, which uses PKCE and no secret (repeatable)")
	return f
}

// options returns the oauthtest options the flags ask for.
func (f *flowFlags) options() ([]oauthtest.Option, error) {
	if *f.deviceLifetime <= 0 || *f.deviceInterval < 0 {
		return nil, usagef("--device-code-lifetime must be positive, --device-interval not negative")
	}
	sub, email, ok := strings.Cut(*f.user, ":")
	if a, err := mail.ParseAddress(email); !ok || sub == "" || err != nil || a.Address != email {
		return nil, usagef("--end-user must be SUB:EMAIL, such as user-1:user@example.com")
	}
	opts := []oauthtest.Option{
		oauthtest.WithConsent(*f.consent), oauthtest.WithOIDC(*f.oidc), oauthtest.WithOfflineAccessRequired(*f.offline),
		oauthtest.WithDeviceCodeLifetime(*f.deviceLifetime), oauthtest.WithDeviceInterval(*f.deviceInterval),
		oauthtest.WithEndUser(sub, email),
	}
	for _, id := range f.public {
		opts = append(opts, oauthtest.WithClient(id, ""))
	}
	return opts, nil
}

// printURLs prints the endpoints of the end-user flows.
func (f *flowFlags) printURLs(w io.Writer, srv *oauthtest.Server) {
	fmt.Fprintf(w, "  device:    %s (verify at %s)\n", srv.DeviceAuthorizationURL(), srv.VerificationURL())
	if *f.oidc {
		fmt.Fprintf(w, "  discovery: %s\n", srv.OpenIDConfigurationURL())
	}
}
