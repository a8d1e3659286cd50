package http_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
)

// M1 (retention): records older than the audit retention are deleted in
// the background, a batch at a time, while the server keeps serving;
// younger records stay.
func TestAuditRetentionPrunesOldRecords(t *testing.T) {
	h := newHarnessWith(t, func(c *tkhttp.Config) {
		c.AuditRetention = 24 * time.Hour
		c.AuditPruneInterval = 20 * time.Millisecond
	})
	st := h.store.(tokenkeeper.AuthStore)
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	const nOld = 2500 // more than one batch
	for i := range nOld {
		r := &tokenkeeper.AuditRecord{Time: old.Add(time.Duration(i) * time.Millisecond), Actor: "apikey:old", Action: "token.read", Target: fmt.Sprint(i)}
		if err := st.AddAudit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	recent := &tokenkeeper.AuditRecord{Time: time.Now().Add(-23 * time.Hour), Actor: "apikey:recent", Action: "apikey.create"}
	if err := st.AddAudit(ctx, recent); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Serving goes on while the pruner works.
		if r := h.do("GET", "/v1/credentials", h.admin, nil); r.status != http.StatusOK {
			t.Fatalf("list during pruning: %d %s", r.status, r.body)
		}
		_, actions := auditCount(t, st)
		if actions["token.read  apikey:old"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d old records still there after 20 s", actions["token.read  apikey:old"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs, err := st.Audit(ctx, tokenkeeper.AuditFilter{Actor: "apikey:recent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != recent.ID {
		t.Fatalf("the record younger than the retention is gone: %+v", recs)
	}
}

// M3 (store part): a flood of refreshes does not erase a credential's
// operator events, and the events list filters by kind.
func TestRefreshesDoNotEraseOperatorEvents(t *testing.T) {
	h := newHarness(t)
	h.create(h.ccCredential("busy"))
	ctx := context.Background()
	for i := range 150 { // past the default cap of 100 refresh events
		ev := &tokenkeeper.Event{CredentialName: "busy", Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK, Actor: "refresher:x"}
		if err := h.store.AddEvent(ctx, ev); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	kinds := func(query string) map[string]int {
		t.Helper()
		r := h.do("GET", "/v1/credentials/busy/events"+query, h.admin, nil)
		if r.status != http.StatusOK {
			t.Fatalf("events%s: %d %s", query, r.status, r.body)
		}
		m := map[string]int{}
		for _, e := range r.json(t)["events"].([]any) {
			m[e.(map[string]any)["kind"].(string)]++
		}
		return m
	}
	if got := kinds("?kind=operator&limit=1000"); got[tokenkeeper.EventCreated] != 1 || got[tokenkeeper.EventRefresh] != 0 {
		t.Fatalf("operator events: %v; want the created event and no refresh", got)
	}
	if got := kinds("?kind=refresh&limit=1000"); got[tokenkeeper.EventRefresh] != 100 || len(got) != 1 {
		t.Fatalf("refresh events: %v; want the newest 100 refreshes only", got)
	}
	if got := kinds("?limit=1000"); got[tokenkeeper.EventRefresh] != 100 || got[tokenkeeper.EventCreated] != 1 {
		t.Fatalf("all events: %v", got)
	}
	if r := h.do("GET", "/v1/credentials/busy/events?kind=bogus", h.admin, nil); r.status != http.StatusBadRequest {
		t.Fatalf("kind=bogus: %d %s", r.status, r.body)
	}
}

// M2: POST /v1/users/{name}/revoke-sessions (fresh admin) ends every
// session of the user; changing the password does too.
func TestRevokeSessionsEndpoint(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/v1/users", h.admin, map[string]any{"username": "ann", "password": "ann's long password", "role": "admin"})
	login := func() (access, refresh string) {
		t.Helper()
		r := h.do("POST", "/v1/auth/login", "", map[string]any{"username": "ann", "password": "ann's long password"})
		if r.status != http.StatusOK {
			t.Fatalf("login: %d %s", r.status, r.body)
		}
		j := r.json(t)
		return j["access_token"].(string), j["refresh_token"].(string)
	}
	access, refreshTok := login()
	other, _ := login()
	stale := h.staleAdmin() // a session obtained by refresh is not fresh
	if r := h.do("POST", "/v1/users/ann/revoke-sessions", stale, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("revoke-sessions with a stale session: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/v1/users/ann/revoke-sessions", other, nil); r.status != http.StatusOK || r.json(t)["revoked_sessions"] != float64(2) {
		t.Fatalf("revoke-sessions: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/v1/auth/whoami", access, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("access token after revoke-sessions: %d", r.status)
	}
	if r := h.do("POST", "/v1/auth/refresh", "", map[string]any{"refresh_token": refreshTok}); r.status != http.StatusUnauthorized {
		t.Fatalf("refresh token after revoke-sessions: %d", r.status)
	}
	if r := h.do("POST", "/v1/users/nobody/revoke-sessions", h.admin, nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown user: %d", r.status)
	}
	time.Sleep(5 * time.Millisecond) // the next login begins after the revocation
	access, _ = login()
	if r := h.do("PUT", "/v1/users/ann/password", h.admin, map[string]any{"password": "ann's new long password"}); r.status != http.StatusNoContent {
		t.Fatalf("password: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/v1/auth/whoami", access, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("access token after a password change: %d", r.status)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		recs, err := h.store.(tokenkeeper.AuthStore).Audit(context.Background(), tokenkeeper.AuditFilter{Action: "user.revoke_sessions"})
		if err == nil && len(recs) == 1 && recs[0].Target == "ann" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record of revoke-sessions: %v, %v", recs, err)
		}
	}
}

// L2: params named like secrets are sealed at rest, shown as "<sealed>",
// sent to the token endpoint as they are, kept when "<sealed>" is sent
// back, and never logged.
func TestSecretParamsSealedAndNeverShown(t *testing.T) {
	h := newHarness(t)
	rec := newRecorder(t)
	assertion := randomSecret()
	body := map[string]any{"name": "jwt", "token_url": rec.TokenURL(), "grant_type": "client_credentials",
		"client_id": "app", "client_secret": h.secret,
		"params": map[string]string{"client_assertion": assertion, "audience": "https://api.example"}}
	h.create(body)
	shown := func() map[string]any {
		t.Helper()
		r := h.do("GET", "/v1/credentials/jwt", h.admin, nil)
		if r.status != http.StatusOK || strings.Contains(string(r.body), assertion) {
			t.Fatalf("get: %d, secret param shown: %v", r.status, strings.Contains(string(r.body), assertion))
		}
		return r.json(t)["params"].(map[string]any)
	}
	if p := shown(); p["client_assertion"] != tokenkeeper.SealedParamValue || p["audience"] != "https://api.example" {
		t.Fatalf("params shown: %v", p)
	}
	if r := h.do("GET", "/v1/credentials", h.admin, nil); strings.Contains(string(r.body), assertion) {
		t.Fatal("the list shows a secret param")
	}
	// The provider gets the real value.
	if r := h.do("POST", "/v1/credentials/jwt/refresh", h.admin, nil); r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if !strings.Contains(rec.seen(), "client_assertion="+assertion) {
		t.Fatal("the token endpoint did not get the assertion")
	}
	// Sending back what GET showed keeps the stored value.
	p := shown()
	p["audience"] = "https://api2.example"
	if r := h.do("PATCH", "/v1/credentials/jwt", h.admin, map[string]any{"params": p}); r.status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	c, err := h.store.Credential(context.Background(), "jwt")
	if err != nil || c.Params["client_assertion"] != assertion || c.Params["audience"] != "https://api2.example" {
		t.Fatalf("after a patch with %q: %v", tokenkeeper.SealedParamValue, err)
	}
	// "<sealed>" with nothing to keep is refused.
	if r := h.do("PATCH", "/v1/credentials/jwt", h.admin, map[string]any{"params": map[string]string{"new_token": tokenkeeper.SealedParamValue}}); r.status != http.StatusBadRequest {
		t.Fatalf("patch with a placeholder for a new param: %d %s", r.status, r.body)
	}
	// Moving to another host, "<sealed>" cannot carry a secret param over...
	other := newRecorder(t)
	if r := h.do("PATCH", "/v1/credentials/jwt", h.admin, map[string]any{"token_url": other.TokenURL(), "client_secret": h.secret,
		"params": map[string]string{"client_assertion": tokenkeeper.SealedParamValue}}); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "another host") {
		t.Fatalf("move with a placeholder: %d %s", r.status, r.body)
	}
	// ...and a move without params drops the stored secret ones (H1's rule).
	if r := h.do("PATCH", "/v1/credentials/jwt", h.admin, map[string]any{"token_url": other.TokenURL(), "client_secret": h.secret}); r.status != http.StatusOK {
		t.Fatalf("move: %d %s", r.status, r.body)
	}
	if p := shown(); p["client_assertion"] != nil || p["audience"] != "https://api2.example" {
		t.Fatalf("params after a host change: %v", p)
	}
	if r := h.do("POST", "/v1/credentials/jwt/refresh", h.admin, nil); r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if strings.Contains(other.seen(), assertion) {
		t.Fatal("the assertion was sent to the new host")
	}
	if strings.Contains(h.logs.String(), assertion) {
		t.Fatal("a secret param reached the logs")
	}
}
