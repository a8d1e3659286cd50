package oauthtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	const httpDate = "Wed, 21 Oct 2026 07:28:00 GMT"
	for _, tc := range []struct {
		name        string
		fault       Fault
		status      int
		contentType string
		retryAfter  string
		processed   bool
		check       func(t *testing.T, r reply)
	}{
		{"server error default", Fault{Kind: FaultServerError}, 500, "text/plain", "", false, nil},
		{"server error 503 retry", Fault{Kind: FaultServerError, Status: 503, RetryAfter: "2"}, 503, "text/plain", "2", false, nil},
		{"server error 502", Fault{Kind: FaultServerError, Status: 502}, 502, "text/plain", "", false, nil},
		{"too many requests seconds", Fault{Kind: FaultTooManyRequests, RetryAfter: "3"}, 429, "text/plain", "3", false, nil},
		{"too many requests date", Fault{Kind: FaultTooManyRequests, RetryAfter: httpDate}, 429, "text/plain", httpDate, false, nil},
		{"malformed json", Fault{Kind: FaultMalformedJSON}, 200, "application/json", "", false, func(t *testing.T, r reply) {
			var v any
			if json.Unmarshal([]byte(r.raw), &v) == nil {
				t.Errorf("body %q is valid JSON", r.raw)
			}
		}},
		{"html default", Fault{Kind: FaultHTML}, 502, "text/html", "", false, func(t *testing.T, r reply) {
			if !strings.Contains(r.raw, "<html>") {
				t.Errorf("body %q is not HTML", r.raw)
			}
		}},
		{"html 200", Fault{Kind: FaultHTML, Status: 200}, 200, "text/html", "", false, nil},
		{"html 503 retry", Fault{Kind: FaultHTML, Status: 503, RetryAfter: "5"}, 503, "text/html", "5", false, nil},
		{"error in 200 default", Fault{Kind: FaultErrorIn200}, 200, "application/json", "", false, func(t *testing.T, r reply) {
			if r.str("error") != "server_error" || r.str("access_token") != "" {
				t.Errorf("body %s", r.raw)
			}
		}},
		{"error in 200 code", Fault{Kind: FaultErrorIn200, Code: "invalid_grant"}, 200, "application/json", "", false, func(t *testing.T, r reply) {
			if r.str("error") != "invalid_grant" {
				t.Errorf("body %s", r.raw)
			}
		}},
		{"oauth error default", Fault{Kind: FaultOAuthError}, 400, "application/json", "", false, func(t *testing.T, r reply) {
			if r.str("error") != "invalid_request" {
				t.Errorf("body %s", r.raw)
			}
		}},
		{"oauth error invalid_grant", Fault{Kind: FaultOAuthError, Code: "invalid_grant"}, 400, "application/json", "", false, func(t *testing.T, r reply) {
			if r.str("error") != "invalid_grant" {
				t.Errorf("body %s", r.raw)
			}
		}},
		{"oauth error invalid_client 401", Fault{Kind: FaultOAuthError, Code: "invalid_client", Status: 401}, 401, "application/json", "", false, func(t *testing.T, r reply) {
			if r.str("error") != "invalid_client" || r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("body %s header %v", r.raw, r.header)
			}
		}},
		{"oauth error 503 retry", Fault{Kind: FaultOAuthError, Code: "temporarily_unavailable", Status: 503, RetryAfter: "7"}, 503, "application/json", "7", false, nil},
		{"form encoded", Fault{Kind: FaultFormEncoded}, 200, "application/x-www-form-urlencoded", "", true, func(t *testing.T, r reply) {
			v, err := url.ParseQuery(r.raw)
			if err != nil || v.Get("token_type") != "Bearer" || v.Get("expires_in") != "2" || v.Get("refresh_token") == "" || v.Get("access_token") == "" {
				t.Errorf("body %q (%v)", r.raw, err)
			}
		}},
		{"missing expires_in", Fault{Kind: FaultMissingExpiresIn}, 200, "application/json", "", true, func(t *testing.T, r reply) {
			if _, ok := r.json["expires_in"]; ok || r.str("access_token") == "" {
				t.Errorf("body %s", r.raw)
			}
		}},
		{"expires_in string", Fault{Kind: FaultExpiresInString}, 200, "application/json", "", true, func(t *testing.T, r reply) {
			if r.json["expires_in"] != "2" {
				t.Errorf("expires_in = %#v", r.json["expires_in"])
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(WithClient("c", "s"), WithRotation(true), WithReuseDetection(0), WithLifetime(1500*time.Millisecond))
			defer s.Close()
			rt := s.IssueRefreshToken("c", "")
			s.Script(tc.fault)
			r := refresh(t, s, "c", "s", rt)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.contentType)
			}
			if got := r.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			st := s.Stats()
			if st.Faults != 1 || st.TokenRequests["refresh_token"] != 1 {
				t.Errorf("stats = %+v", st)
			}
			info, _ := s.RefreshTokenInfo(rt)
			if tc.processed {
				if info.Current || s.Presentations(rt) != 1 || st.AccessTokensIssued != 1 {
					t.Errorf("a success-shaped fault did not process the grant: %+v", info)
				}
			} else {
				if !info.Current || s.Presentations(rt) != 0 || st.AccessTokensIssued != 0 {
					t.Errorf("an error fault processed the grant: %+v", info)
				}
				// The next request is normal and the token still good.
				mustRefresh(t, s, "c", "s", rt)
			}
		})
	}
}

