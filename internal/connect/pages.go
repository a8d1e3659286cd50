package connect

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"net/url"

	"github.com/tokenkeeper/tokenkeeper"
)

//go:embed web/page.html
var webFS embed.FS

var pageTmpl = template.Must(template.ParseFS(webFS, "web/page.html"))

// detail is one line of a page's table.
type detail struct{ ID, Name, Value string }

type pageData struct {
	OK      bool
	Title   string
	Message string
	Details []detail
}

// writePage renders the page with status. Pages carry no script, no
// secret and are never cached or framed.
func writePage(w http.ResponseWriter, status int, d pageData) {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// HandleLink serves GET /connect/{token}: the redirect to the provider, or
// a page saying why not.
func (s *Service) HandleLink() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to, f := s.OpenLink(r.Context(), r.PathValue("token"))
		if f != nil {
			s.writeFailure(w, r, f)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, to, http.StatusFound)
	})
}

// HandleCallback serves GET /connect/callback: the success page or a
// redirect to the session's return_to with status and credential, or a
// page (or redirect) saying why it failed.
func (s *Service) HandleCallback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, f := s.Callback(r.Context(), r.URL.Query())
		if f != nil {
			s.writeFailure(w, r, f)
			return
		}
		if res.Session.ReturnTo != "" {
			redirectBack(w, r, res.Session.ReturnTo, url.Values{"status": {tokenkeeper.ConnectConnected},
				"credential": {res.Credential.Name}, "session": {res.Session.ID}})
			return
		}
		title := "Connected"
		msg := "The broker now holds this grant and keeps it fresh."
		if res.Session.Reconnect {
			title = "Reconnected"
			msg = "The credential's grant was replaced; it is active again."
		}
		d := []detail{{"provider", "Provider", res.Session.Provider}, {"credential", "Credential", res.Credential.Name}}
		if res.Credential.EndUserEmail != "" {
			d = append(d, detail{"email", "Account", res.Credential.EndUserEmail})
		}
		d = append(d, detail{"session", "Session", res.Session.ID})
		writePage(w, http.StatusOK, pageData{OK: true, Title: title, Message: msg, Details: d})
	})
}

// writeFailure shows f, or sends the browser back to the session's
// return_to with status=failed and the reason.
func (s *Service) writeFailure(w http.ResponseWriter, r *http.Request, f *Failure) {
	if f.Session != nil && f.Session.ReturnTo != "" && s.CheckReturnTo(f.Session.ReturnTo) == nil {
		redirectBack(w, r, f.Session.ReturnTo, url.Values{"status": {tokenkeeper.ConnectFailed},
			"reason": {f.Reason}, "session": {f.Session.ID}})
		return
	}
	d := []detail{{"reason", "Reason", f.Reason}}
	if f.Session != nil {
		d = append(d, detail{"provider", "Provider", f.Session.Provider}, detail{"session", "Session", f.Session.ID})
	}
	writePage(w, f.Status, pageData{Title: titleOf(f.Reason), Message: f.Message, Details: d})
}

func titleOf(reason string) string {
	switch reason {
	case "access_denied":
		return "Access denied"
	case "expired", "expired_token":
		return "This link has expired"
	case "used":
		return "Already used"
	case "unknown_session", "missing_state":
		return "Unknown connect session"
	}
	return "Could not connect"
}

// redirectBack sends the browser to returnTo with params added.
func redirectBack(w http.ResponseWriter, r *http.Request, returnTo string, params url.Values) {
	u, err := url.Parse(returnTo)
	if err != nil {
		http.Error(w, "bad return_to", http.StatusInternalServerError)
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}
