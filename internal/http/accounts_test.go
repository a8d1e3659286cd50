package http_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

type loginAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

func (h *harness) addUser(name, password string, role tokenkeeper.Role) {
	h.t.Helper()
	if _, err := h.auth.CreateUser(context.Background(), name, password, role); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) login(name, password string) loginAnswer {
	h.t.Helper()
	r := h.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": password})
	if r.status != http.StatusOK {
		h.t.Fatalf("login %s: %d %s", name, r.status, r.body)
	}
	m := r.json(h.t)
	return loginAnswer{AccessToken: m["access_token"].(string), RefreshToken: m["refresh_token"].(string),
		TokenType: m["token_type"].(string), ExpiresIn: int64(m["expires_in"].(float64))}
}

func (h *harness) refreshLogin(rt string) (*response, loginAnswer) {
	r := h.do("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": rt})
	var a loginAnswer
	if r.status == http.StatusOK {
		m := r.json(h.t)
		a = loginAnswer{AccessToken: m["access_token"].(string), RefreshToken: m["refresh_token"].(string)}
	}
	return r, a
}

// matrixCaller is one kind of caller: how it authenticates.
type matrixCaller struct {
	name   string
	header string // the whole Authorization header; "" for none
	kind   string // admin, admin-stale, viewer, consumer, client, none
}

