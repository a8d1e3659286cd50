package console

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
)

// The API's JSON, as the console reads it: never a secret but the one
// shown once right after it was made.
type (
	credentialView struct {
		Name          string     `json:"name"`
		Provider      string     `json:"provider"`
		EndUserID     string     `json:"end_user_id"`
		EndUserName   string     `json:"end_user_name"`
		EndUserEmail  string     `json:"end_user_email"`
		TokenURL      string     `json:"token_url"`
		GrantType     string     `json:"grant_type"`
		ClientID      string     `json:"client_id"`
		Scopes        []string   `json:"scopes"`
		Status        string     `json:"status"`
		FailureCount  int        `json:"failure_count"`
		LastError     string     `json:"last_error"`
		LastErrorCode string     `json:"last_error_code"`
		HasToken      bool       `json:"has_token"`
		ExpiresAt     *time.Time `json:"provider_expires_at"`
		LastRefreshAt *time.Time `json:"last_refresh_at"`
		NextRefreshAt *time.Time `json:"next_refresh_at"`
		CreatedAt     time.Time  `json:"created_at"`
	}
	eventView struct {
		ID        int64     `json:"id"`
		Time      time.Time `json:"time"`
		Kind      string    `json:"kind"`
		Outcome   string    `json:"outcome"`
		ErrorCode string    `json:"error_code"`
		Message   string    `json:"message"`
		LatencyMS *float64  `json:"latency_ms"`
		Actor     string    `json:"actor"`
	}
	providerView struct {
		Name                   string            `json:"name"`
		AuthorizationURL       string            `json:"authorization_url"`
		TokenURL               string            `json:"token_url"`
		DeviceAuthorizationURL string            `json:"device_authorization_url"`
		RevocationURL          string            `json:"revocation_url"`
		ClientID               string            `json:"client_id"`
		HasClientSecret        bool              `json:"has_client_secret"`
		AuthStyle              string            `json:"auth_style"`
		Scopes                 []string          `json:"scopes"`
		PKCE                   bool              `json:"pkce"`
		Preset                 string            `json:"preset"`
		TemplateVars           map[string]string `json:"template_vars"`
		Credentials            *int              `json:"credentials"`
		CreatedAt              time.Time         `json:"created_at"`
	}
	apiKeyView struct {
		ID          string     `json:"id"`
		Name        string     `json:"name"`
		Prefix      string     `json:"prefix"`
		Role        string     `json:"role"`
		Credentials []string   `json:"credentials"`
		CreatedAt   time.Time  `json:"created_at"`
		RevokedAt   *time.Time `json:"revoked_at"`
	}
	clientView struct {
		ID          string    `json:"id"`
		ClientID    string    `json:"client_id"`
		Credentials []string  `json:"credentials"`
		CreatedAt   time.Time `json:"created_at"`
	}
	userView struct {
		Username  string    `json:"username"`
		Role      string    `json:"role"`
		CreatedAt time.Time `json:"created_at"`
	}
	auditView struct {
		ID         int64     `json:"id"`
		Time       time.Time `json:"time"`
		Actor      string    `json:"actor"`
		Action     string    `json:"action"`
		Target     string    `json:"target"`
		Outcome    string    `json:"outcome"`
		RemoteAddr string    `json:"remote_addr"`
		Detail     string    `json:"detail"`
	}
)

var statuses = []tokenkeeper.Status{tokenkeeper.StatusActive, tokenkeeper.StatusError,
	tokenkeeper.StatusNeedsReauth, tokenkeeper.StatusDisabled}

func (c *Console) overviewPage(p *request) error {
	now := c.now()
	o, err := c.cfg.Store.Overview(p.r.Context(), now.Add(-time.Hour), 8)
	if err != nil {
		return err
	}
	type card struct {
		Status tokenkeeper.Status
		Count  int
	}
	var cards []card
	for _, s := range statuses {
		cards = append(cards, card{s, o.ByStatus[s]})
	}
	return p.render("overview", "Overview", "overview", true, map[string]any{"O": o, "Cards": cards})
}

