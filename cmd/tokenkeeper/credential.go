package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// credentialView is the part of the API's credential JSON the CLI prints.
type credentialView struct {
	Name          string     `json:"name"`
	Provider      string     `json:"provider"`
	EndUserID     string     `json:"end_user_id"`
	EndUserName   string     `json:"end_user_name"`
	EndUserEmail  string     `json:"end_user_email"`
	TokenURL      string     `json:"token_url"`
	GrantType     string     `json:"grant_type"`
	ClientID      string     `json:"client_id"`
	Scopes        []string   `json:"scopes"`
	AuthStyle     string     `json:"auth_style"`
	RefreshLead   string     `json:"refresh_lead"`
	Status        string     `json:"status"`
	FailureCount  int        `json:"failure_count"`
	LastError     string     `json:"last_error"`
	LastErrorCode string     `json:"last_error_code"`
	ExpiresAt     *time.Time `json:"expires_at"`
	LastRefreshAt *time.Time `json:"last_refresh_at"`
	NextRefreshAt *time.Time `json:"next_refresh_at"`
	CreatedAt     time.Time  `json:"created_at"`

	Extras map[string]string `json:"extras"` // kept by the provider's profile
}

// secretValue reads a secret given inline, from a file, or from stdin ("-").
func (e *env) secretValue(inline, file, what string) (string, error) {
	if inline != "" && file != "" {
		return "", usagef("give the %s either inline or as a file, not both", what)
	}
	if file == "" {
		return inline, nil
	}
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(e.stdin, 1<<20))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// paramsFlag collects repeated --param key=value flags.
type paramsFlag map[string]string

func (p paramsFlag) String() string { return "" }
func (p paramsFlag) Type() string   { return "key=value" }
func (p paramsFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("expected key=value, got %q", v)
	}
	p[k] = val
	return nil
}

