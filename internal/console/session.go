package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
)

// Cookie names. Every cookie is HttpOnly, SameSite=Strict, scoped to
// Prefix, Secure under an https public URL, and ends with the browser
// session.
const (
	cookieAccess  = "tk_console_at"   // the access token (a JWT)
	cookieRefresh = "tk_console_rt"   // the refresh token
	cookieCSRF    = "tk_console_csrf" // the key of the session's CSRF tokens
	cookieFlash   = "tk_console_flash"
)

// session is a signed-in user, as of one request.
type session struct {
	claims *auth.Claims
	token  string // the access token, for the API calls
	csrf   string // the CSRF token the session's forms carry
	// forceStale shows the password confirmation on forms although the
	// token is fresh (the API found it too old, or the password typed to
	// confirm was wrong).
	forceStale bool
}

func (s *session) admin() bool { return s.claims.Role == tokenkeeper.RoleAdmin }

// tokens is the API's answer to a login or a refresh.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// renewal is one refresh of a session's tokens, shared by the requests
// that present the same refresh token at once (a page, its event stream,
// a second tab): the provider-style rotation would otherwise see a reuse
// and revoke the family. Its result is kept for renewalTTL, short, since
// within it the rotated refresh token still yields the new tokens rather
// than revoking the family as a reuse.
type renewal struct {
	done chan struct{}
	toks *tokens
	err  error
	at   time.Time
}

const renewalTTL = 10 * time.Second

func (c *Console) setCookie(w http.ResponseWriter, name, value string) {
	ck := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode}
	if value == "" {
		ck.MaxAge = -1
	}
	http.SetCookie(w, ck)
}

func cookie(r *http.Request, name string) string {
	ck, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return ck.Value
}

// csrfKey returns the browser's CSRF key, setting a new one if it has none.
func (c *Console) csrfKey(w http.ResponseWriter, r *http.Request) string {
	if k := cookie(r, cookieCSRF); len(k) == 43 {
		return k
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	k := base64.RawURLEncoding.EncodeToString(b[:])
	c.setCookie(w, cookieCSRF, k)
	r.AddCookie(&http.Cookie{Name: cookieCSRF, Value: k}) // for this request's token
	return k
}

// csrfToken is the token of purpose under key: the sign-in form's, or a
// session's (bound to its refresh-token family, so that a token never
// outlives the session it was made for).
func csrfToken(key, purpose string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("tokenkeeper console csrf\x00" + purpose))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether the form carries the token of purpose.
func checkCSRF(r *http.Request, purpose string) bool {
	key := cookie(r, cookieCSRF)
	got := r.PostFormValue("csrf")
	return key != "" && got != "" && hmac.Equal([]byte(got), []byte(csrfToken(key, purpose)))
}

func sessionPurpose(cl *auth.Claims) string { return "session:" + cl.FamilyID }

// session returns the request's session: its access token if still valid,
// or else a new one obtained with its refresh token (not fresh). Nil when
// the browser is signed out or its session has ended; the cookies are then
// cleared.
func (c *Console) session(w http.ResponseWriter, r *http.Request, api *apiClient) *session {
	at := cookie(r, cookieAccess)
	if at != "" {
		if cl, err := c.cfg.Auth.Verify(r.Context(), at); err == nil {
			return &session{claims: cl, token: at, csrf: csrfToken(c.csrfKey(w, r), sessionPurpose(cl))}
		}
	}
	rt := cookie(r, cookieRefresh)
	if api == nil { // no renewal here (an event stream): the page renews
		return nil
	}
	if rt == "" {
		if at != "" {
			c.dropSession(w, r)
		}
		return nil
	}
	toks, err := c.renew(r, api, rt)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			c.log.Warn("cannot renew a console session", "err", err)
		}
		c.dropSession(w, r)
		return nil
	}
	cl, err := c.cfg.Auth.Verify(r.Context(), toks.AccessToken)
	if err != nil {
		c.dropSession(w, r)
		return nil
	}
	c.setCookie(w, cookieAccess, toks.AccessToken)
	c.setCookie(w, cookieRefresh, toks.RefreshToken)
	return &session{claims: cl, token: toks.AccessToken, csrf: csrfToken(c.csrfKey(w, r), sessionPurpose(cl))}
}

// renew refreshes the tokens of refresh token rt once for every request
// presenting it within renewalTTL.
func (c *Console) renew(r *http.Request, api *apiClient, rt string) (*tokens, error) {
	h := sha256.Sum256([]byte(rt))
	now := c.now()
	c.refreshMu.Lock()
	for k, v := range c.refreshes { // few entries: one per session renewing
		select {
		case <-v.done:
			if now.Sub(v.at) > renewalTTL {
				delete(c.refreshes, k)
			}
		default:
		}
	}
	rn, ok := c.refreshes[h]
	if !ok {
		rn = &renewal{done: make(chan struct{}), at: now}
		c.refreshes[h] = rn
	}
	c.refreshMu.Unlock()
	if ok {
		select {
		case <-rn.done:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		return rn.toks, rn.err
	}
	var toks tokens
	// Detached from the request: the result is shared, and a rotation
	// the store committed must reach the browser.
	ctx := contextWithoutCancel(r)
	rn.err = api.do(ctx, r, "", http.MethodPost, "/v1/auth/refresh", map[string]string{"refresh_token": rt}, &toks)
	if rn.err == nil {
		rn.toks = &toks
	}
	close(rn.done)
	return rn.toks, rn.err
}

// dropSession clears the cookies of a session that no longer works, but
// not in the answer to a page's live fetch (header X-Console-Live): it
// runs beside the page's navigations and forms, its answer may reach the
// browser after theirs, and it must not clear the session one of them set
// meanwhile (a re-sign-in before a delete ends the stale session while a
// live fetch may still carry it).
func (c *Console) dropSession(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(headerLive) != "" {
		return
	}
	c.clearSession(w)
}

// headerLive marks a page's live fetch (console.js).
const headerLive = "X-Console-Live"

func (c *Console) clearSession(w http.ResponseWriter) {
	c.setCookie(w, cookieAccess, "")
	c.setCookie(w, cookieRefresh, "")
}

// signIn logs the user in through the API (audited there) and sets the
// session's cookies. The returned session is fresh.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request, api *apiClient, username, password string) (*session, error) {
	var toks tokens
	if err := api.do(r.Context(), r, "", http.MethodPost, "/v1/auth/login",
		map[string]string{"username": username, "password": password}, &toks); err != nil {
		return nil, err
	}
	cl, err := c.cfg.Auth.Verify(r.Context(), toks.AccessToken)
	if err != nil {
		return nil, err
	}
	c.setCookie(w, cookieAccess, toks.AccessToken)
	c.setCookie(w, cookieRefresh, toks.RefreshToken)
	return &session{claims: cl, token: toks.AccessToken, csrf: csrfToken(c.csrfKey(w, r), sessionPurpose(cl))}, nil
}

// loginURL is the sign-in page that returns to next.
func loginURL(next string) string {
	if !localPath(next) || next == Prefix {
		return Prefix + "login"
	}
	return Prefix + "login?next=" + url.QueryEscape(next)
}
