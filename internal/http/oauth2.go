package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
)

// oauthError is an RFC 6749 §5.2 error of the token endpoint.
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeOAuthError answers the token endpoint's errors: the one place where
// they are encoded.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="tokenkeeper"`)
	}
	if e.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(e)
}

// CredentialScopePrefix starts the scope that names a credential at the
// token endpoint: scope=credential:NAME.
const CredentialScopePrefix = "credential:"

// handleOAuth2Token is an RFC 6749 token endpoint for service clients: the
// client_credentials grant with scope=credential:NAME returns the current
// upstream access token of NAME, expires_in set to its remaining advertised
// life (see tokenJSON).
func (s *server) handleOAuth2Token() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ct := headerValue(r.Header, "Content-Type"); ct != formContentType {
			if mt, _, _ := mime.ParseMediaType(ct); mt != formContentType {
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "the body must be application/x-www-form-urlencoded"})
				return
			}
		}
		var params [6]formParam // the form's room on the stack: no allocation for the usual few
		form, err := readTokenForm(w, r, params[:0])
		if err != nil {
			var mbe *http.MaxBytesError
			var rep repeatedParam
			switch {
			case errors.As(err, &mbe):
				writeOAuthError(w, &oauthError{status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "the body is larger than 16 KiB"})
			case errors.As(err, &rep):
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "parameter " + truncate(string(rep), 40) + " is repeated"})
			default:
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "malformed form body"})
			}
			return
		}
		// Client authentication: exactly one of client_secret_basic and
		// client_secret_post.
		id, secret, basic := r.BasicAuth()
		if basic {
			var err1, err2 error
			id, err1 = urlUnescape(id)
			secret, err2 = urlUnescape(secret)
			if err1 != nil || err2 != nil {
				writeOAuthError(w, &oauthError{status: 401, Code: "invalid_client", Description: "malformed client credentials"})
				return
			}
			if form.Get("client_secret") != "" {
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "use one client authentication method, not both"})
				return
			}
		} else {
			id, secret = form.Get("client_id"), form.Get("client_secret")
		}
		if id == "" || secret == "" {
			writeOAuthError(w, &oauthError{status: 401, Code: "invalid_client", Description: "client authentication is required (client_secret_basic or client_secret_post)"})
			return
		}
		client, err := s.auth.AuthenticateClient(r.Context(), id, secret)
		if err != nil {
			if tokenkeeper.ErrorCode(err) == tokenkeeper.EUNAUTHORIZED {
				s.audit(r, "client:"+truncate(id, 64), "auth.failed", "/oauth2/token", "denied", "invalid client credentials")
				writeOAuthError(w, &oauthError{status: 401, Code: "invalid_client", Description: "invalid client credentials"})
				return
			}
			s.logger.Error("authenticate service client", "err", err)
			writeOAuthError(w, &oauthError{status: 503, Code: "temporarily_unavailable", Description: "try again shortly"})
			return
		}
		noteCaller(r, "client", client.ClientID)
		switch gt := form.Get("grant_type"); gt {
		case "client_credentials":
		case "":
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_request", Description: "grant_type is required"})
			return
		default:
			writeOAuthError(w, &oauthError{status: 400, Code: "unsupported_grant_type", Description: "only client_credentials is supported"})
			return
		}
		scope, one := oneScope(form.Get("scope"))
		if !one || !strings.HasPrefix(scope, CredentialScopePrefix) {
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_scope", Description: "ask for exactly one scope of the form credential:NAME"})
			return
		}
		name := strings.TrimPrefix(scope, CredentialScopePrefix)
		if !client.CanRead(name) {
			s.audit(r, "client:"+client.ClientID, "token.read", name, "denied", "")
			writeOAuthError(w, &oauthError{status: 400, Code: "invalid_scope", Description: "the client may not read " + scope})
			return
		}
		ctx, end := s.tracer.TokenRead(r.Context(), name)
		sv, err := s.refresher.Token(ctx, name, 0)
		end(err)
		s.metrics.TokenRead(err)
		if err != nil {
			switch tokenkeeper.ErrorCode(err) {
			case tokenkeeper.ENOTFOUND:
				writeOAuthError(w, &oauthError{status: 400, Code: "invalid_scope", Description: "the client may not read " + scope})
			default:
				writeOAuthError(w, &oauthError{status: 503, Code: "temporarily_unavailable", Description: tokenkeeper.ErrorMessage(err)})
			}
			return
		}
		// The refresher serves a token only with at least a second of
		// advertised life left, replacing it first otherwise (concurrent
		// clients share the replacement): expires_in is never 0.
		now := s.now()
		s.auditw.tokenRead("client:"+client.ClientID, name, remoteHost(r), now)
		var in int64 = -1
		if !sv.ExpiresAt.IsZero() {
			in = expiresIn(sv.ExpiresAt, now)
		}
		bp := tokenBufs.Get().(*[]byte)
		answerToken(w, bp, appendOAuthToken((*bp)[:0], sv.Token.AccessToken, scope, in), true, now)
	})
}