func (e *env) cmdCredentialAdd(c *command) runFunc {
	c.describe("tokenkeeper credential add NAME (--provider P | --token-url URL --client-id ID) [--grant-type TYPE] [flags]",
		`Adds a credential to the broker, which fetches its first token at once, and
waits for that first token: it exits 0 with the token's expiry, or non-zero
with the provider's error code and message (a wrong secret: invalid_client).
A credential whose first token failed is kept in its failed status; the
message says how to fix or remove it. --no-wait returns as soon as the
credential is stored.
A credential is a grant of a provider (see tokenkeeper provider add): name it
with --provider. Without --provider, give the client inline (--token-url,
--client-id, --client-secret-file, --auth-style): the broker reuses the
provider with the same token URL, client id, auth style and secret, or
creates one named after the credential.
Secrets may be given inline, or better from a file or standard input ('-'),
so that they do not show in the shell history or the process list.`)
	var ao apiOptions
	ao.register(c)
	c.oldNameFlag("name", "the credential name")
	provider := c.fs.String("provider", "", "the provider whose grant this is")
	endUser := c.fs.String("end-user-id", "", "your id of the end user the grant belongs to (optional)")
	tokenURL := c.fs.String("token-url", "", "the provider's token endpoint (https, or http to loopback)")
	grant := c.fs.String("grant-type", "client_credentials", "client_credentials or refresh_token")
	clientID := c.fs.String("client-id", "", "OAuth client id")
	secret := c.fs.String("client-secret", "", "OAuth client secret")
	secretFile := c.fs.String("client-secret-file", "", "read the client secret from this file ('-': standard input)")
	rt := c.fs.String("refresh-token", "", "refresh token (grant refresh_token)")
	rtFile := c.fs.String("refresh-token-file", "", "read the refresh token from this file ('-': standard input)")
	scopes := c.fs.String("scopes", "", "scopes, comma or space separated")
	authStyle := c.fs.String("auth-style", "header", "client authentication: header (client_secret_basic) or body (client_secret_post)")
	lead := c.fs.String("refresh-lead", "", "refresh this long before expiry (default: a third of the lifetime, at most 5m)")
	params := paramsFlag{}
	c.fs.Var(params, "param", "extra token request parameter key=value (repeatable), e.g. audience=...")
	asJSON := c.fs.Bool("json", false, "print JSON")
	noWait := c.fs.Bool("no-wait", false, "do not wait for the first token")
	waitTimeout := c.fs.Duration("wait-timeout", 30*time.Second, "how long to wait for the first token (the broker's --provider-timeout is 10s by default)")
	c.inlineSecret("client-secret", "--client-secret-file FILE, --client-secret-file - (standard input) or $TOKENKEEPER_CLIENT_SECRET")
	c.inlineSecret("refresh-token", "--refresh-token-file FILE or --refresh-token-file - (standard input)")
	c.envless("name", "token-url", "grant-type", "client-id", "scopes", "auth-style", "refresh-lead", "param",
		"refresh-token", "refresh-token-file", "client-secret-file", "provider", "end-user-id", "no-wait", "wait-timeout")
	return func(args []string) error {
		name, err := c.nameArg("name", "the credential name (letters, digits, . _ -)")
		if err != nil {
			return err
		}
		if *waitTimeout <= 0 {
			return usagef("--wait-timeout must be positive")
		}
		if *secretFile == "-" && *rtFile == "-" {
			return usagef("only one secret can be read from standard input")
		}
		if *provider != "" {
			set := map[string]bool{}
			c.fs.Visit(func(f *flagT) { set[f.Name] = true })
			for _, f := range []string{"token-url", "client-id", "client-secret", "client-secret-file", "auth-style"} {
				if set[f] && !(f == "client-secret" && *secret == e.getenv(envName(f))) {
					return usagef("--%s is the provider's: give either --provider or the client inline", f)
				}
			}
			*secret = "" // from the environment: the provider has its own
		}
		sec, err := e.secretValue(*secret, *secretFile, "client secret")
		if err != nil {
			return err
		}
		rtok, err := e.secretValue(*rt, *rtFile, "refresh token")
		if err != nil {
			return err
		}
		// The other required fields are the broker's to check; flagWords
		// names them as the flags they come from.
		if ao.passwordStdin && (*secretFile == "-" || *rtFile == "-") {
			return usagef("--login-password-stdin and a secret file '-' cannot both read standard input")
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		body := map[string]any{
			"name": name, "token_url": *tokenURL, "grant_type": *grant, "client_id": *clientID,
			"client_secret": sec, "refresh_token": rtok, "scopes": splitList(*scopes), "auth_style": *authStyle,
			"refresh_lead": *lead,
		}
		if len(params) > 0 {
			body["params"] = map[string]string(params)
		}
		if *provider != "" {
			body = map[string]any{"name": name, "provider": *provider, "grant_type": *grant, "refresh_token": rtok,
				"scopes": splitList(*scopes), "refresh_lead": *lead, "params": body["params"]}
		}
		if *endUser != "" {
			body["end_user_id"] = *endUser
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "POST", "/v1/credentials", body, &out); err != nil {
			return fmt.Errorf("add credential: %w", err)
		}
		if *noWait {
			if *asJSON {
				return printRaw(e.stdout, out)
			}
			fmt.Fprintf(e.stdout, "Added credential %q; the broker is fetching its first token.\n", name)
			return nil
		}
		raw, v, err := cl.waitFirstToken(e.ctx, name, *waitTimeout)
		if *asJSON && raw != nil {
			if perr := printRaw(e.stdout, raw); perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(e.stdout, "Added credential %q; its first token expires in %s (at %s).\n", name,
				untilString(v.ExpiresAt, time.Now()), v.ExpiresAt.Local().Format(timeLayout))
		}
		return nil
	}
}

func printRaw(w io.Writer, raw json.RawMessage) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return printJSON(w, v)
}

