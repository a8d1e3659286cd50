package http_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// noFollow does not follow redirects: the tests look at each hop.
var noFollow = &http.Client{Timeout: 20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (h *harness) get(rawURL string) *response {
	h.t.Helper()
	resp, err := noFollow.Get(rawURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: data}
}

// connectProvider creates provider "idp" with the endpoints of the
// authorization code and device flows.
func (h *harness) connectProvider(scopes ...string) {
	h.t.Helper()
	p := h.provider("idp")
	p["device_authorization_url"] = h.idp.DeviceAuthorizationURL()
	if len(scopes) > 0 {
		p["scopes"] = scopes
	}
	if r := h.do("POST", "/v1/providers", h.admin, p); r.status != http.StatusCreated {
		h.t.Fatalf("create provider: %d %s", r.status, r.body)
	}
}

// startConnect creates a connect session and returns its id and link.
func (h *harness) startConnect(body map[string]any) (string, string) {
	h.t.Helper()
	r := h.do("POST", "/v1/connect/sessions", h.admin, body)
	if r.status != http.StatusCreated {
		h.t.Fatalf("create connect session: %d %s", r.status, r.body)
	}
	m := r.json(h.t)
	return m["id"].(string), m["url"].(string)
}

// authorize opens link and lets oauthtest (approving at once) answer:
// it returns the callback URL the provider sends the browser to.
func (h *harness) authorize(link string) string {
	h.t.Helper()
	r := h.get(link)
	if r.status != http.StatusFound {
		h.t.Fatalf("open link: %d %s", r.status, r.body)
	}
	r = h.get(r.header.Get("Location"))
	if r.status != http.StatusFound {
		h.t.Fatalf("authorize: %d %s", r.status, r.body)
	}
	return r.header.Get("Location")
}

func (h *harness) session(id string) map[string]any {
	h.t.Helper()
	r := h.do("GET", "/v1/connect/sessions/"+id, h.admin, nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("get session: %d %s", r.status, r.body)
	}
	return r.json(h.t)
}

func (h *harness) waitSession(id string) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := h.session(id)
		if s["status"] != tokenkeeper.ConnectPending || time.Now().After(deadline) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConnectAuthorizationCode: a connect link leads through the provider
// to the callback, which exchanges the code once with the PKCE verifier and
// stores the grant; the credential is active and its token accepted; the
// link and the callback URL are refused when used again, changing nothing;
// two refreshes later it is still active with no reuse detected.
func TestConnectAuthorizationCode(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithRotation(true), oauthtest.WithReuseDetection(0))
	h.connectProvider()
	id, link := h.startConnect(map[string]any{"provider": "idp", "name": "alice", "end_user_id": "user-1"})
	token := strings.TrimPrefix(link, h.url+"/connect/")
	if token == link || len(token) < 43 {
		t.Fatalf("link %q: want %s/connect/ and at least 256 bits", link, h.url)
	}
	if s := h.session(id); s["status"] != "pending" || s["credential"] != "alice" || s["reconnect"] != false {
		t.Fatalf("new session: %v", s)
	}
	cb := h.authorize(link)
	u, _ := url.Parse(cb)
	if u.Path != "/connect/callback" || u.Query().Get("code") == "" || u.Query().Get("iss") == "" {
		t.Fatalf("callback URL %s", u.Path)
	}
	code, state := u.Query().Get("code"), u.Query().Get("state")
	r := h.get(cb)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "Connected") || strings.Contains(string(r.body), code) {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	if s := h.session(id); s["status"] != "connected" {
		t.Fatalf("session after the callback: %v", s)
	}
	c, err := h.store.Credential(context.Background(), "alice")
	if err != nil || c.Status != tokenkeeper.StatusActive || c.RefreshToken == "" || c.EndUserID != "user-1" || c.Provider != "idp" {
		t.Fatalf("credential: %+v, %v", c, err)
	}
	tr := h.do("GET", "/v1/credentials/alice/token", h.admin, nil)
	at, _ := tr.json(t)["access_token"].(string)
	if tr.status != http.StatusOK || !h.idp.ValidAccessToken(at) {
		t.Fatalf("token: %d %s", tr.status, tr.body)
	}

	// Used again: the callback URL and the link are refused; nothing changes.
	before := c.Version
	if r := h.get(cb); r.status != http.StatusConflict || !strings.Contains(string(r.body), "used already") {
		t.Fatalf("replayed callback: %d %s", r.status, r.body)
	}
	if r := h.get(link); r.status != http.StatusConflict {
		t.Fatalf("used link: %d %s", r.status, r.body)
	}
	if c2, _ := h.store.Credential(context.Background(), "alice"); c2.Version != before || c2.RefreshToken != c.RefreshToken {
		t.Fatal("a replay changed the credential")
	}
	st := h.idp.Stats()
	if st.TokenRequests["authorization_code"] != 1 || st.CodeReuses != 0 {
		t.Fatalf("code exchanges %d, reuses %d", st.TokenRequests["authorization_code"], st.CodeReuses)
	}

	// Two refreshes later: still active, no reuse detected.
	for i := 0; i < 2; i++ {
		if r := h.do("POST", "/v1/credentials/alice/refresh", h.admin, map[string]any{"rejected_token": at}); r.status != http.StatusOK {
			t.Fatalf("refresh %d: %d %s", i, r.status, r.body)
		}
		at, _ = h.do("GET", "/v1/credentials/alice/token", h.admin, nil).json(t)["access_token"].(string)
	}
	c, _ = h.store.Credential(context.Background(), "alice")
	if st := h.idp.Stats(); c.Status != tokenkeeper.StatusActive || st.ReuseDetections != 0 || st.TokenRequests["refresh_token"] < 2 || !h.idp.ValidAccessToken(at) {
		t.Fatalf("after two refreshes: %s, reuse %d, refreshes %d", c.Status, st.ReuseDetections, st.TokenRequests["refresh_token"])
	}
	// Nothing secret in the logs: the link token, state, code, verifier
	// (its challenge went to the provider), tokens.
	cs, _ := h.store.ConnectSession(context.Background(), id)
	logs := h.logs.String()
	for what, v := range map[string]string{"link token": token, "state": state, "code": code, "refresh token": c.RefreshToken, "access token": at} {
		if strings.Contains(logs, v) {
			t.Errorf("the %s is in the logs", what)
		}
	}
	if cs.CodeVerifier != "" {
		t.Error("the verifier is kept after the session ended")
	}
}

