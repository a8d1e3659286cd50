package oauthtest

import (
	"crypto/subtle"
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed web/pages.html web/oauthtest.css
var webFS embed.FS

// pages holds the HTML pages: "consent", "device" and "message".
var pages = template.Must(template.ParseFS(webFS, "web/pages.html"))

// stylesheet is the one stylesheet of the pages, served at cssPath.
var stylesheet = func() []byte {
	b, err := webFS.ReadFile("web/oauthtest.css")
	if err != nil {
		panic("oauthtest: " + err.Error())
	}
	return b
}()

const (
	cssPath = "/assets/oauthtest.css"
	// browserCookie binds a consent form to the browser that asked for it.
	browserCookie = "oauthtest_browser"
	// Prefixes of the consent request handle and its CSRF token.
	consentPrefix = "ocr_"
	csrfPrefix    = "ocf_"
)

// flowState is the state of the end-user flows (consent pages, device
// codes) and the ID token key. Its maps are guarded by Server.mu.
type flowState struct {
	consents     map[digest]*consentRequest // by digest of the request handle
	consentQueue expiryQueue
	devices      map[digest]*deviceRecord // by digest of the device code
	userCodes    map[string]*deviceRecord // by normalized user code
	deviceQueue  expiryQueue
	signer       *idSigner // nil without WithOIDC; immutable
}

func newFlowState(cfg flowConfig) flowState {
	st := flowState{
		consents:  make(map[digest]*consentRequest),
		devices:   make(map[digest]*deviceRecord),
		userCodes: make(map[string]*deviceRecord),
	}
	if cfg.oidc {
		st.signer = newIDSigner()
	}
	return st
}

// consentRequest is an authorization waiting for the end user's decision on
// the consent page: of the code flow (code set) or the device flow (device
// set). It is answered once; the answer removes it.
type consentRequest struct {
	client    *client
	scope     string
	code      *codeRequest
	device    *deviceRecord
	csrf      digest // of the form's CSRF token
	browser   digest // of the browser cookie
	expiresAt time.Time
}

// scopeItem is one requested scope on the consent page.
type scopeItem struct{ Name, Description string }

// scopeDescriptions explain well-known scopes on the consent page.
var scopeDescriptions = map[string]string{
	"openid":         "Sign you in and learn your user id",
	"email":          "See your email address",
	"profile":        "See your name and profile",
	"offline_access": "Keep access while you are away (a refresh token)",
}

// consentPage is the data of the "consent" template.
type consentPage struct {
	ClientID string
	Scopes   []scopeItem
	ReturnTo string // origin the code flow returns to; "" for a device
	UserCode string // the device's user code; "" for the code flow
	Action   string // form action, relative to the page
	Request  string // consent request handle
	CSRF     string
	Email    string
	Issuer   string
}

// devicePage is the data of the "device" template.
type devicePage struct {
	UserCode string
	Error    string
	Issuer   string
}

// messagePage is the data of the "message" template.
type messagePage struct {
	Title   string
	Text    string
	Outcome string // machine-readable: approved, denied, error
	Issuer  string
}

// setPageHeaders sets the headers of every HTML page: not cacheable, not
// framable, no scripts, no referrer.
func setPageHeaders(h http.Header) {
	setNoStore(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// renderPage writes template name with data and status.
func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	setPageHeaders(w.Header())
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		s.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "oauthtest: render page",
			slog.String("page", name), slog.String("err", err.Error()))
	}
}

// renderMessage writes the message page.
func (s *Server) renderMessage(w http.ResponseWriter, r *http.Request, status int, outcome, title, text string) {
	s.renderPage(w, r, status, "message", messagePage{Title: title, Text: text, Outcome: outcome, Issuer: s.issuerFor(r)})
}

// handleCSS serves the stylesheet of the pages.
func handleCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(stylesheet)
}

// browserID returns the browser cookie's value, setting a new cookie when
// the request carries none that is well formed.
func browserID(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(browserCookie); err == nil && len(ck.Value) == 43 && validPKCEString(ck.Value) {
		return ck.Value
	}
	v := newToken("")
	http.SetCookie(w, &http.Cookie{
		Name:     browserCookie,
		Value:    v,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil,
	})
	return v
}