func (e *env) cmdCredentialList(c *command) runFunc {
	c.describe("tokenkeeper credential list [--provider P] [--status S] [--end-user-id U] [--json]",
		"Lists the credentials with their status (no secrets), all or those of a provider, status or end user.")
	var ao apiOptions
	ao.register(c)
	provider := c.fs.String("provider", "", "only the credentials of this provider")
	status := c.fs.String("status", "", "only credentials in this status: active, error, needs_reauth or disabled")
	c.completeWords("status", "active", "error", "needs_reauth", "disabled")
	endUser := c.fs.String("end-user-id", "", "only the credentials of this end user")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.envless("provider", "status", "end-user-id")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range map[string]string{"provider": *provider, "status": *status, "end_user_id": *endUser} {
			if v != "" {
				q.Set(k, v)
			}
		}
		path := "/v1/credentials"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", path, nil, &out); err != nil {
			return fmt.Errorf("list credentials: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var list struct {
			Credentials []credentialView `json:"credentials"`
			Unreadable  []string         `json:"unreadable"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		if len(list.Unreadable) > 0 {
			fmt.Fprintf(e.stderr, "warning: %d credentials skipped: their stored secrets do not open (tampered with, or sealed with another key): %s\n",
				len(list.Unreadable), strings.Join(list.Unreadable, ", "))
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPROVIDER\tGRANT\tSTATUS\tEXPIRES IN\tNEXT REFRESH\tLAST ERROR")
		now := time.Now()
		for _, v := range list.Credentials {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Provider, v.GrantType, v.Status, untilString(v.ExpiresAt, now), untilString(v.NextRefreshAt, now), dash(v.LastErrorCode))
		}
		return tw.Flush()
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// untilString renders the time left until t, "-" for none, "expired" when past.
func untilString(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now)
	if d <= 0 {
		if t.Before(now.Add(-time.Second)) {
			return "expired"
		}
		return "now"
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func (e *env) cmdCredentialShow(c *command) runFunc {
	c.describe("tokenkeeper credential show NAME [--json]", "Shows one credential (no secrets).")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the credential name")
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/credentials/"+url.PathEscape(pos[0]), nil, &out); err != nil {
			return fmt.Errorf("show credential: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var v credentialView
		if err := json.Unmarshal(out, &v); err != nil {
			return err
		}
		now := time.Now()
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		rows := [][2]string{
			{"name", v.Name}, {"provider", v.Provider}, {"end user", dash(strings.TrimSpace(v.EndUserID + " " + v.EndUserName + " " + v.EndUserEmail))},
			{"status", v.Status}, {"grant type", v.GrantType}, {"token url", v.TokenURL},
			{"client id", v.ClientID}, {"auth style", v.AuthStyle}, {"scopes", dash(strings.Join(v.Scopes, " "))},
			{"refresh lead", dash(v.RefreshLead)}, {"expires in", untilString(v.ExpiresAt, now)},
			{"next refresh", untilString(v.NextRefreshAt, now)}, {"failures", fmt.Sprint(v.FailureCount)},
			{"last error", dash(v.LastError)},
		}
		for _, k := range slices.Sorted(maps.Keys(v.Extras)) {
			rows = append(rows, [2]string{k, v.Extras[k]}) // kept by the provider's profile: instance_url, realmId, team.id
		}
		for _, r := range rows {
			fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
		}
		return tw.Flush()
	}
}

func (e *env) cmdCredentialUpdate(c *command) runFunc {
	c.describe("tokenkeeper credential update NAME [flags]",
		`Changes a credential. Replacing its client secret or refresh token (after a
re-authorization) makes a needs_reauth credential active again and refreshes it
at once. --status disabled stops its refreshes; --status active resumes them.`)
	var ao apiOptions
	ao.register(c)
	tokenURL := c.fs.String("token-url", "", "new token endpoint")
	clientID := c.fs.String("client-id", "", "new client id")
	secret := c.fs.String("client-secret", "", "new client secret")
	secretFile := c.fs.String("client-secret-file", "", "read the new client secret from this file ('-': standard input)")
	rt := c.fs.String("refresh-token", "", "new refresh token")
	rtFile := c.fs.String("refresh-token-file", "", "read the new refresh token from this file ('-': standard input)")
	scopes := c.fs.String("scopes", "", "new scopes, comma or space separated")
	authStyle := c.fs.String("auth-style", "", "header or body")
	lead := c.fs.String("refresh-lead", "", "new refresh lead (0 for the default)")
	status := c.fs.String("status", "", "active or disabled")
	c.completeWords("status", "active", "disabled")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.inlineSecret("client-secret", "--client-secret-file FILE or --client-secret-file - (standard input)")
	c.inlineSecret("refresh-token", "--refresh-token-file FILE or --refresh-token-file - (standard input)")
	c.envless("token-url", "client-id", "scopes", "auth-style", "refresh-lead", "status", "refresh-token",
		"refresh-token-file", "client-secret-file", "client-secret")
	return func(args []string) error {
		pos, err := c.args(1, "the credential name")
		if err != nil {
			return err
		}
		if *secretFile == "-" && *rtFile == "-" {
			return usagef("only one secret can be read from standard input")
		}
		body := map[string]any{}
		set := map[string]bool{}
		c.fs.Visit(func(f *flagT) { set[f.Name] = true })
		if set["token-url"] {
			body["token_url"] = *tokenURL
		}
		if set["client-id"] {
			body["client_id"] = *clientID
		}
		if set["client-secret"] || set["client-secret-file"] {
			v, err := e.secretValue(*secret, *secretFile, "client secret")
			if err != nil {
				return err
			}
			body["client_secret"] = v
		}
		if set["refresh-token"] || set["refresh-token-file"] {
			v, err := e.secretValue(*rt, *rtFile, "refresh token")
			if err != nil {
				return err
			}
			body["refresh_token"] = v
		}
		if set["scopes"] {
			body["scopes"] = splitList(*scopes)
		}
		if set["auth-style"] {
			body["auth_style"] = *authStyle
		}
		if set["refresh-lead"] {
			body["refresh_lead"] = *lead
		}
		if set["status"] {
			body["status"] = *status
		}
		if len(body) == 0 {
			return usagef("nothing to update: give at least one flag (see tokenkeeper credential update --help)")
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "PATCH", "/v1/credentials/"+url.PathEscape(pos[0]), body, &out); err != nil {
			return fmt.Errorf("update credential: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Updated credential %q.\n", pos[0])
		return nil
	}
}

type tokenView struct {
	AccessToken string     `json:"access_token"`
	TokenType   string     `json:"token_type"`
	ExpiresAt   *time.Time `json:"expires_at"`
	ExpiresIn   *int64     `json:"expires_in"`
}

func (e *env) cmdCredentialRefresh(c *command) runFunc {
	c.describe("tokenkeeper credential refresh NAME [--json]",
		`Forces a refresh now, whatever the schedule and status (a needs_reauth
credential is tried again). Prints when the new token expires.`)
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON (including the new access token)")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the credential name")
		if err != nil {
			return err
		}
		var tv tokenView
		if err := cl.do(e.ctx, "POST", "/v1/credentials/"+url.PathEscape(pos[0])+"/refresh", map[string]string{}, &tv); err != nil {
			return fmt.Errorf("refresh credential: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, tv)
		}
		fmt.Fprintf(e.stdout, "Refreshed %q; the token expires in %s.\n", pos[0], untilString(tv.ExpiresAt, time.Now()))
		return nil
	}
}

func (e *env) cmdCredentialEvents(c *command) runFunc {
	c.describe("tokenkeeper credential events NAME [--limit N] [--kind refresh|operator] [--json]",
		"Lists a credential's events, newest first: refresh attempts with outcome, error code and latency, and operator actions.")
	var ao apiOptions
	ao.register(c)
	limit := c.fs.Int("limit", 20, "how many events (1 to 1000)")
	kind := c.fs.String("kind", "", "only refresh attempts (refresh) or only operator events (operator)")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.envless("limit", "kind")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the credential name")
		if err != nil {
			return err
		}
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		if *kind != "" {
			q.Set("kind", *kind)
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/credentials/"+url.PathEscape(pos[0])+"/events?"+q.Encode(), nil, &out); err != nil {
			return fmt.Errorf("list events: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var list struct {
			Events []struct {
				Time      time.Time `json:"time"`
				Kind      string    `json:"kind"`
				Outcome   string    `json:"outcome"`
				ErrorCode string    `json:"error_code"`
				Message   string    `json:"message"`
				LatencyMS *float64  `json:"latency_ms"`
			} `json:"events"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tKIND\tOUTCOME\tERROR\tLATENCY\tMESSAGE")
		for _, ev := range list.Events {
			lat := "-"
			if ev.LatencyMS != nil {
				lat = fmt.Sprintf("%.0fms", *ev.LatencyMS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ev.Time.Local().Format(timeLayoutMilli), ev.Kind, ev.Outcome, dash(ev.ErrorCode), lat, oneLine(ev.Message))
		}
		return tw.Flush()
	}
}

// oneLine keeps a message whole (never truncated: the cause is often at
// its end) on one table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (e *env) cmdToken(c *command) runFunc {
	c.describe("tokenkeeper token NAME [--min-ttl 30s] [--json]",
		`Prints only the current access token of a credential, for scripts:
  curl -H "Authorization: Bearer $(tokenkeeper token github)" ...`)
	var ao apiOptions
	ao.register(c)
	minTTL := c.fs.Duration("min-ttl", 0, "refresh first if the token has less than this left")
	asJSON := c.fs.Bool("json", false, "print the whole token response as JSON")
	c.envless("min-ttl")
	return func(args []string) error {
		pos, err := c.args(1, "the credential name")
		if err != nil {
			return err
		}
		if *minTTL < 0 {
			return usagef("--min-ttl must not be negative")
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		path := "/v1/credentials/" + url.PathEscape(pos[0]) + "/token"
		if *minTTL > 0 {
			path += "?min_ttl=" + url.QueryEscape(minTTL.String())
		}
		var tv tokenView
		if err := cl.do(e.ctx, "GET", path, nil, &tv); err != nil {
			return fmt.Errorf("get token: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, tv)
		}
		fmt.Fprintln(e.stdout, tv.AccessToken)
		return nil
	}
}
