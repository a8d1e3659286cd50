package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// pageFunc renders a page; actionFunc performs a form's action and then
// redirects or renders. Both return an error to show instead.
type (
	pageFunc   func(p *request) error
	actionFunc func(p *request) error
)

// request is one console request of a signed-in user.
type request struct {
	c      *Console
	w      http.ResponseWriter
	r      *http.Request
	api    *apiClient
	s      *session
	status int   // of the rendered page; default 200
	form   *form // a submitted form shown again with its errors
	flash  string
	// secret is a one-time display (a new API key or client secret).
	secret *oneTime
	// reauthErr is why the password typed to confirm an action did not
	// renew the session; the action shows it on its form.
	reauthErr error
}

// oneTime is a secret shown once, right after it was made.
type oneTime struct {
	Label, Value, Note string
}

// form is a submitted form: what the user typed (secrets aside) and what
// was wrong with it, by field.
type form struct {
	Name   string
	Values url.Values
	Errors map[string]string
	Error  string // not about one field
}

// Get returns what the user typed in field k of the form named name.
func (f *form) Get(name, k string) string {
	if f == nil || f.Name != name {
		return ""
	}
	return f.Values.Get(k)
}

// Err returns the error of field k of the form named name.
func (f *form) Err(name, k string) string {
	if f == nil || f.Name != name {
		return ""
	}
	return f.Errors[k]
}

// General returns the error of the form named name not tied to a field.
func (f *form) General(name string) string {
	if f == nil || f.Name != name {
		return ""
	}
	return f.Error
}

// view is what every template gets.
type view struct {
	Title, Nav string
	User       string
	Role       tokenkeeper.Role
	Admin      bool
	Fresh      bool
	CSRF       string
	Page       string // the page's path and query, for returning to it
	Flash      string
	Form       *form
	Secret     *oneTime
	Live       bool
	Now        time.Time
	Data       any
}

// statusError is a page that cannot be shown, with its status.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func notFound(msg string) error   { return &statusError{http.StatusNotFound, msg} }
func badRequest(msg string) error { return &statusError{http.StatusBadRequest, msg} }

// pageTemplate is the layout with one page's content.
type pageTemplate struct{ t *template.Template }

var funcs = template.FuncMap{
	"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"relative": relative,
	"statusIcon": func(v any) string {
		switch tokenkeeper.Status(fmt.Sprint(v)) {
		case tokenkeeper.StatusActive:
			return "✓"
		case tokenkeeper.StatusError:
			return "!"
		case tokenkeeper.StatusNeedsReauth:
			return "⚠"
		case tokenkeeper.StatusDisabled:
			return "–"
		}
		return "?"
	},
	"status": func(s string) tokenkeeper.Status { return tokenkeeper.Status(s) },
	"deref": func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	},
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"path": pathEscape,
	// invalid marks a form's control whose field has an error, and points
	// it at the error's text.
	"invalid": func(f *form, name, field string) template.HTMLAttr {
		if f.Err(name, field) == "" {
			return ""
		}
		return template.HTMLAttr(`aria-invalid="true" aria-describedby="` + template.HTMLEscapeString(name+"-"+field) + `-error"`)
	},
	"deref64": func(f *float64) float64 {
		if f == nil {
			return 0
		}
		return *f
	},
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
	"outcomeClass": func(o string) string {
		switch o {
		case tokenkeeper.OutcomeOK, "":
			return "ok"
		case tokenkeeper.OutcomeNeedsReauth, "denied", "family_revoked":
			return "needs_reauth"
		}
		return "error"
	},
	"join": strings.Join,
	"pct": func(part, whole int) int {
		if whole == 0 {
			return 0
		}
		return part * 100 / whole
	},
}

// relative says how far t is from now: "in 4m 12s", "3m ago".
func relative(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := t.Sub(now)
	if d >= 0 {
		return "in " + short(d)
	}
	return short(-d) + " ago"
}

// short writes d with its two largest units: 2d 4h, 4m 12s, 9s.
func short(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s >= 86400:
		return fmt.Sprintf("%dd %dh", s/86400, s%86400/3600)
	case s >= 3600:
		return fmt.Sprintf("%dh %dm", s/3600, s%3600/60)
	case s >= 60:
		return fmt.Sprintf("%dm %ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

var pageNames = []string{"login", "overview", "credentials", "credential", "providers", "provider",
	"apikeys", "clients", "users", "audit", "keys", "connect", "error"}

func parsePages() (map[string]*pageTemplate, error) {
	out := map[string]*pageTemplate{}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/parts.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse template %s: %w", n, err)
		}
		out[n] = &pageTemplate{t: t}
	}
	return out, nil
}

// render writes the page named name; a template failure is a 500 with
// nothing of the page sent.
func (p *request) render(name, title, nav string, live bool, data any) error {
	v := &view{Title: title, Nav: nav, Live: live, Now: p.c.now(), Data: data, Form: p.form, Secret: p.secret,
		Flash: p.flash, Page: p.r.URL.RequestURI()}
	if p.s != nil {
		v.User, v.Role, v.Admin = p.s.claims.Username, p.s.claims.Role, p.s.admin()
		v.Fresh, v.CSRF = p.s.claims.IsFresh(p.c.now()) && !p.s.forceStale, p.s.csrf
	}
	if p.r.Method != http.MethodGet {
		v.Page = p.r.PostFormValue("page")
		if !localPath(v.Page) {
			v.Page = Prefix
		}
	}
	var buf bytes.Buffer
	if err := p.c.pages[name].t.Execute(&buf, v); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	p.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	status := p.status
	if status == 0 {
		status = http.StatusOK
	}
	p.w.WriteHeader(status)
	_, _ = p.w.Write(buf.Bytes())
	return nil
}

