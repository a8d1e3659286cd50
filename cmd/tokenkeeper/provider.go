package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
)

// providerView is the part of the API's provider JSON the CLI prints.
type providerView struct {
	Name                   string               `json:"name"`
	AuthorizationURL       string               `json:"authorization_url"`
	TokenURL               string               `json:"token_url"`
	DeviceAuthorizationURL string               `json:"device_authorization_url"`
	RevocationURL          string               `json:"revocation_url"`
	ClientID               string               `json:"client_id"`
	HasClientSecret        bool                 `json:"has_client_secret"`
	AuthStyle              string               `json:"auth_style"`
	Scopes                 []string             `json:"scopes"`
	AuthorizeParams        map[string]string    `json:"authorize_params"`
	TokenParams            map[string]string    `json:"token_params"`
	PKCE                   bool                 `json:"pkce"`
	APIBaseURL             string               `json:"api_base_url"`
	APIToken               tokenkeeper.APIToken `json:"api_token"`
	Preset                 string               `json:"preset"`
	Issuer                 string               `json:"issuer"`
	Credentials            *int                 `json:"credentials"`
	Version                int64                `json:"version"`
	UpdatedAt              time.Time            `json:"updated_at"`
}

// providerFlags are the flags provider add and update share.
type providerFlags struct {
	authorizationURL, tokenURL, deviceURL, revocationURL *string
	clientID, secret, secretFile, authStyle, scopes      *string
	pkce                                                 *bool
	apiBaseURL, apiToken                                 *string
	authorizeParams, tokenParams                         paramsFlag
}

func (pf *providerFlags) register(c *command, update bool) {
	what := func(s string) string {
		if update {
			return "new " + s
		}
		return s
	}
	pf.authorizationURL = c.fs.String("authorization-url", "", what("authorization endpoint (for the connect flow)"))
	pf.tokenURL = c.fs.String("token-url", "", what("token endpoint (https, or http to loopback)"))
	pf.deviceURL = c.fs.String("device-authorization-url", "", what("device authorization endpoint (RFC 8628), optional"))
	pf.revocationURL = c.fs.String("revocation-url", "", what("revocation endpoint (RFC 7009), optional"))
	pf.clientID = c.fs.String("client-id", "", what("OAuth client id"))
	pf.secretFile = c.fs.String("client-secret-file", "", "read the client secret from this file ('-': standard input); none for a public client")
	pf.secret = c.fs.String("client-secret", "", what("OAuth client secret"))
	def := "header"
	if update {
		def = ""
	}
	pf.authStyle = c.fs.String("auth-style", def, "client authentication: header (client_secret_basic) or body (client_secret_post)")
	pf.scopes = c.fs.String("scopes", "", what("default scopes, comma or space separated"))
	pf.pkce = c.fs.Bool("pkce", true, "use PKCE (S256) in the connect flow; --pkce=false for providers that refuse it")
	pf.apiBaseURL = c.fs.String("api-base-url", "", what("base URL of the API the tokens are for: /v1/proxy/CREDENTIAL/PATH forwards to it with the token ('' for none)"))
	pf.apiToken = c.fs.String("api-token", "", "how the proxy presents the token: 'Authorization: Bearer' (the default), 'X-Api-Key:' (a bare token in a header) or '?access_token' (a query parameter)")
	pf.authorizeParams, pf.tokenParams = paramsFlag{}, paramsFlag{}
	c.fs.Var(pf.authorizeParams, "authorize-param", "extra authorization request parameter key=value (repeatable)")
	c.fs.Var(pf.tokenParams, "token-param", "extra token request parameter key=value (repeatable), e.g. audience=...")
	c.inlineSecret("client-secret", "--client-secret-file FILE, --client-secret-file - (standard input) or $TOKENKEEPER_CLIENT_SECRET")
	c.envless("authorization-url", "token-url", "device-authorization-url", "revocation-url", "client-id",
		"client-secret-file", "auth-style", "scopes", "pkce", "authorize-param", "token-param", "api-base-url", "api-token")
	if update {
		c.envless("client-secret")
	}
}