// showConsent stores req as a consent request and renders the consent page
// for it.
func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, req *consentRequest) {
	browser := browserID(w, r)
	handle, csrf := newToken(consentPrefix), newToken(csrfPrefix)
	req.csrf, req.browser = hashOf(csrf), hashOf(browser)
	h := hashOf(handle)
	s.mu.Lock()
	now := s.cfg.now()
	s.flows.consentQueue.popDue(now, func(k digest) { delete(s.flows.consents, k) })
	req.expiresAt = now.Add(consentLifetime)
	s.flows.consents[h] = req
	s.flows.consentQueue.push(h, req.expiresAt)
	s.mu.Unlock()

	page := consentPage{
		ClientID: req.client.id,
		Request:  handle,
		CSRF:     csrf,
		Email:    s.cfg.flows.endUser().Email,
		Issuer:   s.issuerFor(r),
	}
	for _, sc := range strings.Fields(req.scope) {
		page.Scopes = append(page.Scopes, scopeItem{Name: sc, Description: scopeDescriptions[sc]})
	}
	if req.code != nil {
		page.Action = "authorize"
		page.ReturnTo = req.code.redirect.Scheme + ":"
		if h := req.code.redirect.Host; h != "" {
			page.ReturnTo += "//" + h
		}
	} else {
		page.Action = "device"
		page.UserCode = formatUserCode(req.device.userCode)
	}
	s.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "oauthtest: consent page",
		slog.String("client_id", req.client.id), slog.String("flow", page.Action))
	s.renderPage(w, r, http.StatusOK, "consent", page)
}

// handleConsent serves POST /authorize (device false) and POST /device
// (device true): the answer to a consent page. The request handle must
// name a live consent request of the same flow, the CSRF token must match
// it, and the browser cookie must be the one it was shown to; a request
// failing these changes nothing. A valid answer removes the consent request,
// so it cannot be replayed.
func (s *Server) handleConsent(device bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		form, perr := readForm(w, r)
		if perr != nil {
			s.renderMessage(w, r, http.StatusBadRequest, "error", "Bad request", perr.desc)
			return
		}
		decision := form.Get("decision")
		if decision != "approve" && decision != "deny" {
			s.renderMessage(w, r, http.StatusBadRequest, "error", "Bad request", "The form must say approve or deny.")
			return
		}
		user := s.cfg.flows.endUser()
		if email := form.Get("email"); email != "" && email != user.Email {
			if !validEmail(email) {
				s.renderMessage(w, r, http.StatusBadRequest, "error", "Bad request",
					"“"+printable(email, 80)+"” is not an email address. Go back and correct it.")
				return
			}
			user = EndUser{Subject: SubjectFor(email), Email: email}
		}
		var browser digest
		if ck, err := r.Cookie(browserCookie); err == nil {
			browser = hashOf(ck.Value)
		}
		csrf := hashOf(form.Get("csrf_token"))
		h := hashOf(form.Get("request"))

		s.mu.Lock()
		now := s.cfg.now()
		req := s.flows.consents[h]
		switch {
		case req == nil || !now.Before(req.expiresAt) || (req.device != nil) != device:
			s.mu.Unlock()
			s.logConsent(r, "", "rejected", "unknown_request")
			s.renderMessage(w, r, http.StatusBadRequest, "error", "This request is no longer valid",
				"It is unknown, was already answered, or has expired. Start again from the application.")
			return
		case subtle.ConstantTimeCompare(csrf[:], req.csrf[:]) != 1 || subtle.ConstantTimeCompare(browser[:], req.browser[:]) != 1:
			s.mu.Unlock()
			s.logConsent(r, req.client.id, "rejected", "csrf")
			s.renderMessage(w, r, http.StatusForbidden, "error", "The form could not be verified",
				"It was not sent by the page this browser was shown. Start again from the application.")
			return
		}
		delete(s.flows.consents, h)
		if decision == "approve" {
			s.stats.ConsentApprovals++
		} else {
			s.stats.ConsentDenials++
		}
		s.mu.Unlock()

		if device {
			s.decideDevice(w, r, req, decision == "approve", user)
			return
		}
		var target string
		if decision == "approve" {
			code := s.issueCode(req.client, req.code, req.scope, user)
			target = req.code.redirectTo(url.Values{"code": {code}})
			s.logConsent(r, req.client.id, "approved", "")
		} else {
			target = req.code.redirectTo(url.Values{"error": {"access_denied"},
				"error_description": {"the end user denied the request"}})
			s.logConsent(r, req.client.id, "denied", "")
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusSeeOther)
	}
}

// logConsent logs the answer to a consent page, never a token or code.
func (s *Server) logConsent(r *http.Request, clientID, outcome, reason string) {
	attrs := []slog.Attr{slog.String("client_id", clientID), slog.String("outcome", outcome), slog.String("path", r.URL.Path)}
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	s.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "oauthtest: consent", attrs...)
}
