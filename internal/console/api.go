package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// apiClient calls the HTTP API in-process, as the signed-in user.
type apiClient struct {
	h http.Handler
}

// apiError is the API's problem answer.
type apiError struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Detail) }

// freshRequired reports whether the API refused the call for want of a
// fresh session.
func (e *apiError) freshRequired() bool { return e != nil && e.Code == "fresh_token_required" }

// recorder keeps what the API writes.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// do calls method path on the API with token as the bearer and in (if not
// nil) as the JSON body, and decodes a 2xx answer into out (if not nil).
// The console's request from lends its client address, so that audit
// records name the person's address. A non-2xx answer is an *apiError.
func (a *apiClient) do(ctx context.Context, from *http.Request, token, method, path string, in, out any) error {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, path, &body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.RemoteAddr = from.RemoteAddr
	if xff := from.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		req.Header["X-Forwarded-For"] = xff
	}
	req.Header.Set("User-Agent", "tokenkeeper-console")
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := &recorder{header: http.Header{}}
	a.h.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status < 200 || rec.status > 299 {
		e := &apiError{}
		if json.Unmarshal(rec.body.Bytes(), e) != nil || e.Code == "" {
			e.Detail = strings.TrimSpace(http.StatusText(rec.status))
		}
		e.Status = rec.status
		return e
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// contextWithoutCancel is r's context without its cancellation.
func contextWithoutCancel(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}