// TestConnectFailures: each bad input gets a clear page or problem and
// changes nothing; failures are recorded on the session.
func TestConnectFailures(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.connectProvider()
	noCred := func(name string) {
		t.Helper()
		if _, err := h.store.Credential(context.Background(), name); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
			t.Fatalf("credential %s exists after a failure: %v", name, err)
		}
	}
	failed := func(id, reason string) {
		t.Helper()
		s := h.session(id)
		evs, _ := s["events"].([]any)
		last, _ := evs[len(evs)-1].(map[string]any)
		if s["status"] != "failed" || s["reason"] != reason || last["error_code"] != reason {
			t.Fatalf("session: %v", s)
		}
	}

	t.Run("access_denied", func(t *testing.T) {
		id, link := h.startConnect(map[string]any{"provider": "idp", "name": "denied"})
		u, _ := url.Parse(h.authorize(link))
		q := url.Values{"error": {"access_denied"}, "state": {u.Query().Get("state")}, "iss": {u.Query().Get("iss")}}
		r := h.get(h.url + "/connect/callback?" + q.Encode())
		if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "Access denied") {
			t.Fatalf("denied: %d %s", r.status, r.body)
		}
		failed(id, "access_denied")
		noCred("denied")
	})
	t.Run("refused code", func(t *testing.T) {
		id, link := h.startConnect(map[string]any{"provider": "idp", "name": "refused"})
		u, _ := url.Parse(h.authorize(link))
		q := u.Query()
		q.Set("code", "not-the-code")
		if r := h.get(h.url + "/connect/callback?" + q.Encode()); r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "refused the authorization code") {
			t.Fatalf("refused code: %d %s", r.status, r.body)
		}
		failed(id, "invalid_grant")
		noCred("refused")
	})
	t.Run("wrong issuer", func(t *testing.T) {
		id, link := h.startConnect(map[string]any{"provider": "idp", "name": "mixup"})
		u, _ := url.Parse(h.authorize(link))
		exchanges := h.idp.Stats().TokenRequests["authorization_code"]
		q := u.Query()
		q.Set("iss", "https://attacker.example")
		if r := h.get(h.url + "/connect/callback?" + q.Encode()); r.status != http.StatusBadRequest {
			t.Fatalf("wrong iss: %d %s", r.status, r.body)
		}
		failed(id, "issuer_mismatch")
		noCred("mixup")
		if n := h.idp.Stats().TokenRequests["authorization_code"]; n != exchanges {
			t.Fatalf("a code was exchanged: %d, %d before", n, exchanges)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		r := h.get(h.url + "/connect/callback?code=x&state=" + strings.Repeat("A", 43))
		if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "Unknown connect session") {
			t.Fatalf("unknown state: %d %s", r.status, r.body)
		}
		if r := h.get(h.url + "/connect/" + strings.Repeat("B", 43)); r.status != http.StatusNotFound {
			t.Fatalf("unknown link: %d %s", r.status, r.body)
		}
		if r := h.get(h.url + "/connect/callback?code=x"); r.status != http.StatusBadRequest {
			t.Fatalf("no state: %d %s", r.status, r.body)
		}
		if r := h.do("GET", "/v1/connect/sessions/nope", h.admin, nil); r.status != http.StatusNotFound || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("unknown session id: %d %s", r.status, r.body)
		}
	})
	t.Run("expired", func(t *testing.T) {
		id, link := h.startConnect(map[string]any{"provider": "idp", "name": "late"})
		h.skew.Store(int64(31 * time.Minute))
		defer h.skew.Store(0)
		if r := h.get(link); r.status != http.StatusGone || !strings.Contains(string(r.body), "expired") {
			t.Fatalf("expired link: %d %s", r.status, r.body)
		}
		failed(id, "expired")
		noCred("late")
	})
	t.Run("return_to", func(t *testing.T) {
		r := h.do("POST", "/v1/connect/sessions", h.admin, map[string]any{"provider": "idp", "name": "x", "return_to": "https://evil.example/steal"})
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "allow-list") {
			t.Fatalf("return_to off the list: %d %s", r.status, r.body)
		}
		r = h.do("POST", "/v1/connect/sessions", h.admin, map[string]any{"provider": "idp", "name": "x", "return_to": "https://app.example/oauth/done-not"})
		if r.status != http.StatusBadRequest {
			t.Fatalf("return_to beside the listed path: %d %s", r.status, r.body)
		}
		_, link := h.startConnect(map[string]any{"provider": "idp", "name": "back", "return_to": connectReturnTo + "/42?tab=1"})
		r = h.get(h.authorize(link))
		loc, _ := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc.Host != "app.example" || loc.Path != "/oauth/done/42" || loc.Query().Get("status") != "connected" ||
			loc.Query().Get("credential") != "back" || loc.Query().Get("tab") != "1" {
			t.Fatalf("return_to redirect: %d %s", r.status, r.header.Get("Location"))
		}
	})
	t.Run("unknown provider", func(t *testing.T) {
		if r := h.do("POST", "/v1/connect/sessions", h.admin, map[string]any{"provider": "nope"}); r.status != http.StatusNotFound {
			t.Fatalf("unknown provider: %d %s", r.status, r.body)
		}
	})
	t.Run("delete provider in use", func(t *testing.T) {
		h.startConnect(map[string]any{"provider": "idp", "name": "pending"})
		r := h.do("DELETE", "/v1/providers/idp", h.admin, nil)
		if r.status != http.StatusConflict || !strings.Contains(string(r.body), "credential") {
			t.Fatalf("delete provider in use: %d %s", r.status, r.body)
		}
		if _, err := h.store.Provider(context.Background(), "idp"); err != nil {
			t.Fatal("the provider is gone")
		}
	})
}