// pathEscape escapes a name for a path segment.
func pathEscape(s string) string { return url.PathEscape(s) }

func (c *Console) credentialsPage(p *request) error {
	q := p.r.URL.Query()
	f := tokenkeeper.CredentialFilter{Provider: q.Get("provider"), Status: tokenkeeper.Status(q.Get("status")), EndUserID: q.Get("end_user")}
	if f.Status != "" && !f.Status.Valid() {
		return badRequest("Unknown status " + strconv.Quote(string(f.Status)) + ".")
	}
	after := q.Get("after")
	ctx := p.r.Context()
	rows, err := c.cfg.Store.CredentialSummaries(ctx, f, after, c.cfg.PageSize+1)
	if err != nil {
		return err
	}
	next := ""
	if len(rows) > c.cfg.PageSize {
		rows = rows[:c.cfg.PageSize]
		next = rows[len(rows)-1].Name
	}
	total, err := c.cfg.Store.CountCredentials(ctx, f)
	if err != nil {
		return err
	}
	var providers struct {
		Providers []providerView `json:"providers"`
	}
	if err := p.call(http.MethodGet, "/v1/providers", nil, &providers); err != nil {
		return err
	}
	link := func(after string) string {
		v := url.Values{}
		for k, s := range map[string]string{"provider": f.Provider, "status": string(f.Status), "end_user": f.EndUserID, "after": after} {
			if s != "" {
				v.Set(k, s)
			}
		}
		if len(v) == 0 {
			return Prefix + "credentials"
		}
		return Prefix + "credentials?" + v.Encode()
	}
	data := map[string]any{"Rows": rows, "Filter": f, "Total": total, "After": after, "Statuses": statuses,
		"Providers": providers.Providers, "First": link("")}
	if next != "" {
		data["Next"] = link(next)
	}
	return p.render("credentials", "Credentials", "credentials", true, data)
}

func (c *Console) credentialPage(p *request) error {
	name := p.r.PathValue("name")
	var cred credentialView
	if err := p.call(http.MethodGet, "/v1/credentials/"+pathEscape(name), nil, &cred); err != nil {
		return err
	}
	var evs struct {
		Events []eventView `json:"events"`
	}
	if err := p.call(http.MethodGet, "/v1/credentials/"+pathEscape(name)+"/events?limit=30", nil, &evs); err != nil {
		return err
	}
	base := c.cfg.PublicURL
	if base == "" {
		base = "http://" + p.r.Host
	}
	base = strings.TrimSuffix(base, "/")
	return p.render("credential", name, "credentials", true, map[string]any{
		"C": cred, "Events": evs.Events, "Base": base, "Path": Prefix + "credentials/" + pathEscape(name),
		"Snippets": snippets(base, name),
	})
}

// snippet is copy-ready code reading a credential's token.
type snippet struct{ ID, Label, Code string }

func snippets(base, name string) []snippet {
	qn := strconv.Quote(name)
	return []snippet{
		{"curl", "curl", "curl -fsS -H \"Authorization: Bearer $TOKENKEEPER_API_KEY\" \\\n  " + base + "/v1/credentials/" + url.PathEscape(name) + "/token"},
		{"go", "Go", "// TOKENKEEPER_SERVER=" + base + " and TOKENKEEPER_API_KEY in the environment\n" +
			"ts, err := client.BrokerFromEnv(" + qn + ")\nif err != nil {\n\tlog.Fatal(err)\n}\n" +
			"httpClient := oauth2.NewClient(ctx, ts) // or: tok, err := ts.Token()"},
		{"python", "Python", "import os, requests\n\nr = requests.get(\n    " + strconv.Quote(base+"/v1/credentials/"+url.PathEscape(name)+"/token") +
			",\n    headers={\"Authorization\": \"Bearer \" + os.environ[\"TOKENKEEPER_API_KEY\"]},\n    timeout=10,\n)\nr.raise_for_status()\naccess_token = r.json()[\"access_token\"]"},
	}
}

