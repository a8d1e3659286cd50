package oauthtest

import (
	"fmt"
	"net/http"
	"strconv"
)

// FaultKind names a way the token endpoint misbehaves.
type FaultKind int

// Fault kinds. Kinds that answer with an error (FaultServerError,
// FaultTooManyRequests, FaultMalformedJSON, FaultHTML, FaultErrorIn200,
// FaultOAuthError) do not process the request: no token is issued, rotated,
// revoked or counted as presented. Kinds that answer with a success in an
// unusual shape (FaultFormEncoded, FaultMissingExpiresIn,
// FaultExpiresInString) process the grant normally and change only the
// response. A RetryAfter is sent with every error kind that has one.
const (
	FaultServerError      FaultKind = iota + 1 // Status (500 unless 5xx given) with a plain-text body
	FaultTooManyRequests                       // 429 with a plain-text body
	FaultMalformedJSON                         // 200 with a truncated JSON body
	FaultFormEncoded                           // 200 success as application/x-www-form-urlencoded
	FaultHTML                                  // an HTML error page with Status (default 502; 200 allowed)
	FaultErrorIn200                            // 200 with {"error":Code} (default server_error)
	FaultMissingExpiresIn                      // success without expires_in
	FaultExpiresInString                       // success with expires_in as a JSON string, such as "3600"
	FaultOAuthError                            // RFC 6749 §5.2 error with Code (default invalid_request) and Status (default 400)
)

var faultNames = map[FaultKind]string{
	FaultServerError:      "server_error",
	FaultTooManyRequests:  "too_many_requests",
	FaultMalformedJSON:    "malformed_json",
	FaultFormEncoded:      "form_encoded",
	FaultHTML:             "html",
	FaultErrorIn200:       "error_in_200",
	FaultMissingExpiresIn: "missing_expires_in",
	FaultExpiresInString:  "expires_in_string",
	FaultOAuthError:       "oauth_error",
}

// String returns a short name for the kind, such as "malformed_json".
func (k FaultKind) String() string {
	if n, ok := faultNames[k]; ok {
		return n
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// processes reports whether a fault of kind k lets the grant be processed.
func (k FaultKind) processes() bool {
	return k == FaultFormEncoded || k == FaultMissingExpiresIn || k == FaultExpiresInString
}

// Fault is one scripted misbehaviour of the token endpoint.
type Fault struct {
	Kind       FaultKind
	Status     int    // HTTP status where relevant
	Code       string // OAuth error code where relevant
	RetryAfter string // raw Retry-After header value ("2" or an HTTP date); "" none
}

// Script appends faults to the queue. Each token request, whatever its
// grant and whether or not it is valid, takes the first fault of the queue
// when it arrives and is answered according to it. Script panics on an
// unknown kind or a Status outside 100–599.
func (s *Server) Script(faults ...Fault) {
	for _, f := range faults {
		if _, ok := faultNames[f.Kind]; !ok {
			panic(fmt.Sprintf("oauthtest: Script: unknown fault kind %d", int(f.Kind)))
		}
		if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
			panic(fmt.Sprintf("oauthtest: Script: invalid status %d", f.Status))
		}
	}
	s.mu.Lock()
	s.faults = append(s.faults, faults...)
	s.mu.Unlock()
}

// ClearScript drops every fault not yet consumed.
func (s *Server) ClearScript() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// nextFault removes and returns the first scripted fault.
func (s *Server) nextFault() (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) == 0 {
		return Fault{}, false
	}
	f := s.faults[0]
	s.faults[0] = Fault{}
	s.faults = s.faults[1:]
	if len(s.faults) == 0 {
		s.faults = nil
	}
	s.stats.Faults++
	return f, true
}

// writeErrorFault answers with a fault of an error kind.
func writeErrorFault(w http.ResponseWriter, f Fault) {
	h := w.Header()
	setNoStore(h)
	if f.RetryAfter != "" {
		h.Set("Retry-After", f.RetryAfter)
	}
	switch f.Kind {
	case FaultServerError:
		status := f.Status
		if status < 500 {
			status = http.StatusInternalServerError
		}
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "%d %s (oauthtest scripted fault)\n", status, http.StatusText(status))
	case FaultTooManyRequests:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintln(w, "429 Too Many Requests (oauthtest scripted fault)")
	case FaultMalformedJSON:
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"access_token":"truncat`)
	case FaultHTML:
		status := f.Status
		if status == 0 {
			status = http.StatusBadGateway
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>%d %s</title></head>\n"+
			"<body><h1>%d %s</h1><p>The upstream server is not available. (oauthtest scripted fault)</p></body></html>\n",
			status, http.StatusText(status), status, http.StatusText(status))
	case FaultErrorIn200:
		code := f.Code
		if code == "" {
			code = "server_error"
		}
		writeJSON(w, http.StatusOK, errorBody{Error: code, Description: "scripted error in a 200 response"})
	case FaultOAuthError:
		code := f.Code
		if code == "" {
			code = "invalid_request"
		}
		status := f.Status
		if status == 0 {
			status = http.StatusBadRequest
		}
		if status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Basic realm="oauthtest"`)
		}
		writeJSON(w, status, errorBody{Error: code, Description: "scripted OAuth error"})
	}
}