// TestConnectProviderUnreachable: the provider's token endpoint is down at
// the callback; the session fails, nothing is stored.
func TestConnectProviderUnreachable(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.connectProvider()
	id, link := h.startConnect(map[string]any{"provider": "idp", "name": "down"})
	cb := h.authorize(link)
	h.idp.Close()
	if r := h.get(cb); r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "could not be reached") {
		t.Fatalf("unreachable: %d %s", r.status, r.body)
	}
	if s := h.session(id); s["status"] != "failed" || s["reason"] != "provider_unreachable" {
		t.Fatalf("session: %v", s)
	}
	if _, err := h.store.Credential(context.Background(), "down"); err == nil {
		t.Fatal("a credential was stored")
	}
}

// TestConnectNoRefreshToken: a provider that issues refresh tokens only
// for offline_access answers without one; the session fails.
func TestConnectNoRefreshToken(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithOfflineAccessRequired(true))
	h.connectProvider("read")
	id, link := h.startConnect(map[string]any{"provider": "idp", "name": "online"})
	if r := h.get(h.authorize(link)); r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "no refresh token") {
		t.Fatalf("no refresh token: %d %s", r.status, r.body)
	}
	if s := h.session(id); s["reason"] != "no_refresh_token" {
		t.Fatalf("session: %v", s)
	}
	// With offline_access it works.
	_, link = h.startConnect(map[string]any{"provider": "idp", "name": "offline", "scopes": []string{"read", "offline_access"}})
	if r := h.get(h.authorize(link)); r.status != http.StatusOK {
		t.Fatalf("with offline_access: %d %s", r.status, r.body)
	}
}

