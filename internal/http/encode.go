package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/internal/proxy"
)

// statuses maps each domain error code to its HTTP status: the one table.
var statuses = map[string]int{
	tokenkeeper.EINVALID:      http.StatusBadRequest,
	tokenkeeper.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	tokenkeeper.EUNAUTHORIZED: http.StatusUnauthorized,
	tokenkeeper.EFORBIDDEN:    http.StatusForbidden,
	tokenkeeper.ENOTFOUND:     http.StatusNotFound,
	tokenkeeper.ECONFLICT:     http.StatusConflict,
	tokenkeeper.ENOTREADY:     http.StatusConflict,
	tokenkeeper.EEXPIRED:      http.StatusGone,
	tokenkeeper.EUNAVAILABLE:  http.StatusServiceUnavailable,
	tokenkeeper.EINTERNAL:     http.StatusInternalServerError,
	auth.ETOOMANYREQUESTS:     http.StatusTooManyRequests,
	EMETHOD:                   http.StatusMethodNotAllowed,
	proxy.EUPSTREAM:           http.StatusBadGateway,
}

// ProblemTypePrefix prefixes the error code in a problem's type member.
const ProblemTypePrefix = "urn:tokenkeeper:problem:"

// Problem is an RFC 9457 problem document, with tokenkeeper's extension
// members: the error code and, for a credential without a valid token, its
// status and last error code.
type Problem struct {
	Type             string `json:"type"`
	Title            string `json:"title"`
	Status           int    `json:"status"`
	Detail           string `json:"detail,omitempty"`
	Code             string `json:"code"`
	CredentialStatus string `json:"credential_status,omitempty"`
	LastErrorCode    string `json:"last_error_code,omitempty"`
}

// writeJSON writes v as the JSON response body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// problemFor builds the problem document of err. Internal errors get a
// generic detail: their text is only logged.
func problemFor(err error) *Problem {
	code := tokenkeeper.ErrorCode(err)
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	return &Problem{
		Type: ProblemTypePrefix + code, Title: http.StatusText(status), Status: status,
		Detail: tokenkeeper.ErrorMessage(err), Code: code,
	}
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *Problem) {
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="tokenkeeper"`)
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// Error writes err as a problem response, logging internal errors.
func (s *server) Error(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err)
	var rl *auth.RateLimitError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.FormatInt(rl.RetryAfterSeconds(), 10))
	}
	if p.Status >= 500 {
		s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	writeProblem(w, p)
}

// decode reads a JSON body into v strictly: one object, no unknown fields,
// at most s.maxBody bytes. Every failure is EINVALID (ETOOLARGE past the
// limit) with a message that says what is wrong (and never quotes the
// body, which may hold secrets).
//
// The body is read as JSON whatever its Content-Type, as Vault does: a
// pasted `curl -d '{...}'` sends application/x-www-form-urlencoded. This
// opens no cross-site hole, since every route that changes anything needs
// an Authorization header, which a cross-site form cannot send.
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, s.maxBody)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err, s.maxBody)
		}
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "request body must hold a single JSON object")
	}
	return nil
}

// decodeOptional is decode for endpoints whose body may be absent or empty.
func (s *server) decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		return decodeError(err, s.maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return s.decode(w, r, v)
}

func decodeError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return tokenkeeper.Errorf(tokenkeeper.ETOOLARGE, "request body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "request body is empty: a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "request body is truncated JSON")
	case errors.As(err, &syn):
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "field %q must be of JSON type %s", typ.Field, jsonKind(typ.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid JSON body")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	case "bool":
		return "boolean"
	}
	return fmt.Sprintf("number (%s)", goKind)
}
