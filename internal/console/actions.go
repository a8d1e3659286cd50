package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokenkeeper/tokenkeeper/internal/auth"
)

// handleLogin signs the user in with the API's login (audited and rate
// limited there) and returns to the page asked for.
func (c *Console) handleLogin(api *apiClient) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		_ = r.ParseForm()
		next := r.PostFormValue("next")
		if !localPath(next) {
			next = Prefix
		}
		username := strings.TrimSpace(r.PostFormValue("username"))
		if !checkCSRF(r, "login") {
			c.loginForm(w, r, next, username, "The sign-in form had expired; please sign in again.", http.StatusForbidden)
			return
		}
		password := r.PostFormValue("password")
		if username == "" || password == "" {
			c.loginForm(w, r, next, username, "Enter your username and password.", http.StatusUnprocessableEntity)
			return
		}
		if _, err := c.signIn(w, r, api, username, password); err != nil {
			var ae *apiError
			switch {
			case errors.As(err, &ae) && ae.Code == auth.ETOOMANYREQUESTS:
				c.loginForm(w, r, next, username, "Too many attempts; wait a minute and try again.", http.StatusTooManyRequests)
			case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
				c.loginForm(w, r, next, username, "Wrong username or password.", http.StatusUnauthorized)
			default:
				c.log.Error("console sign-in failed", "err", err)
				c.loginForm(w, r, next, username, "The broker could not sign you in; try again.", http.StatusServiceUnavailable)
			}
			return
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
}

// handleLogout ends the session's refresh-token family: its tokens stop
// working on every replica (within the accounts' reload interval).
func (c *Console) handleLogout(p *request) error {
	err := p.call(http.MethodPost, "/v1/auth/logout", nil, nil)
	c.clearSession(p.w)
	if err != nil {
		return err
	}
	http.Redirect(p.w, p.r, Prefix+"login", http.StatusSeeOther)
	return nil
}

func credPath(name string) string { return Prefix + "credentials/" + pathEscape(name) }

func (c *Console) refreshAction(p *request) error {
	name := p.r.PathValue("name")
	// The answer holds the new token: it is read and dropped.
	err := p.call(http.MethodPost, "/v1/credentials/"+pathEscape(name)+"/refresh", map[string]any{}, nil)
	var ae *apiError
	switch {
	case err == nil:
		return p.redirect(credPath(name), "Refreshed: a new access token is in place.")
	case errors.As(err, &ae) && (ae.Status == http.StatusConflict || ae.Status == http.StatusServiceUnavailable ||
		ae.Status == http.StatusBadGateway || ae.Status == http.StatusTooManyRequests):
		return p.redirect(credPath(name), "The refresh did not produce a new token: "+ae.Detail)
	}
	return err
}

func (c *Console) statusAction(p *request) error {
	name := p.r.PathValue("name")
	st := p.r.PostFormValue("status")
	if st != "active" && st != "disabled" {
		return badRequest("The status must be active or disabled.")
	}
	if err := p.call(http.MethodPatch, "/v1/credentials/"+pathEscape(name), map[string]any{"status": st}, nil); err != nil {
		return err
	}
	verb := "Enabled"
	if st == "disabled" {
		verb = "Disabled"
	}
	return p.redirect(credPath(name), verb+" "+name+".")
}

// connectStarted is the API's answer to a new connect session: its link
// is the end user's, shown once.
type connectStarted struct {
	ID         string `json:"id"`
	URL        string `json:"url"`
	Credential string `json:"credential"`
	Reconnect  bool   `json:"reconnect"`
}

func (c *Console) reconnectAction(p *request) error {
	name := p.r.PathValue("name")
	var cred credentialView
	if err := p.call(http.MethodGet, "/v1/credentials/"+pathEscape(name), nil, &cred); err != nil {
		return err
	}
	err := p.reauthErr
	var st connectStarted
	if err == nil {
		err = p.call(http.MethodPost, "/v1/connect/sessions", map[string]any{"provider": cred.Provider, "name": name}, &st)
	}
	if err != nil {
		return p.fail("reconnect", err, c.credentialPage)
	}
	return p.render("connect", "Reconnect "+name, "credentials", false, map[string]any{"S": st, "Back": credPath(name)})
}