// TestConnectConcurrentCallbacks: two callbacks for the same session at the
// same instant store one grant and present the code once.
func TestConnectConcurrentCallbacks(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.connectProvider()
	for round := 0; round < 5; round++ {
		name := "twin" + string(rune('a'+round))
		_, link := h.startConnect(map[string]any{"provider": "idp", "name": name})
		cb := h.authorize(link)
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		start := make(chan struct{})
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := noFollow.Get(cb)
				if err == nil {
					statuses[i] = resp.StatusCode
					resp.Body.Close()
				}
			}()
		}
		close(start)
		wg.Wait()
		ok, conflict := 0, 0
		for _, st := range statuses {
			switch st {
			case http.StatusOK:
				ok++
			case http.StatusConflict:
				conflict++
			}
		}
		if ok != 1 || conflict != 1 {
			t.Fatalf("round %d: statuses %v", round, statuses)
		}
	}
	if st := h.idp.Stats(); st.TokenRequests["authorization_code"] != 5 || st.CodeReuses != 0 || st.FamiliesStarted != 5 {
		t.Fatalf("code exchanges %d, reuses %d, families %d", st.TokenRequests["authorization_code"], st.CodeReuses, st.FamiliesStarted)
	}
}

// TestConnectReconnect: a credential whose grant the provider revoked
// (needs_reauth) gets a new grant in place: same id and name, old events
// kept, status active.
func TestConnectReconnect(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.connectProvider()
	_, link := h.startConnect(map[string]any{"provider": "idp", "name": "bob"})
	if r := h.get(h.authorize(link)); r.status != http.StatusOK {
		t.Fatalf("connect: %d %s", r.status, r.body)
	}
	old, _ := h.store.Credential(context.Background(), "bob")
	h.idp.RevokeAll()
	h.do("POST", "/v1/credentials/bob/refresh", h.admin, map[string]any{"rejected_token": old.Token.AccessToken})
	c, _ := h.store.Credential(context.Background(), "bob")
	if c.Status != tokenkeeper.StatusNeedsReauth {
		t.Fatalf("after the revocation: %s", c.Status)
	}
	oldEvents, _ := h.store.Events(context.Background(), "bob", 100)
	id, link := h.startConnect(map[string]any{"provider": "idp", "name": "bob"})
	if s := h.session(id); s["reconnect"] != true {
		t.Fatalf("session: %v", s)
	}
	if r := h.get(h.authorize(link)); r.status != http.StatusOK || !strings.Contains(string(r.body), "Reconnected") {
		t.Fatalf("reconnect: %d %s", r.status, r.body)
	}
	c, _ = h.store.Credential(context.Background(), "bob")
	if c.ID != old.ID || c.Status != tokenkeeper.StatusActive || c.RefreshToken == old.RefreshToken || !h.idp.ValidAccessToken(c.Token.AccessToken) {
		t.Fatalf("after the reconnect: %+v", c.Status)
	}
	evs, _ := h.store.Events(context.Background(), "bob", 100)
	if len(evs) <= len(oldEvents) {
		t.Fatalf("events: %d before, %d after", len(oldEvents), len(evs))
	}
	kept := map[int64]bool{}
	for _, e := range evs {
		kept[e.ID] = true
	}
	for _, e := range oldEvents {
		if !kept[e.ID] {
			t.Fatalf("old event %d (%s) lost", e.ID, e.Kind)
		}
	}
}

