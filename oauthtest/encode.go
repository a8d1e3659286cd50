package oauthtest

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
)

// maxFormBytes bounds request bodies read by the token and revocation
// endpoints.
const maxFormBytes = 64 << 10

// oauthError is an RFC 6749 §5.2 error. desc never holds a secret.
type oauthError struct {
	code   string
	desc   string
	status int
}

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{"invalid_request", desc, http.StatusBadRequest}
}

func errInvalidClient(desc string) *oauthError {
	return &oauthError{"invalid_client", desc, http.StatusUnauthorized}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{"invalid_grant", desc, http.StatusBadRequest}
}

func errUnauthorizedClient(desc string) *oauthError {
	return &oauthError{"unauthorized_client", desc, http.StatusBadRequest}
}

func errUnsupportedGrantType(desc string) *oauthError {
	return &oauthError{"unsupported_grant_type", desc, http.StatusBadRequest}
}

func errInvalidScope(desc string) *oauthError {
	return &oauthError{"invalid_scope", desc, http.StatusBadRequest}
}

// errorBody is the JSON body of an OAuth error.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// setNoStore marks a response as not cacheable (RFC 6749 §5.1).
func setNoStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// writeJSON writes v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeOAuthError writes e per RFC 6749 §5.2; invalid_client with 401
// carries a WWW-Authenticate challenge.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	setNoStore(w.Header())
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauthtest"`)
	}
	writeJSON(w, e.status, errorBody{Error: e.code, Description: e.desc})
}

// readForm parses a form-encoded POST body of at most maxFormBytes. A
// parameter sent more than once is an error (RFC 6749 §3.2). Parameters in
// the query string are ignored. The returned values are non-nil even on
// error.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return url.Values{}, errInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return url.Values{}, errInvalidRequest("the body is too large")
		}
		return url.Values{}, errInvalidRequest("the body is not a valid form")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return r.PostForm, errInvalidRequest("parameter " + printable(k, 40) + " is repeated")
		}
	}
	return r.PostForm, nil
}

// printable returns s cut to at most n bytes, with every byte outside the
// characters RFC 6749 allows in error_description (printable ASCII except
// '"' and backslash) replaced by '?'.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}