// body returns the request body of the flags set (all of them for add).
func (pf *providerFlags) body(e *env, c *command, all bool) (map[string]any, error) {
	set := map[string]bool{}
	c.fs.Visit(func(f *flagT) { set[f.Name] = true })
	body := map[string]any{}
	str := func(flagName, field string, v *string) {
		if all || set[flagName] {
			body[field] = *v
		}
	}
	str("authorization-url", "authorization_url", pf.authorizationURL)
	str("token-url", "token_url", pf.tokenURL)
	str("device-authorization-url", "device_authorization_url", pf.deviceURL)
	str("revocation-url", "revocation_url", pf.revocationURL)
	str("client-id", "client_id", pf.clientID)
	str("auth-style", "auth_style", pf.authStyle)
	// For add, the environment fills --client-secret when it is not given
	// (see parse); update takes a new secret only from its flags.
	if all || set["client-secret"] || set["client-secret-file"] {
		v, err := e.secretValue(*pf.secret, *pf.secretFile, "client secret")
		if err != nil {
			return nil, err
		}
		body["client_secret"] = v
	}
	if all || set["scopes"] {
		body["scopes"] = splitList(*pf.scopes)
	}
	if all || set["pkce"] {
		body["pkce"] = *pf.pkce
	}
	if set["api-base-url"] {
		body["api_base_url"] = *pf.apiBaseURL
	}
	if set["api-token"] {
		t, err := tokenkeeper.ParseAPIToken(*pf.apiToken)
		if err != nil {
			return nil, usagef("--api-token: %s", tokenkeeper.ErrorMessage(err))
		}
		body["api_token"] = t
	}
	if len(pf.authorizeParams) > 0 {
		body["authorize_params"] = map[string]string(pf.authorizeParams)
	}
	if len(pf.tokenParams) > 0 {
		body["token_params"] = map[string]string(pf.tokenParams)
	}
	return body, nil
}

func (e *env) cmdProviderAdd(c *command) runFunc {
	c.describe("tokenkeeper provider add NAME (--token-url URL | --preset PRESET [--var KEY=VALUE]) --client-id ID [flags]",
		`Adds a provider: one OAuth client at an authorization server, shared by
every credential (grant) of it. Its client secret is stored once, sealed;
give it from a file or standard input ('-'), or $TOKENKEEPER_CLIENT_SECRET,
so that it does not show in the shell history or the process list. A public
client (PKCE, no secret) has none.

--preset fills the endpoints, client authentication, scopes, parameters and
PKCE from the provider's profile ('tokenkeeper provider presets' lists
them); --var fills its template variables, such as --var tenant=contoso;
any other flag given overrides the preset.

--issuer reads the issuer's /.well-known/openid-configuration (or, RFC
8414, oauth-authorization-server) and fills the endpoints, the client
authentication and PKCE from it; the document must name the same issuer,
and http is refused outside loopback. Nothing is created when discovery
fails.`)
	var ao apiOptions
	ao.register(c)
	var pf providerFlags
	pf.register(c, false)
	preset := c.fs.String("preset", "", "fill the provider from this preset of the catalog")
	vars := paramsFlag{}
	c.fs.Var(vars, "var", "template variable of the preset key=value (repeatable), e.g. tenant=contoso")
	issuer := c.fs.String("issuer", "", "fill the endpoints from this issuer's OpenID Connect or RFC 8414 metadata")
	c.envless("preset", "var", "issuer")
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, err := c.args(1, "the provider name")
		if err != nil {
			return err
		}
		if *preset == "" && len(vars) > 0 {
			return usagef("--var needs --preset")
		}
		if *preset != "" && *issuer != "" {
			return usagef("give --preset or --issuer, not both")
		}
		// With a preset or an issuer, only the flags given are sent: the
		// preset or the discovered metadata fills the rest.
		body, err := pf.body(e, c, *preset == "" && *issuer == "")
		if err != nil {
			return err
		}
		if *issuer != "" {
			d, err := catalog.Discover(e.ctx, &http.Client{Timeout: 30 * time.Second}, *issuer)
			if err != nil {
				return fmt.Errorf("add provider: %w", err)
			}
			fill := func(field, v string) {
				if _, given := body[field]; !given && v != "" {
					body[field] = v
				}
			}
			fill("authorization_url", d.AuthorizationURL)
			fill("token_url", d.TokenURL)
			fill("device_authorization_url", d.DeviceAuthorizationURL)
			fill("revocation_url", d.RevocationURL)
			fill("auth_style", string(d.AuthStyle))
			if _, given := body["pkce"]; !given {
				body["pkce"] = d.PKCE != "none"
			}
			if _, given := body["scopes"]; !given && len(d.Scopes) > 0 {
				body["scopes"] = d.Scopes
			}
			body["issuer"] = d.Issuer
		}
		if *preset != "" || *issuer != "" {
			if _, ok := body["client_secret"]; !ok {
				v, err := e.secretValue(*pf.secret, *pf.secretFile, "client secret")
				if err != nil {
					return err
				}
				body["client_secret"] = v
			}
			body["client_id"] = *pf.clientID
			if *preset != "" {
				body["preset"] = *preset
			}
			if len(vars) > 0 {
				body["template_vars"] = map[string]string(vars)
			}
		}
		body["name"] = pos[0]
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "POST", "/v1/providers", body, &out); err != nil {
			return fmt.Errorf("add provider: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		if *preset != "" {
			fmt.Fprintf(e.stdout, "Added provider %q from preset %s.\n", pos[0], *preset)
			return nil
		}
		fmt.Fprintf(e.stdout, "Added provider %q.\n", pos[0])
		return nil
	}
}