func (c *Console) providersPage(p *request) error {
	var out struct {
		Providers []providerView `json:"providers"`
	}
	if err := p.call(http.MethodGet, "/v1/providers", nil, &out); err != nil {
		return err
	}
	return p.render("providers", "Providers", "providers", false, map[string]any{
		"Providers": out.Providers, "Presets": catalog.All(), "RedirectURI": c.cfg.RedirectURI})
}

func (c *Console) providerPage(p *request) error {
	var pv providerView
	if err := p.call(http.MethodGet, "/v1/providers/"+pathEscape(p.r.PathValue("name")), nil, &pv); err != nil {
		return err
	}
	return p.render("provider", pv.Name, "providers", false, map[string]any{"P": pv, "RedirectURI": c.cfg.RedirectURI})
}

func (c *Console) apiKeysPage(p *request) error {
	var out struct {
		Keys []apiKeyView `json:"api_keys"`
	}
	if err := p.call(http.MethodGet, "/v1/apikeys", nil, &out); err != nil {
		return err
	}
	slices.SortStableFunc(out.Keys, func(a, b apiKeyView) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return p.render("apikeys", "API keys", "apikeys", false, map[string]any{"Keys": out.Keys})
}

func (c *Console) clientsPage(p *request) error {
	var out struct {
		Clients []clientView `json:"clients"`
	}
	if err := p.call(http.MethodGet, "/v1/clients", nil, &out); err != nil {
		return err
	}
	return p.render("clients", "Service clients", "clients", false, map[string]any{"Clients": out.Clients})
}

func (c *Console) usersPage(p *request) error {
	var out struct {
		Users []userView `json:"users"`
	}
	if err := p.call(http.MethodGet, "/v1/users", nil, &out); err != nil {
		return err
	}
	return p.render("users", "Users", "users", false, map[string]any{"Users": out.Users})
}

const auditPageSize = 50

func (c *Console) auditPage(p *request) error {
	q := p.r.URL.Query()
	v := url.Values{"limit": {strconv.Itoa(auditPageSize + 1)}}
	for _, k := range []string{"actor", "action", "before"} {
		if s := q.Get(k); s != "" {
			v.Set(k, s)
		}
	}
	var out struct {
		Records []auditView `json:"records"`
	}
	if err := p.call(http.MethodGet, "/v1/audit?"+v.Encode(), nil, &out); err != nil {
		return err
	}
	data := map[string]any{"Records": out.Records, "Actor": q.Get("actor"), "Action": q.Get("action"), "Before": q.Get("before")}
	if len(out.Records) > auditPageSize {
		out.Records = out.Records[:auditPageSize]
		data["Records"] = out.Records
		nv := url.Values{"before": {strconv.FormatInt(out.Records[len(out.Records)-1].ID, 10)}}
		for _, k := range []string{"actor", "action"} {
			if s := q.Get(k); s != "" {
				nv.Set(k, s)
			}
		}
		data["Next"] = Prefix + "audit?" + nv.Encode()
	}
	return p.render("audit", "Audit log", "audit", false, data)
}

func (c *Console) keysPage(p *request) error {
	if !p.s.admin() {
		return &statusError{http.StatusForbidden, "Your role may not do this: keys are for admins."}
	}
	return p.render("keys", "Keys", "keys", false, nil)
}

// handleLoginPage shows the sign-in form, or goes on to the page asked
// for when the browser is signed in.
func (c *Console) handleLoginPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := r.URL.Query().Get("next")
		if !localPath(next) {
			next = Prefix
		}
		if c.session(w, r, nil) != nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		c.loginForm(w, r, next, "", "", http.StatusOK)
	})
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request, next, username, msg string, status int) {
	p := &request{c: c, w: w, r: r, status: status}
	f := &form{Name: "login", Values: url.Values{"username": {username}}, Error: msg}
	p.form = f
	err := p.render("login", "Sign in", "", false, map[string]any{"Next": next, "CSRF": csrfToken(c.csrfKey(w, r), "login")})
	c.finish(p, err)
}
