package oauthtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// BenchmarkRefreshRotation measures refresh_token grants with rotation and
// reuse detection across many families, through the handler (no network).
func BenchmarkRefreshRotation(b *testing.B) {
	const families = 10000
	s := NewHandler(WithClient("c", "s"), WithRotation(true), WithReuseDetection(0))
	rts := make([]atomic.Value, families)
	for i := range rts {
		rts[i].Store(s.IssueRefreshToken("c", ""))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Slots are taken round-robin and families outnumber
			// goroutines by far, so no family is refreshed by two
			// goroutines at once.
			i := int(next.Add(1)) % families
			rt := rts[i].Load().(string)
			rec := serveForm(s, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "c", "s")
			if rec.Code != http.StatusOK {
				b.Errorf("refresh: %d %s", rec.Code, rec.Body)
				return
			}
			var body struct {
				RefreshToken string `json:"refresh_token"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			rts[i].Store(body.RefreshToken)
		}
	})
}

// BenchmarkResource measures the protected resource with a valid token.
func BenchmarkResource(b *testing.B) {
	s := NewHandler(WithClient("c", "s"))
	rec := serveForm(s, "/token", url.Values{"grant_type": {"client_credentials"}}, "c", "s")
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodGet, "/resource", nil)
			req.Header.Set("Authorization", "Bearer "+body.AccessToken)
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				panic(fmt.Sprintf("status %d", w.Code))
			}
		}
	})
}