// call calls the API as the signed-in user.
func (p *request) call(method, path string, in, out any) error {
	return p.api.do(p.r.Context(), p.r, p.s.token, method, path, in, out)
}

// redirect ends an action: back to path with a notice (never a secret).
func (p *request) redirect(path, notice string) error {
	if notice != "" {
		p.c.setCookieValue(p.w, cookieFlash, url.QueryEscape(notice))
	}
	http.Redirect(p.w, p.r, path, http.StatusSeeOther)
	return nil
}

func (c *Console) setCookieValue(w http.ResponseWriter, name, value string) {
	c.setCookie(w, name, value)
}

// page wraps a page: a session is required (else to sign-in and back).
func (c *Console) page(api *apiClient, f pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.session(w, r, api)
		if s == nil {
			http.Redirect(w, r, loginURL(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		p := &request{c: c, w: w, r: r, api: api, s: s}
		if v := cookie(r, cookieFlash); v != "" {
			p.flash, _ = url.QueryUnescape(v)
			c.setCookie(w, cookieFlash, "")
		}
		c.finish(p, f(p))
	})
}

// action wraps a form's action: a session and the form's CSRF token are
// required, and a password typed into the form's confirmation field
// renews the session (fresh) before the action runs.
func (c *Console) action(api *apiClient, f actionFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			c.finish(&request{c: c, w: w, r: r, api: api}, badRequest("The form could not be read."))
			return
		}
		s := c.session(w, r, api)
		if s == nil {
			// Signed out or expired: sign in, then back to the form's page.
			http.Redirect(w, r, loginURL(r.PostFormValue("page")), http.StatusSeeOther)
			return
		}
		p := &request{c: c, w: w, r: r, api: api, s: s}
		if !checkCSRF(r, sessionPurpose(s.claims)) {
			c.log.Warn("form refused: no valid CSRF token", "path", r.URL.Path, "user", s.claims.Username)
			c.finish(p, &statusError{http.StatusForbidden,
				"This form has no valid CSRF token: it has expired or did not come from this console. Nothing was changed; reload the page and try again."})
			return
		}
		if pw := r.PostFormValue("confirm_password"); pw != "" {
			ns, err := c.signIn(w, r, api, s.claims.Username, pw)
			if err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
					err = &apiError{Status: http.StatusUnauthorized, Code: "fresh_token_required", Detail: "wrong password"}
				}
				p.reauthErr = err
				c.finish(p, f(p))
				return
			}
			// The stale session's family ends: one session per sign-in.
			_ = api.do(r.Context(), r, s.token, http.MethodPost, "/v1/auth/logout", nil, nil)
			p.s = ns
		}
		c.finish(p, f(p))
	})
}

// finish shows err, if any, as an error page.
func (c *Console) finish(p *request, err error) {
	if err == nil {
		return
	}
	status, msg := http.StatusInternalServerError, "Something went wrong; the broker's log has the details."
	var se *statusError
	var ae *apiError
	switch {
	case errors.As(err, &se):
		status, msg = se.status, se.msg
	case errors.As(err, &ae):
		status, msg = ae.Status, ae.Detail
		switch ae.Status {
		case http.StatusForbidden:
			msg = "Your role may not do this: " + ae.Detail
		case http.StatusUnauthorized:
			if !ae.freshRequired() {
				c.dropSession(p.w, p.r)
				http.Redirect(p.w, p.r, loginURL(p.r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
		}
		if status >= 500 {
			c.log.Error("console: the API failed", "path", p.r.URL.Path, "err", err)
		}
	default:
		c.log.Error("console: page failed", "path", p.r.URL.Path, "err", err)
	}
	p.status = status
	if rerr := p.render("error", http.StatusText(status), "", false, map[string]any{"Status": status, "Message": msg}); rerr != nil {
		c.log.Error("console: cannot render the error page", "err", rerr)
		http.Error(p.w, msg, status)
	}
}

// fail shows the form named name again, on the page show renders, with
// what the user typed (secrets aside) and err on the field it is about:
// the API's refusal (invalid input, a conflict, a session too old for the
// action) changes nothing. Other errors become an error page.
func (p *request) fail(name string, err error, show pageFunc, fields ...string) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	f := &form{Name: name, Values: url.Values{}, Errors: map[string]string{}}
	for k, v := range p.r.PostForm {
		if k == "csrf" || strings.Contains(k, "secret") || strings.Contains(k, "password") {
			continue
		}
		f.Values[k] = v
	}
	switch {
	case ae.freshRequired():
		p.status = http.StatusUnauthorized
		msg := "Enter your password to confirm: this action needs a recent sign-in."
		if ae.Detail == "wrong password" {
			msg = "That password is not right; nothing was changed."
		}
		f.Errors["confirm_password"] = msg
		f.Error = msg
		p.s.forceStale = true
	case ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict || ae.Status == http.StatusNotFound ||
		ae.Status == http.StatusUnprocessableEntity:
		p.status = http.StatusUnprocessableEntity
		for _, k := range fields {
			if strings.Contains(ae.Detail, k) {
				f.Errors[k] = ae.Detail
				break
			}
		}
		if len(f.Errors) == 0 {
			f.Error = ae.Detail
		}
	default:
		return err
	}
	p.form = f
	return show(p)
}

// invalid shows the form again with one field's error, without calling
// the API.
func (p *request) invalid(name, field, msg string, show pageFunc) error {
	if err := p.fail(name, &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid", Detail: field + ": " + msg}, nopage, field); err != nil {
		return err
	}
	p.form.Errors = map[string]string{field: msg}
	p.form.Error = ""
	return show(p)
}

func nopage(*request) error { return nil }