// TestConnectDevice: the device flow; the broker polls until the user
// approves, denies, or the code expires.
func TestConnectDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("polls at the provider's 1 s interval for a few seconds")
	}
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithDeviceInterval(time.Second),
		oauthtest.WithDeviceCodeLifetime(4*time.Second), oauthtest.WithOIDC(true), oauthtest.WithEndUser("sub-carol", "carol@example.com"))
	h.connectProvider("read", "openid", "email")
	start := func(name string) (string, string) {
		r := h.do("POST", "/v1/connect/device", h.admin, map[string]any{"provider": "idp", "name": name})
		if r.status != http.StatusCreated {
			t.Fatalf("device: %d %s", r.status, r.body)
		}
		m := r.json(t)
		if m["verification_uri"] != h.idp.VerificationURL() || m["expires_at"] == nil {
			t.Fatalf("device answer: %s", r.body)
		}
		return m["id"].(string), m["user_code"].(string)
	}
	id, code := start("carol")
	if err := h.idp.ApproveDevice(code); err != nil {
		t.Fatal(err)
	}
	if s := h.waitSession(id); s["status"] != "connected" {
		t.Fatalf("approved: %v", s)
	}
	c, err := h.store.Credential(context.Background(), "carol")
	if err != nil || c.Status != tokenkeeper.StatusActive || c.EndUserEmail != "carol@example.com" || c.EndUserID != "sub-carol" {
		t.Fatalf("credential: %v %v", c, err)
	}
	id, code = start("dave")
	if err := h.idp.DenyDevice(code); err != nil {
		t.Fatal(err)
	}
	if s := h.waitSession(id); s["status"] != "failed" || s["reason"] != "access_denied" {
		t.Fatalf("denied: %v", s)
	}
	id, _ = start("erin")
	if s := h.waitSession(id); s["status"] != "failed" || s["reason"] != "expired_token" {
		t.Fatalf("expired: %v", s)
	}
	for _, n := range []string{"dave", "erin"} {
		if _, err := h.store.Credential(context.Background(), n); err == nil {
			t.Fatalf("credential %s stored", n)
		}
	}
	if strings.Contains(h.logs.String(), c.RefreshToken) || strings.Contains(h.logs.String(), c.Token.AccessToken) {
		t.Fatal("a token is in the logs")
	}
}

// TestConnectOIDC: the ID token of an OpenID Connect provider is verified
// (issuer, keys, audience, nonce) and names the end user.
func TestConnectOIDC(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithOIDC(true), oauthtest.WithEndUser("sub-frank", "frank@example.com"))
	h.connectProvider("read", "openid", "email")
	_, link := h.startConnect(map[string]any{"provider": "idp", "name": "frank"})
	r := h.get(h.authorize(link))
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "frank@example.com") {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	c, _ := h.store.Credential(context.Background(), "frank")
	if c.EndUserEmail != "frank@example.com" || c.EndUserID != "sub-frank" {
		t.Fatalf("end user: %q %q", c.EndUserID, c.EndUserEmail)
	}
}