// TestAuthorizationMatrix calls every endpoint as every kind of caller and
// checks each answer's status.
func TestAuthorizationMatrix(t *testing.T) {
	h := newHarness(t, oauthtest.WithLifetime(time.Hour))
	h.create(h.ccCredential("cred"))
	consumer := h.consumerKey("cred")
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	h.addUser("victor", "viewer password 1", tokenkeeper.RoleViewer)
	fresh := h.login("alice", "correct horse battery")
	_, stale := h.refreshLogin(h.login("alice", "correct horse battery").RefreshToken)
	viewer := h.login("victor", "viewer password 1")
	revoked := h.login("alice", "correct horse battery")
	if r := h.do("POST", "/v1/auth/logout", revoked.AccessToken, nil); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	// An expired token: minted by a service whose clock is 20 minutes behind.
	past := func() time.Time { return time.Now().Add(-20 * time.Minute) }
	oldSvc, err := auth.New(context.Background(), auth.Config{Store: h.store.(tokenkeeper.AuthStore), Now: past,
		PasswordParams: auth.Argon2Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	oldToks, err := oldSvc.Login(context.Background(), "alice", "correct horse battery", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	clientSecret, _, err := h.auth.CreateServiceClient(context.Background(), "billing", []string{"cred"})
	if err != nil {
		t.Fatal(err)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("billing:"+clientSecret))

	callers := []matrixCaller{
		{"admin api key", "Bearer " + h.admin, "admin"},
		{"admin user, fresh", "Bearer " + fresh.AccessToken, "admin"},
		{"admin user, not fresh", "Bearer " + stale.AccessToken, "admin-stale"},
		{"viewer user", "Bearer " + viewer.AccessToken, "viewer"},
		{"consumer api key", "Bearer " + consumer, "consumer"},
		{"service client", basic, "client"},
		{"expired access token", "Bearer " + oldToks.AccessToken, "none"},
		{"revoked access token", "Bearer " + revoked.AccessToken, "none"},
		{"refresh token as access token", "Bearer " + fresh.RefreshToken, "none"},
		{"garbage", "Bearer not-a-token", "none"},
		{"no credentials", "", "none"},
	}

	n := 0
	uniq := func() string { n++; return fmt.Sprintf("x%d", n) }
	type endpoint struct {
		name      string
		sensitive bool                    // needs a fresh caller
		roles     []string                // caller kinds allowed (before freshness)
		ok        int                     // status when allowed
		setup     func() (string, string) // method and path
		body      func() any
	}
	admin := []string{"admin"}
	adminViewer := []string{"admin", "viewer"}
	reader := []string{"admin", "consumer"}
	endpoints := []endpoint{
		{"list credentials", false, adminViewer, 200, func() (string, string) { return "GET", "/v1/credentials" }, nil},
		{"show credential", false, adminViewer, 200, func() (string, string) { return "GET", "/v1/credentials/cred" }, nil},
		{"credential events", false, adminViewer, 200, func() (string, string) { return "GET", "/v1/credentials/cred/events" }, nil},
		{"create credential", true, admin, 201, func() (string, string) { return "POST", "/v1/credentials" }, func() any { return h.ccCredential(uniq()) }},
		{"update credential", false, admin, 200, func() (string, string) { return "PATCH", "/v1/credentials/cred" }, func() any { return map[string]any{"refresh_lead": "1m"} }},
		{"change credential scopes", true, admin, 200, func() (string, string) { return "PATCH", "/v1/credentials/cred" }, func() any { return map[string]any{"scopes": []string{"a"}} }},
		{"replace credential secret", true, admin, 200, func() (string, string) { return "PATCH", "/v1/credentials/cred" }, func() any { return map[string]any{"client_secret": h.secret} }},
		{"delete credential", true, admin, 204, func() (string, string) {
			name := uniq()
			h.create(h.ccCredential(name))
			return "DELETE", "/v1/credentials/" + name
		}, nil},
		{"read token", false, reader, 200, func() (string, string) { return "GET", "/v1/credentials/cred/token" }, nil},
		{"force refresh", false, reader, 200, func() (string, string) { return "POST", "/v1/credentials/cred/refresh" }, nil},
		{"create api key", true, admin, 201, func() (string, string) { return "POST", "/v1/apikeys" }, func() any { return map[string]any{"name": uniq(), "role": "admin"} }},
		{"list api keys", false, admin, 200, func() (string, string) { return "GET", "/v1/apikeys" }, nil},
		{"revoke api key", true, admin, 204, func() (string, string) {
			name := uniq()
			if r := h.do("POST", "/v1/apikeys", h.admin, map[string]any{"name": name, "role": "admin"}); r.status != 201 {
				t.Fatalf("setup: %d", r.status)
			}
			return "DELETE", "/v1/apikeys/" + name
		}, nil},
		{"rotate keys", true, admin, 200, func() (string, string) { return "POST", "/v1/keys/rotate" }, nil},
		{"create user", true, admin, 201, func() (string, string) { return "POST", "/v1/users" }, func() any {
			return map[string]any{"username": uniq(), "password": "long enough password", "role": "viewer"}
		}},
		{"list users", false, admin, 200, func() (string, string) { return "GET", "/v1/users" }, nil},
		{"delete user", true, admin, 204, func() (string, string) {
			name := uniq()
			h.addUser(name, "long enough password", tokenkeeper.RoleViewer)
			return "DELETE", "/v1/users/" + name
		}, nil},
		{"set password", true, admin, 204, func() (string, string) {
			name := uniq()
			h.addUser(name, "long enough password", tokenkeeper.RoleViewer)
			return "PUT", "/v1/users/" + name + "/password"
		}, func() any { return map[string]any{"password": "another long password"} }},
		{"create client", true, admin, 201, func() (string, string) { return "POST", "/v1/clients" }, func() any {
			return map[string]any{"client_id": uniq(), "credentials": []string{"cred"}}
		}},
		{"list clients", false, admin, 200, func() (string, string) { return "GET", "/v1/clients" }, nil},
		{"delete client", true, admin, 204, func() (string, string) {
			id := uniq()
			if _, _, err := h.auth.CreateServiceClient(context.Background(), id, []string{"cred"}); err != nil {
				t.Fatal(err)
			}
			return "DELETE", "/v1/clients/" + id
		}, nil},
		{"rotate client secret", true, admin, 200, func() (string, string) {
			id := uniq()
			if _, _, err := h.auth.CreateServiceClient(context.Background(), id, []string{"cred"}); err != nil {
				t.Fatal(err)
			}
			return "POST", "/v1/clients/" + id + "/rotate-secret"
		}, nil},
		{"audit log", false, admin, 200, func() (string, string) { return "GET", "/v1/audit" }, nil},
		{"whoami", false, []string{"admin", "viewer", "consumer"}, 200, func() (string, string) { return "GET", "/v1/auth/whoami" }, nil},
	}
	for _, ep := range endpoints {
		for _, c := range callers {
			t.Run(ep.name+"/"+c.name, func(t *testing.T) {
				kind := c.kind
				allowedKind := kind
				if kind == "admin-stale" {
					allowedKind = "admin"
				}
				var want int
				switch {
				case kind == "none" || kind == "client":
					want = http.StatusUnauthorized
				case !contains(ep.roles, allowedKind):
					want = http.StatusForbidden
					if ep.name == "read token" || ep.name == "force refresh" {
						if kind == "viewer" {
							want = http.StatusForbidden
						}
					}
				case ep.sensitive && kind == "admin-stale":
					want = http.StatusUnauthorized
				default:
					want = ep.ok
				}
				method, path := ep.setup()
				var body any
				if ep.body != nil {
					body = ep.body()
				}
				r := h.doHeader(method, path, c.header, body)
				if r.status != want {
					t.Fatalf("%s %s as %s: %d, want %d: %s", method, path, c.name, r.status, want, r.body)
				}
				if want == http.StatusUnauthorized && kind == "admin-stale" {
					if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_user_authentication"`) ||
						r.json(t)["type"] != "urn:tokenkeeper:problem:fresh_token_required" {
						t.Fatalf("non-fresh refusal without RFC 9470 challenge: %v %s", r.header, r.body)
					}
				}
			})
		}
	}
	// The token endpoint: only the service client gets a token.
	for _, c := range callers {
		r := h.doForm("/oauth2/token", c.header, url.Values{"grant_type": {"client_credentials"}, "scope": {"credential:cred"}})
		want := http.StatusUnauthorized
		if c.kind == "client" {
			want = http.StatusOK
		}
		if r.status != want {
			t.Errorf("/oauth2/token as %s: %d, want %d: %s", c.name, r.status, want, r.body)
		}
		if want == http.StatusUnauthorized && r.json(t)["error"] != "invalid_client" {
			t.Errorf("/oauth2/token as %s: not an RFC 6749 error: %s", c.name, r.body)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (h *harness) doHeader(method, path, header string, body any) *response {
	h.t.Helper()
	key := ""
	if strings.HasPrefix(header, "Bearer ") {
		key = strings.TrimPrefix(header, "Bearer ")
		return h.do(method, path, key, body)
	}
	req, _ := http.NewRequest(method, h.url+path, strings.NewReader(jsonString(body)))
	if header != "" {
		req.Header.Set("Authorization", header)
	}
	req.Header.Set("Content-Type", "application/json")
	return h.send(req)
}

func (h *harness) doForm(path, header string, form url.Values) *response {
	req, _ := http.NewRequest("POST", h.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if header != "" {
		req.Header.Set("Authorization", header)
	}
	return h.send(req)
}

// Reuse of a rotated refresh token revokes the whole family (RFC 9700
// §4.14.2): the reuse gets 401, and so do the family's newer tokens.
func TestRefreshTokenReuseRevokesFamily(t *testing.T) {
	h := newHarness(t)
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	first := h.login("alice", "correct horse battery")
	r, second := h.refreshLogin(first.RefreshToken)
	if r.status != http.StatusOK || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	who := h.do("GET", "/v1/auth/whoami", second.AccessToken, nil).json(t)
	if who["fresh"] != false || who["role"] != "admin" || who["name"] != "alice" {
		t.Fatalf("a refreshed token must not be fresh: %v", who)
	}
	if who := h.do("GET", "/v1/auth/whoami", first.AccessToken, nil).json(t); who["fresh"] != true {
		t.Fatalf("a login token must be fresh: %v", who)
	}
	// Reuse of the rotated first refresh token.
	if r, _ := h.refreshLogin(first.RefreshToken); r.status != http.StatusUnauthorized {
		t.Fatalf("reuse: %d %s", r.status, r.body)
	}
	// The family is gone: the current refresh token and the access tokens too.
	if r, _ := h.refreshLogin(second.RefreshToken); r.status != http.StatusUnauthorized {
		t.Fatalf("family member after reuse: %d %s", r.status, r.body)
	}
	if err := h.auth.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, at := range []string{first.AccessToken, second.AccessToken} {
		if r := h.do("GET", "/v1/auth/whoami", at, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("access token of a revoked family: %d", r.status)
		}
	}
	// A refresh token is never an access token, and the reverse.
	third := h.login("alice", "correct horse battery")
	if r := h.do("GET", "/v1/auth/whoami", third.RefreshToken, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("refresh token accepted as access token: %d", r.status)
	}
	if r, _ := h.refreshLogin(third.AccessToken); r.status != http.StatusUnauthorized {
		t.Fatalf("access token accepted as refresh token: %d", r.status)
	}
}

// A non-fresh token is refused on every sensitive endpoint and accepted on
// the others (the matrix covers each endpoint; this checks the answer shape).
func TestLoginErrorsAndRateLimit(t *testing.T) {
	h := newHarness(t)
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	wrongPw := h.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "nope nope nope"})
	noUser := h.do("POST", "/v1/auth/login", "", map[string]string{"username": "mallory", "password": "nope nope nope"})
	if wrongPw.status != 401 || noUser.status != 401 || string(wrongPw.body) != string(noUser.body) {
		t.Fatalf("unknown user and wrong password answer differently: %d %s / %d %s", wrongPw.status, wrongPw.body, noUser.status, noUser.body)
	}
	for _, body := range []any{`{"username":"alice"}`, `{"username":"alice","password":"x","extra":1}`, `not json`, ``} {
		if r := h.do("POST", "/v1/auth/login", "", body); r.status != 400 {
			t.Fatalf("bad login body %v: %d %s", body, r.status, r.body)
		}
	}
	for _, body := range []any{`{}`, `{"refresh_token":""}`, `{"refresh_token":1}`} {
		if r := h.do("POST", "/v1/auth/refresh", "", body); r.status != 400 {
			t.Fatalf("bad refresh body %v: %d %s", body, r.status, r.body)
		}
	}
	if r, _ := h.refreshLogin("tkrt_forged"); r.status != 401 {
		t.Fatalf("forged refresh token: %d", r.status)
	}
	// Bad input to the account endpoints changes nothing.
	users := len(h.do("GET", "/v1/users", h.admin, nil).json(t)["users"].([]any))
	for _, body := range []map[string]any{
		{"username": "bad name", "password": "long enough password", "role": "viewer"},
		{"username": "bob", "password": "short", "role": "viewer"},
		{"username": "bob", "password": "long enough password", "role": "root"},
		{"username": "alice", "password": "long enough password", "role": "viewer"},
	} {
		if r := h.do("POST", "/v1/users", h.admin, body); r.status != 400 && r.status != 409 {
			t.Fatalf("bad user %v: %d %s", body, r.status, r.body)
		}
	}
	if n := len(h.do("GET", "/v1/users", h.admin, nil).json(t)["users"].([]any)); n != users {
		t.Fatalf("bad input created users: %d -> %d", users, n)
	}
	for _, body := range []map[string]any{
		{"client_id": "bad id", "credentials": []string{"x"}},
		{"client_id": "ok", "credentials": []string{"bad name"}},
		{"client_id": "ok", "credentials": []string{"x"}, "secret": "mine"},
	} {
		if r := h.do("POST", "/v1/clients", h.admin, body); r.status != 400 {
			t.Fatalf("bad client %v: %d %s", body, r.status, r.body)
		}
	}
	if n := len(h.do("GET", "/v1/clients", h.admin, nil).json(t)["clients"].([]any)); n != 0 {
		t.Fatalf("bad input created clients: %d", n)
	}
	for _, body := range []any{`{}`, `{"password":"short"}`, `{"password":1}`, `{"password":"long enough","x":1}`} {
		if r := h.do("PUT", "/v1/users/alice/password", h.admin, body); r.status != 400 {
			t.Fatalf("bad password body %v: %d %s", body, r.status, r.body)
		}
	}
	if r := h.do("PUT", "/v1/users/nobody/password", h.admin, map[string]string{"password": "long enough password"}); r.status != 404 {
		t.Fatalf("password of an unknown user: %d", r.status)
	}
	h.login("alice", "correct horse battery") // the bad bodies changed nothing
	if r := h.do("POST", "/v1/auth/logout", h.admin, nil); r.status != 400 {
		t.Fatalf("logout with an API key: %d %s", r.status, r.body)
	}
	for _, q := range []string{"limit=0", "limit=x", "before=-1"} {
		if r := h.do("GET", "/v1/audit?"+q, h.admin, nil); r.status != 400 {
			t.Fatalf("audit ?%s: %d", q, r.status)
		}
	}
}

func TestLoginRateLimit(t *testing.T) {
	h := newHarness(t)
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	// A service with the default rate shares the harness's store.
	svc, err := auth.New(context.Background(), auth.Config{Store: h.store.(tokenkeeper.AuthStore),
		PasswordParams: auth.Argon2Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		LoginRateUser:  auth.Rate{Limit: 2, Per: time.Minute, Burst: 2}})
	if err != nil {
		t.Fatal(err)
	}
	var limited *auth.RateLimitError
	for i := range 5 {
		_, err := svc.Login(context.Background(), "alice", "wrong password!", fmt.Sprintf("10.0.0.%d:1", i))
		if tokenkeeper.ErrorCode(err) == auth.ETOOMANYREQUESTS {
			limited, _ = err.(*auth.RateLimitError)
			break
		}
	}
	if limited == nil || limited.RetryAfterSeconds() < 1 {
		t.Fatalf("no rate limit after 5 failed logins: %v", limited)
	}
}

// Interoperability: golang.org/x/oauth2/clientcredentials pointed at the
// broker's /oauth2/token keeps a service supplied across several upstream
// refreshes, with no custom code.
func TestClientCredentialsInteroperability(t *testing.T) {
	// 8 s tokens: the broker hands out a token only with more than a tenth
	// of its lifetime left, and the call to the upstream API must land
	// inside that margin even on a loaded machine.
	h := newHarness(t, oauthtest.WithLifetime(8*time.Second))
	h.create(h.ccCredential("upstream"))
	secret, _, err := h.auth.CreateServiceClient(context.Background(), "svc", []string{"upstream"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcredentials.Config{ClientID: "svc", ClientSecret: secret, TokenURL: h.url + "/oauth2/token",
		Scopes: []string{"credential:upstream"}}
	hc := cfg.Client(context.Background())
	seen := map[string]bool{}
	var failures atomic.Int64
	end := time.Now().Add(18 * time.Second)
	for time.Now().Before(end) {
		resp, err := hc.Get(h.idp.ResourceURL())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failures.Add(1)
		}
		tok, _ := cfg.TokenSource(context.Background()).Token()
		seen[tok.AccessToken] = true
		time.Sleep(100 * time.Millisecond)
	}
	if failures.Load() != 0 {
		t.Fatalf("%d calls to the protected API failed", failures.Load())
	}
	if len(seen) < 3 {
		t.Fatalf("only %d upstream tokens in 18 s of 8 s tokens: refreshes not exercised", len(seen))
	}
	// Metadata (RFC 8414) names the token endpoint.
	m := h.do("GET", "/.well-known/oauth-authorization-server", "", nil).json(t)
	if m["token_endpoint"] != h.url+"/oauth2/token" {
		t.Fatalf("metadata: %v", m)
	}
	// Errors are RFC 6749 errors.
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"grant_type": {"password"}, "scope": {"credential:upstream"}}, "unsupported_grant_type"},
		{url.Values{"grant_type": {"client_credentials"}, "scope": {"credential:other"}}, "invalid_scope"},
		{url.Values{"grant_type": {"client_credentials"}}, "invalid_scope"},
		{url.Values{"scope": {"credential:upstream"}}, "invalid_request"},
	} {
		r := h.doForm("/oauth2/token", "Basic "+base64.StdEncoding.EncodeToString([]byte("svc:"+secret)), tc.form)
		if r.status != 400 || r.json(t)["error"] != tc.want {
			t.Fatalf("%v: %d %s, want %s", tc.form, r.status, r.body, tc.want)
		}
	}
	post := url.Values{"grant_type": {"client_credentials"}, "scope": {"credential:upstream"}, "client_id": {"svc"}, "client_secret": {secret}}
	if r := h.doForm("/oauth2/token", "", post); r.status != 200 {
		t.Fatalf("client_secret_post: %d %s", r.status, r.body)
	}
	if r := h.doForm("/oauth2/token", "Basic "+base64.StdEncoding.EncodeToString([]byte("svc:"+secret)), post); r.status != 400 {
		t.Fatalf("two client auth methods: %d %s", r.status, r.body)
	}
}

// The audit log records reads, logins, failures and admin changes, and no
// secret appears in it or in any log line.
func TestAuditLogHasNoSecrets(t *testing.T) {
	h := newHarness(t)
	h.create(h.ccCredential("cred"))
	h.addUser("alice", "correct horse battery", tokenkeeper.RoleAdmin)
	toks := h.login("alice", "correct horse battery")
	h.do("POST", "/v1/auth/login", "", map[string]string{"username": "alice", "password": "wrong password!"})
	tok := h.token("cred", toks.AccessToken).json(t)["access_token"].(string)
	h.token("cred", "tk_wrong")
	secret, _, _ := h.auth.CreateServiceClient(context.Background(), "svc", []string{"cred"})
	h.doForm("/oauth2/token", "Basic "+base64.StdEncoding.EncodeToString([]byte("svc:"+secret)), url.Values{"grant_type": {"client_credentials"}, "scope": {"credential:cred"}})
	r, _ := h.refreshLogin(toks.RefreshToken)
	if r.status != 200 {
		t.Fatal(r.status)
	}
	var recs []any
	deadline := time.Now().Add(5 * time.Second)
	want := []string{"auth.login", "auth.failed", "token.read", "credential.create", "auth.refresh"}
	for {
		ar := h.do("GET", "/v1/audit?limit=1000", h.admin, nil)
		recs = ar.json(t)["records"].([]any)
		actions := map[string]bool{}
		for _, rec := range recs {
			actions[rec.(map[string]any)["action"].(string)] = true
		}
		missing := ""
		for _, a := range want {
			if !actions[a] {
				missing = a
			}
		}
		if missing == "" {
			for _, s := range []string{"correct horse battery", "wrong password!", tok, toks.AccessToken, toks.RefreshToken, secret, h.secret, h.admin} {
				if strings.Contains(string(ar.body), s) {
					t.Fatalf("a secret appears in the audit log")
				}
				if strings.Contains(h.logs.String(), s) {
					t.Fatalf("a secret appears in the logs")
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log lacks %s: %v", missing, recs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