func TestFaultQueue(t *testing.T) {
	s := NewServer(WithClient("c", "s"))
	defer s.Close()
	s.Script(Fault{Kind: FaultServerError, Status: 503}, Fault{Kind: FaultTooManyRequests})
	s.Script(Fault{Kind: FaultHTML})

	// Faults apply in order, one per request, to every grant and whether
	// or not the request is valid.
	form := url.Values{"grant_type": {"client_credentials"}}
	if r := postForm(t, s.TokenURL(), form, &basicCreds{"c", "wrong"}); r.status != 503 {
		t.Errorf("first: %d", r.status)
	}
	if r := refresh(t, s, "c", "s", "unknown"); r.status != 429 {
		t.Errorf("second: %d", r.status)
	}
	if r := postForm(t, s.TokenURL(), url.Values{}, nil); r.status != 502 {
		t.Errorf("third: %d", r.status)
	}
	clientCredentials(t, s, "c", "s")

	s.Script(Fault{Kind: FaultServerError}, Fault{Kind: FaultServerError})
	s.ClearScript()
	clientCredentials(t, s, "c", "s")
	if st := s.Stats(); st.Faults != 3 {
		t.Errorf("Faults = %d, want 3", st.Faults)
	}

	// Authorization code grants take faults too.
	s.Script(Fault{Kind: FaultOAuthError, Code: "invalid_grant"})
	if r := postForm(t, s.TokenURL(), url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, &basicCreds{"c", "s"}); r.str("error") != "invalid_grant" {
		t.Errorf("authorization_code with fault: %s", r.raw)
	}
}

func TestScriptRejectsBadFaults(t *testing.T) {
	for name, f := range map[string]Fault{
		"zero kind":    {},
		"unknown kind": {Kind: FaultOAuthError + 1},
		"bad status":   {Kind: FaultHTML, Status: 999},
	} {
		t.Run(name, func(t *testing.T) {
			s := NewHandler()
			defer func() {
				if recover() == nil {
					t.Errorf("Script did not panic")
				}
			}()
			s.Script(f)
		})
	}
	if FaultHTML.String() != "html" || FaultKind(99).String() != "FaultKind(99)" {
		t.Errorf("FaultKind.String: %q %q", FaultHTML, FaultKind(99))
	}
}

func TestLatency(t *testing.T) {
	const latency = 150 * time.Millisecond
	s := NewServer(WithClient("c", "s"), WithLatency(latency))
	defer s.Close()

	start := time.Now()
	clientCredentials(t, s, "c", "s")
	if d := time.Since(start); d < latency {
		t.Errorf("request took %v, want at least %v", d, latency)
	}

	// A client that gives up during the latency causes nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	setBasic(req, "c", "s")
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatalf("request outlived its context")
	}
	// The handler notices the cancellation once the connection closes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		if st.TokenRequests["client_credentials"] == 2 {
			if st.AccessTokensIssued != 1 {
				t.Errorf("a dropped request issued a token: %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second request never arrived: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}

}

func TestCloseEndsLatencyWaits(t *testing.T) {
	s := NewHandler(WithClient("c", "s"), WithLatency(time.Hour))
	done := make(chan int)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		setBasic(req, "c", "s")
		rec := newRecorder()
		s.Handler().ServeHTTP(rec, req)
		done <- rec.Code
	}()
	// Wait until the request is counted, then close.
	for s.Stats().TokenRequests["client_credentials"] == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Close()
	select {
	case code := <-done:
		if code != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the latency wait")
	}
	if st := s.Stats(); st.AccessTokensIssued != 0 {
		t.Errorf("a request dropped at Close issued a token")
	}
}