// TestConnectLogsNoSecrets captures the debug logs of the broker and of the
// provider through a full connect flow and a full device flow and finds no
// link token, state, code, PKCE verifier, device code, token or secret.
func TestConnectLogsNoSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("the device flow polls at a 1 s interval")
	}
	h := newHarness(t, oauthtest.WithLifetime(time.Hour), oauthtest.WithDeviceInterval(time.Second), oauthtest.WithOIDC(true))
	h.connectProvider("read", "openid", "email")
	var secrets []string
	id, link := h.startConnect(map[string]any{"provider": "idp", "name": "logged"})
	cs, err := h.store.ConnectSession(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, strings.TrimPrefix(link, h.url+"/connect/"), cs.CodeVerifier)
	cb := h.authorize(link)
	u, _ := url.Parse(cb)
	secrets = append(secrets, u.Query().Get("code"), u.Query().Get("state"))
	if r := h.get(cb); r.status != http.StatusOK {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	r := h.do("POST", "/v1/connect/device", h.admin, map[string]any{"provider": "idp", "name": "logged-device"})
	d := r.json(t)
	dcs, err := h.store.ConnectSession(context.Background(), d["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, dcs.DeviceCode)
	if err := h.idp.ApproveDevice(d["user_code"].(string)); err != nil {
		t.Fatal(err)
	}
	if s := h.waitSession(dcs.ID); s["status"] != "connected" {
		t.Fatalf("device session: %v", s)
	}
	for _, name := range []string{"logged", "logged-device"} {
		c, err := h.store.Credential(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, c.RefreshToken, c.Token.AccessToken, c.ClientSecret)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "connect session connected") || !strings.Contains(logs, "level=DEBUG") {
		t.Fatalf("the logs lack the flow or debug records:\n%s", logs)
	}
	for i, s := range secrets {
		if s == "" {
			t.Fatalf("secret %d is empty", i)
		}
		if strings.Contains(logs, s) {
			t.Errorf("secret %d is in the logs", i)
		}
	}
}

// TestConnectSessionExpiresUnused: a session nobody opened reads as failed
// with reason expired once past its expiry.
func TestConnectSessionExpiresUnused(t *testing.T) {
	// The server's clock moves by hand: a session read under a loaded
	// machine must not expire on the wall clock before the first read.
	var skew atomic.Int64
	h := newHarnessWith(t, func(c *tkhttp.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	}, oauthtest.WithLifetime(time.Hour))
	h.connectProvider()
	cs := &tokenkeeper.ConnectSession{Kind: tokenkeeper.ConnectAuthorizationCode, Provider: "idp", CredentialName: "never",
		LinkHash: strings.Repeat("a", 64), StateHash: strings.Repeat("b", 64), CodeVerifier: strings.Repeat("v", 43),
		ExpiresAt: time.Now().Add(10 * time.Minute)}
	if err := h.store.CreateConnectSession(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	if s := h.session(cs.ID); s["status"] != "pending" {
		t.Fatalf("fresh session: %v", s)
	}
	skew.Store(int64(10*time.Minute + time.Second))
	if s := h.session(cs.ID); s["status"] != "failed" || s["reason"] != "expired" {
		t.Fatalf("expired session: %v", s)
	}
	// It stays failed when the clock is back: the expiry was written.
	skew.Store(0)
	if s := h.session(cs.ID); s["status"] != "failed" || s["reason"] != "expired" {
		t.Fatalf("expired session, read again: %v", s)
	}
}

// TestConnectWebhooks: a connected session writes credential.connected and
// a failed one connect_session.failed, in the transactions that commit
// them, with no secret in the payload.
func TestConnectWebhooks(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.connectProvider()
	ws, ok := h.store.(tokenkeeper.WebhookStore)
	if !ok {
		t.Fatalf("%T keeps no webhooks", h.store)
	}
	ep := &tokenkeeper.WebhookEndpoint{URL: "https://hooks.example/tk", Secret: "whsec_" + strings.Repeat("a", 43),
		Events: []string{tokenkeeper.WebhookCredentialConnected, tokenkeeper.WebhookConnectSessionFailed}}
	if err := ws.CreateWebhookEndpoint(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	_, link := h.startConnect(map[string]any{"provider": "idp", "name": "hooked", "end_user_id": "u-9"})
	if r := h.get(h.authorize(link)); r.status != http.StatusOK {
		t.Fatalf("connect: %d %s", r.status, r.body)
	}
	_, link = h.startConnect(map[string]any{"provider": "idp", "name": "hook-denied", "end_user_id": "u-10"})
	u, _ := url.Parse(h.authorize(link))
	q := url.Values{"error": {"access_denied"}, "state": {u.Query().Get("state")}}
	h.get(h.url + "/connect/callback?" + q.Encode())
	ds, err := ws.WebhookDeliveries(context.Background(), ep.ID, 10)
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries: %d, %v", len(ds), err)
	}
	c, _ := h.store.Credential(context.Background(), "hooked")
	got := string(ds[0].Payload) + string(ds[1].Payload)
	if !strings.Contains(got, tokenkeeper.WebhookCredentialConnected) || !strings.Contains(got, tokenkeeper.WebhookConnectSessionFailed) ||
		!strings.Contains(got, "access_denied") || !strings.Contains(got, `"hooked"`) {
		t.Fatalf("payloads: %s", got)
	}
	if strings.Contains(got, c.RefreshToken) || strings.Contains(got, c.Token.AccessToken) || strings.Contains(got, h.secret) {
		t.Fatal("a secret is in a webhook payload")
	}
}
