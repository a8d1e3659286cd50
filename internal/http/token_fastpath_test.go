package http_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// The token read is answered before the mux (tokenReads). A path the
// fast path leaves to the mux, such as one with an escaped letter in the
// name, must get the very same answer from the mux's route, for every kind
// of caller and every failure.
func TestTokenReadFastPathAnswersAsTheRoute(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("payments"))
	h.create(h.ccCredential("ledger"))
	consumer := h.consumerKey("payments")
	h.addUser("vera", "correct horse battery", tokenkeeper.RoleViewer)
	viewer := h.login("vera", "correct horse battery").AccessToken
	h.addUser("ada", "correct horse battery", tokenkeeper.RoleAdmin)
	adminUser := h.login("ada", "correct horse battery").AccessToken

	for _, tc := range []struct {
		name, header, query string
		want                int
	}{
		{"admin key", "Bearer " + h.admin, "", http.StatusOK},
		{"admin key, min_ttl", "Bearer " + h.admin, "?min_ttl=30s", http.StatusOK},
		{"admin key, bad min_ttl", "Bearer " + h.admin, "?min_ttl=soon", http.StatusBadRequest},
		{"consumer key, granted", "Bearer " + consumer, "", http.StatusOK},
		{"admin user", "Bearer " + adminUser, "", http.StatusOK},
		{"viewer user", "Bearer " + viewer, "", http.StatusForbidden},
		{"no credentials", "", "", http.StatusUnauthorized},
		{"malformed header", "Basic abc", "", http.StatusUnauthorized},
		{"unknown key", "Bearer tk_unknownunknownunknownunknownunknownunknown", "", http.StatusUnauthorized},
		{"bad access token", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "", http.StatusUnauthorized},
	} {
		for _, cred := range []string{"payments", "ledger", "missing"} {
			t.Run(tc.name+"/"+cred, func(t *testing.T) {
				fast := h.doHeader("GET", "/v1/credentials/"+cred+"/token"+tc.query, tc.header, nil)
				// "%6x" escapes the first letter: the same name, routed by the mux.
				routed := h.doHeader("GET", fmt.Sprintf("/v1/credentials/%%%x%s/token%s", cred[0], cred[1:], tc.query), tc.header, nil)
				want := tc.want
				if want == http.StatusOK && (cred == "missing" || (cred == "ledger" && tc.header == "Bearer "+consumer)) {
					want = http.StatusNotFound // not granted answers as not found
				}
				if fast.status != want || routed.status != want {
					t.Fatalf("status: fast path %d %s, mux %d %s; want %d", fast.status, fast.body, routed.status, routed.body, want)
				}
				for _, k := range []string{"Content-Type", "Cache-Control", "WWW-Authenticate", "Retry-After"} {
					if fast.header.Get(k) != routed.header.Get(k) {
						t.Errorf("%s: fast path %q, mux %q", k, fast.header.Get(k), routed.header.Get(k))
					}
				}
				var f, m map[string]any
				if err := json.Unmarshal(fast.body, &f); err != nil {
					t.Fatalf("fast path body: %v: %s", err, fast.body)
				}
				if err := json.Unmarshal(routed.body, &m); err != nil {
					t.Fatalf("mux body: %v: %s", err, routed.body)
				}
				delete(f, "expires_in") // whole seconds left: may differ by one
				delete(m, "expires_in")
				if fb, mb := fmt.Sprint(f), fmt.Sprint(m); fb != mb {
					t.Fatalf("bodies differ:\nfast path %s\nmux       %s", fb, mb)
				}
			})
		}
	}
	// Both paths audit their reads: seven successful reads each (admin key, with and without min_ttl, and admin user: two credentials each; the consumer: one).
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := h.store.(tokenkeeper.AuthStore).Audit(t.Context(), tokenkeeper.AuditFilter{Action: "token.read", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		reads := 0
		for _, r := range recs {
			var n int
			if _, err := fmt.Sscanf(r.Detail, "%d", &n); err == nil {
				reads += n
			}
		}
		if reads == 2*7 {
			break
		}
		if reads > 2*7 || time.Now().After(deadline) {
			t.Fatalf("audited token reads: %d, want %d", reads, 2*7)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A token read by API key allocates (almost) nothing in the handler: the
// caller, its actor name, the header values and the body's buffer are made
// once. It guards the hot path against a regression that a benchmark
// would only show as a slower figure.
func TestTokenReadAllocations(t *testing.T) {
	srv, apiKey, _ := readPathServer(t, tkhttp.Config{})
	req, _ := http.NewRequest("GET", "/v1/credentials/api/token", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.RemoteAddr = "127.0.0.1:5000"
	w := &discardWriter{header: http.Header{}}
	srv.ServeHTTP(w, req) // fills the caches
	if w.status != http.StatusOK {
		t.Fatalf("read: %d", w.status)
	}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.header)
		w.status = 0
		srv.ServeHTTP(w, req)
	})
	if w.status != http.StatusOK {
		t.Fatalf("read: %d", w.status)
	}
	// One: the refresher's answer (refresh.Served).
	if allocs > 1 {
		t.Fatalf("a token read allocates %.1f objects, want at most 1", allocs)
	}
}

// The same guard for a service client's POST /oauth2/token, which reads
// and parses a form and checks a client secret on every request.
func TestOAuth2TokenAllocations(t *testing.T) {
	srv, _, basic := readPathServer(t, tkhttp.Config{})
	const form = "grant_type=client_credentials&scope=credential%3Aapi"
	body := strings.NewReader(form)
	req, _ := http.NewRequest("POST", "/oauth2/token", io.NopCloser(body))
	req.ContentLength = int64(len(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basic)
	req.RemoteAddr = "127.0.0.1:5000"
	w := &discardWriter{header: http.Header{}}
	serve := func() {
		clear(w.header)
		w.status = 0
		body.Reset(form)
		srv.ServeHTTP(w, req)
	}
	serve() // fills the caches
	if w.status != http.StatusOK {
		t.Fatalf("token request: %d", w.status)
	}
	allocs := testing.AllocsPerRun(200, serve)
	if w.status != http.StatusOK {
		t.Fatalf("token request: %d", w.status)
	}
	// Five: the form's copy and its one escaped value (scope), the decoded
	// Basic credentials and their string (net/http's BasicAuth), the audit
	// actor "client:ID". With -race, sync.Pool drops a random quarter of
	// what is put back, so either of the request's two pooled buffers may
	// be made anew.
	want := 5.0
	if raceDetector {
		want += 2
	}
	if allocs > want {
		t.Fatalf("a token request allocates %.1f objects, want at most %.0f", allocs, want)
	}
}

type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}