func (c *Console) deleteCredentialAction(p *request) error {
	name := p.r.PathValue("name")
	if p.r.PostFormValue("confirm") != name {
		return p.invalid("delete", "confirm", "Type the credential's name, "+name+", to confirm. Nothing was deleted.", c.credentialPage)
	}
	err := p.reauthErr
	if err == nil {
		err = p.call(http.MethodDelete, "/v1/credentials/"+pathEscape(name), nil, nil)
	}
	if err != nil {
		return p.fail("delete", err, c.credentialPage)
	}
	return p.redirect(Prefix+"credentials", "Deleted credential "+name+".")
}

// fields splits a list typed with spaces or commas.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// keyValues reads KEY=VALUE lines.
func keyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("write each variable as name=value, one per line")
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

var providerFields = []string{"name", "preset", "template_vars", "client_id", "client_secret", "authorization_url",
	"token_url", "auth_style", "scopes"}

func (c *Console) createProviderAction(p *request) error {
	f := p.r.PostForm
	req := map[string]any{"name": strings.TrimSpace(f.Get("name")), "client_id": strings.TrimSpace(f.Get("client_id")),
		"client_secret": f.Get("client_secret")}
	for _, k := range []string{"authorization_url", "token_url", "auth_style", "preset"} {
		if v := strings.TrimSpace(f.Get(k)); v != "" {
			req[k] = v
		}
	}
	if s := fields(f.Get("scopes")); len(s) > 0 {
		req["scopes"] = s
	}
	if vars := f.Get("template_vars"); strings.TrimSpace(vars) != "" {
		kv, err := keyValues(vars)
		if err != nil {
			return p.invalid("provider", "template_vars", err.Error(), c.providersPage)
		}
		req["template_vars"] = kv
	}
	err := p.reauthErr
	if err == nil {
		err = p.call(http.MethodPost, "/v1/providers", req, nil)
	}
	if err != nil {
		return p.fail("provider", err, c.providersPage, providerFields...)
	}
	name := req["name"].(string)
	return p.redirect(Prefix+"providers/"+pathEscape(name), "Added provider "+name+". Register the redirect URI below with the provider.")
}

func (c *Console) connectAction(p *request) error {
	provider := p.r.PathValue("name")
	req := map[string]any{"provider": provider}
	if v := strings.TrimSpace(p.r.PostFormValue("credential")); v != "" {
		req["name"] = v
	}
	if v := strings.TrimSpace(p.r.PostFormValue("end_user_id")); v != "" {
		req["end_user_id"] = v
	}
	if s := fields(p.r.PostFormValue("scopes")); len(s) > 0 {
		req["scopes"] = s
	}
	err := p.reauthErr
	var st connectStarted
	if err == nil {
		err = p.call(http.MethodPost, "/v1/connect/sessions", req, &st)
	}
	if err != nil {
		return p.fail("connect", err, c.providerPage, "name", "end_user_id", "scopes")
	}
	return p.render("connect", "Connect a credential", "providers", false, map[string]any{"S": st,
		"Back": Prefix + "providers/" + pathEscape(provider)})
}

func (c *Console) deleteProviderAction(p *request) error {
	name := p.r.PathValue("name")
	if p.r.PostFormValue("confirm") != name {
		return p.invalid("delete", "confirm", "Type the provider's name, "+name+", to confirm. Nothing was deleted.", c.providerPage)
	}
	err := p.reauthErr
	if err == nil {
		err = p.call(http.MethodDelete, "/v1/providers/"+pathEscape(name), nil, nil)
	}
	if err != nil {
		return p.fail("delete", err, c.providerPage)
	}
	return p.redirect(Prefix+"providers", "Deleted provider "+name+".")
}