// oneScope returns the one scope that s, a space-delimited list (RFC 6749
// §3.3), names, and false if it names none or several (as
// strings.Fields would find them, without making a slice).
func oneScope(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf {
			// Unicode spaces too, as strings.Fields finds them.
			if strings.IndexFunc(s, unicode.IsSpace) >= 0 {
				return "", false
			}
			break
		} else if asciiSpace[c] {
			return "", false
		}
	}
	return s, true
}

// asciiSpace holds the ASCII bytes unicode.IsSpace reports.
var asciiSpace = [utf8.RuneSelf]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

// headerValue is h's first value for key, a canonical header name, as
// h.Get without canonicalizing key again.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// oauth2TokenPattern is the token endpoint's route.
const oauth2TokenPattern = "POST /oauth2/token"

// formContentType is the token endpoint's request body type.
const formContentType = "application/x-www-form-urlencoded"

// appendOAuthToken appends the token endpoint's answer (RFC 6749 §5.1) to
// b, byte for byte what json.Marshal of the map {access_token,
// expires_in, scope, token_type: Bearer} writes; in < 0 leaves expires_in
// out.
func appendOAuthToken(b []byte, accessToken, scope string, in int64) []byte {
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, accessToken)
	if in >= 0 {
		b = append(b, `,"expires_in":`...)
		b = strconv.AppendInt(b, in, 10)
	}
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, scope)
	return append(b, `,"token_type":"Bearer"}`...)
}

// tokenForm is the token endpoint's form: its parameters in order, each
// once.
type tokenForm []formParam

type formParam struct{ key, value string }

// Get returns the value of key, or "".
func (f tokenForm) Get(key string) string {
	if i := f.index(key); i >= 0 {
		return f[i].value
	}
	return ""
}

// has reports whether f gives key.
func (f tokenForm) has(key string) bool { return f.index(key) >= 0 }

func (f tokenForm) index(key string) int {
	for i, p := range f {
		if p.key == key {
			return i
		}
	}
	return -1
}

// repeatedParam is the error of a form that gives a parameter twice.
type repeatedParam string

func (r repeatedParam) Error() string { return "parameter " + string(r) + " is repeated" }

// maxTokenForm is the largest token endpoint body read.
const maxTokenForm = 16 << 10

// readTokenForm reads and parses the urlencoded body of a token request
// (at most maxTokenForm bytes: a *http.MaxBytesError beyond), as
// url.ParseQuery does (a semicolon or a bad escape is an error), refusing
// a parameter given twice (repeatedParam), into form (its room: the
// parameters are appended to form[:0]). It is the token endpoint's hot
// path: one read into a buffer, no map.
func readTokenForm(w http.ResponseWriter, r *http.Request, form tokenForm) (tokenForm, error) {
	bp := tokenBufs.Get().(*[]byte)
	defer tokenBufs.Put(bp)
	if n := r.ContentLength; n >= 0 && n <= maxTokenForm {
		// The usual request: its length is known, and small. One read,
		// which also sees the body's end.
		b := slices.Grow((*bp)[:0], int(n))[:n]
		*bp = b
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return parseTokenForm(string(b), form) // a copy: the values outlive the buffer
	}
	buf := bytes.NewBuffer((*bp)[:0])
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxTokenForm))
	*bp = buf.Bytes()
	if err != nil {
		return nil, err
	}
	return parseTokenForm(buf.String(), form) // a copy: the values outlive the buffer
}

// parseTokenForm parses body into form[:0] (growing it past its capacity).
func parseTokenForm(body string, form tokenForm) (tokenForm, error) {
	form = form[:0]
	var seen map[string]bool // past a few parameters: repeats found in O(1)
	for body != "" {
		var kv string
		kv, body, _ = strings.Cut(body, "&")
		if strings.Contains(kv, ";") {
			return nil, errors.New("invalid semicolon separator in form")
		}
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := formUnescape(k)
		if err != nil {
			return nil, err
		}
		if v, err = formUnescape(v); err != nil {
			return nil, err
		}
		if seen == nil && len(form) == 8 {
			seen = make(map[string]bool, 16)
			for _, p := range form {
				seen[p.key] = true
			}
		}
		if seen[k] || (seen == nil && form.has(k)) {
			return nil, repeatedParam(k)
		}
		if seen != nil {
			seen[k] = true
		}
		form = append(form, formParam{k, v})
	}
	return form, nil
}

// formUnescape decodes a form key or value, without copying one that
// holds no escape.
func formUnescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}

func urlUnescape(s string) (string, error) {
	v, err := url.QueryUnescape(s)
	if err != nil {
		return "", errors.New("bad escape")
	}
	return v, nil
}

// handleMetadata serves RFC 8414 authorization server metadata.
func (s *server) handleMetadata() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		issuer := s.issuer
		if issuer == "" {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			issuer = scheme + "://" + r.Host
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                issuer,
			"token_endpoint":                        issuer + "/oauth2/token",
			"grant_types_supported":                 []string{"client_credentials"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
			"response_types_supported":              []string{},
			"scopes_supported":                      []string{CredentialScopePrefix + "*"},
		})
	})
}