// presetView is one preset as `provider presets --json` prints it.
type presetView struct {
	Name        string            `json:"name"`
	DisplayName string            `json:"display_name"`
	Vars        map[string]string `json:"template_vars,omitempty"`
	Quirks      []string          `json:"quirks"`
	Docs        []string          `json:"docs"`
	Profile     *catalog.Profile  `json:"profile"`
}

func (e *env) cmdProviderPresets(c *command) runFunc {
	c.describe("tokenkeeper provider presets [--json] [--markdown]",
		`Lists the provider presets this binary knows: each with the template
variables it needs, how the provider departs from the textbook, and the
pages of its documentation the profile is written from. No broker needed.`)
	asJSON := c.fs.Bool("json", false, "print JSON, with each full profile")
	md := c.fs.Bool("markdown", false, "print the Markdown table of the README")
	c.envless("markdown")
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		ps := catalog.All()
		switch {
		case *asJSON:
			out := make([]presetView, 0, len(ps))
			for _, p := range ps {
				out = append(out, presetView{Name: p.Name, DisplayName: p.DisplayName, Vars: p.Vars, Quirks: p.Quirks(), Docs: p.Docs, Profile: p})
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"presets": out})
		case *md:
			fmt.Fprint(e.stdout, catalog.MarkdownTable())
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PRESET\tPROVIDER\tNEEDS\tQUIRKS")
		for _, p := range ps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.DisplayName, dash(strings.Join(p.Needs(), ", ")), dash(strings.Join(p.Quirks(), "; ")))
		}
		return tw.Flush()
	}
}

func (e *env) cmdProviderList(c *command) runFunc {
	c.describe("tokenkeeper provider list [--json]", "Lists the providers (no secrets).")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/providers", nil, &out); err != nil {
			return fmt.Errorf("list providers: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var list struct {
			Providers []providerView `json:"providers"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTOKEN URL\tCLIENT ID\tSECRET\tPKCE")
		for _, v := range list.Providers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.TokenURL, v.ClientID, yesNo(v.HasClientSecret, "sealed", "none"), yesNo(v.PKCE, "S256", "off"))
		}
		return tw.Flush()
	}
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func formatParams(p map[string]string) string {
	var out []string
	for k, v := range p {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return dash(strings.Join(out, " "))
}

func (e *env) cmdProviderShow(c *command) runFunc {
	c.describe("tokenkeeper provider show NAME [--json]", "Shows one provider and how many credentials use it (no secrets).")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the provider name")
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/providers/"+url.PathEscape(pos[0]), nil, &out); err != nil {
			return fmt.Errorf("show provider: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var v providerView
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		n := "-"
		if v.Credentials != nil {
			n = fmt.Sprint(*v.Credentials)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		for _, r := range [][2]string{
			{"name", v.Name}, {"authorization url", dash(v.AuthorizationURL)}, {"token url", v.TokenURL},
			{"device authorization url", dash(v.DeviceAuthorizationURL)}, {"revocation url", dash(v.RevocationURL)},
			{"client id", v.ClientID}, {"client secret", yesNo(v.HasClientSecret, "sealed", "none (public client)")},
			{"auth style", v.AuthStyle}, {"scopes", dash(strings.Join(v.Scopes, " "))},
			{"authorize params", formatParams(v.AuthorizeParams)}, {"token params", formatParams(v.TokenParams)},
			{"pkce", yesNo(v.PKCE, "S256", "off")}, {"api base url", dash(v.APIBaseURL)}, {"api token", v.APIToken.String()},
			{"preset", dash(v.Preset)}, {"issuer", dash(v.Issuer)},
			{"credentials", n}, {"version", fmt.Sprint(v.Version)},
		} {
			fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
		}
		return tw.Flush()
	}
}

func (e *env) cmdProviderUpdate(c *command) runFunc {
	c.describe("tokenkeeper provider update NAME [flags]",
		`Changes a provider. A new client secret is one update: every credential of
the provider uses it from its next refresh, and those refused for a bad client
(invalid_client) are tried again at once. Changing the secret, or where and
how it is sent, needs a fresh login or an API key. Moving the token URL to
another host clears the stored client secret unless a new one is given.`)
	var ao apiOptions
	ao.register(c)
	var pf providerFlags
	pf.register(c, true)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, err := c.args(1, "the provider name")
		if err != nil {
			return err
		}
		body, err := pf.body(e, c, false)
		if err != nil {
			return err
		}
		if len(body) == 0 {
			return usagef("nothing to update: give at least one flag (see tokenkeeper provider update --help)")
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "PATCH", "/v1/providers/"+url.PathEscape(pos[0]), body, &out); err != nil {
			return fmt.Errorf("update provider: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Updated provider %q.\n", pos[0])
		return nil
	}
}