func (c *Console) createAPIKeyAction(p *request) error {
	f := p.r.PostForm
	req := map[string]any{"name": strings.TrimSpace(f.Get("name")), "role": f.Get("role"), "credentials": fields(f.Get("credentials"))}
	err := p.reauthErr
	var out struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	}
	if err == nil {
		err = p.call(http.MethodPost, "/v1/apikeys", req, &out)
	}
	if err != nil {
		return p.fail("apikey", err, c.apiKeysPage, "name", "role", "credentials")
	}
	p.secret = &oneTime{Label: "API key " + out.Name, Value: out.Key,
		Note: "Copy it now: it is shown once and the broker keeps only its hash."}
	return c.apiKeysPage(p)
}

func (c *Console) revokeAPIKeyAction(p *request) error {
	err := p.reauthErr
	if err == nil {
		err = p.call(http.MethodDelete, "/v1/apikeys/"+pathEscape(p.r.PathValue("id")), nil, nil)
	}
	if err != nil {
		return p.fail("revoke", err, c.apiKeysPage)
	}
	return p.redirect(Prefix+"apikeys", "Revoked the API key.")
}

func (c *Console) createClientAction(p *request) error {
	f := p.r.PostForm
	req := map[string]any{"client_id": strings.TrimSpace(f.Get("client_id")), "credentials": fields(f.Get("credentials"))}
	err := p.reauthErr
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err == nil {
		err = p.call(http.MethodPost, "/v1/clients", req, &out)
	}
	if err != nil {
		return p.fail("client", err, c.clientsPage, "client_id", "credentials")
	}
	p.secret = &oneTime{Label: "Client secret of " + out.ClientID, Value: out.ClientSecret,
		Note: "Copy it now: it is shown once and the broker keeps only its hash."}
	return c.clientsPage(p)
}

func (c *Console) deleteClientAction(p *request) error {
	err := p.reauthErr
	if err == nil {
		err = p.call(http.MethodDelete, "/v1/clients/"+pathEscape(p.r.PathValue("id")), nil, nil)
	}
	if err != nil {
		return p.fail("revoke", err, c.clientsPage)
	}
	return p.redirect(Prefix+"clients", "Deleted the service client.")
}

func (c *Console) createUserAction(p *request) error {
	f := p.r.PostForm
	req := map[string]any{"username": strings.TrimSpace(f.Get("username")), "password": f.Get("password"), "role": f.Get("role")}
	err := p.reauthErr
	if err == nil {
		err = p.call(http.MethodPost, "/v1/users", req, nil)
	}
	if err != nil {
		return p.fail("user", err, c.usersPage, "username", "password", "role")
	}
	return p.redirect(Prefix+"users", "Added user "+req["username"].(string)+".")
}

func (c *Console) deleteUserAction(p *request) error {
	name := p.r.PathValue("name")
	err := p.reauthErr
	if err == nil {
		err = p.call(http.MethodDelete, "/v1/users/"+pathEscape(name), nil, nil)
	}
	if err != nil {
		return p.fail("revoke", err, c.usersPage)
	}
	return p.redirect(Prefix+"users", "Deleted user "+name+" and ended their sessions.")
}

func (c *Console) rotateKeysAction(p *request) error {
	err := p.reauthErr
	var out struct {
		Resealed   int    `json:"resealed"`
		SigningKey string `json:"signing_key"`
	}
	if err == nil {
		err = p.call(http.MethodPost, "/v1/keys/rotate", nil, &out)
	}
	if err != nil {
		return p.fail("rotate", err, c.keysPage)
	}
	msg := fmt.Sprintf("Rotated: a new data key re-sealed %d secrets", out.Resealed)
	if out.SigningKey != "" {
		msg += "; new signing key " + out.SigningKey
	}
	return p.redirect(Prefix+"keys", msg+".")
}
