package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// TestProviderPresetsCLI lists the presets, adds providers from presets
// against serve, and checks that bad presets and missing template variables
// are refused with what is needed and create nothing.
func TestProviderPresetsCLI(t *testing.T) {
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		s := out.String() + errb.String()
		if err != nil {
			s += err.Error()
		}
		return s, err
	}

	out, err := cli("", "provider", "presets")
	if err != nil || !strings.Contains(out, "microsoft") || !strings.Contains(out, "tenant") || !strings.Contains(out, "JSON request body") {
		t.Fatalf("provider presets: %v %s", err, out)
	}
	out, err = cli("", "provider", "presets", "--json")
	var list struct {
		Presets []struct {
			Name   string   `json:"name"`
			Quirks []string `json:"quirks"`
			Docs   []string `json:"docs"`
		} `json:"presets"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Presets) != len(catalog.All()) {
		t.Fatalf("provider presets --json: %v %.300s", err, out)
	}
	for _, p := range list.Presets {
		if len(p.Docs) == 0 {
			t.Errorf("preset %s cites no documentation", p.Name)
		}
		if p.Quirks == nil {
			t.Errorf("preset %s: quirks is null, want a list", p.Name)
		}
	}

	secret := "preset-secret-" + randomString()
	out, err = cli(secret+"\n", "provider", "add", "gg", "--preset", "google", "--client-id", "app.apps", "--client-secret-file", "-", "--json")
	var p map[string]any
	if err != nil || json.Unmarshal([]byte(out), &p) != nil {
		t.Fatalf("provider add --preset google: %v %s", err, out)
	}
	ap, _ := p["authorize_params"].(map[string]any)
	if p["token_url"] != "https://oauth2.googleapis.com/token" || p["auth_style"] != "body" || ap["access_type"] != "offline" || ap["prompt"] != "consent" ||
		p["has_client_secret"] != true || strings.Contains(out, secret) {
		t.Errorf("google preset not applied: %s", out)
	}
	if p["api_base_url"] != "https://www.googleapis.com" {
		t.Errorf("google preset's API base URL not applied: %s", out)
	}
	// Shopify's API takes the bare token in a header of its own: the
	// provider's token presentation comes from the preset.
	out, err = cli(secret+"\n", "provider", "add", "shop", "--preset", "shopify", "--var", "shop=acme", "--client-id", "x", "--client-secret-file", "-", "--json")
	var sp struct {
		APIBaseURL string               `json:"api_base_url"`
		APIToken   tokenkeeper.APIToken `json:"api_token"`
	}
	if err != nil || json.Unmarshal([]byte(out), &sp) != nil || sp.APIBaseURL != "https://acme.myshopify.com/admin/api" ||
		sp.APIToken != (tokenkeeper.APIToken{Header: "X-Shopify-Access-Token"}) {
		t.Errorf("shopify preset's API not applied: %v %s", err, out)
	}

	// A missing template variable: refused naming it, nothing created.
	out, err = cli(secret+"\n", "provider", "add", "ms", "--preset", "microsoft", "--client-id", "x", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "tenant (") {
		t.Errorf("microsoft without tenant: %v %s", err, out)
	}
	if out, err := cli("", "provider", "show", "ms"); err == nil {
		t.Errorf("a refused preset created a provider: %s", out)
	}
	out, err = cli(secret+"\n", "provider", "add", "ms", "--preset", "microsoft", "--var", "tenant=contoso.onmicrosoft.com",
		"--client-id", "x", "--client-secret-file", "-", "--scopes", "offline_access,openid", "--json")
	if err != nil || !strings.Contains(out, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token") ||
		!strings.Contains(out, `"offline_access"`) || strings.Contains(out, "User.Read") {
		t.Errorf("microsoft with tenant and own scopes: %v %s", err, out)
	}
	// A value that would move the host is refused.
	out, err = cli(secret+"\n", "provider", "add", "ms2", "--preset", "microsoft", "--var", "tenant=evil.example/x",
		"--client-id", "x", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "tenant") {
		t.Errorf("tenant with a slash: %v %s", err, out)
	}
	// An unknown preset: refused with the list.
	out, err = cli(secret+"\n", "provider", "add", "zz", "--preset", "nosuch", "--client-id", "x", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "unknown preset") || !strings.Contains(out, "salesforce") {
		t.Errorf("unknown preset: %v %s", err, out)
	}
	if _, err := cli("", "provider", "add", "zz", "--var", "tenant=x", "--token-url", "https://example.com/t", "--client-id", "x"); err == nil {
		t.Error("--var without --preset accepted")
	}
	out, err = cli("", "provider", "list")
	if err != nil || strings.Contains(out, "zz") || strings.Contains(out, "ms2") || !strings.Contains(out, "gg") {
		t.Errorf("provider list after refusals: %v %s", err, out)
	}
}

// TestPresetRefreshUsesProfile adds a provider from the atlassian preset
// with its token URL pointed at a loopback endpoint that behaves as the
// profile says Atlassian does: JSON request bodies only, rotating refresh
// tokens, and a bare 403 for a dead grant. The broker's refresh goes
// through the profile; the dead grant turns needs_reauth after one call.
func TestPresetRefreshUsesProfile(t *testing.T) {
	var mu sync.Mutex
	current := map[string]bool{"rt-0": true}
	calls := 0
	n := 0
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		var body map[string]string
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&body) != nil {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			fmt.Fprint(w, `{"error":"invalid_request","error_description":"JSON only"}`)
			return
		}
		if body["grant_type"] != "refresh_token" || body["client_id"] != "cid" || body["client_secret"] != "csecret" || !current[body["refresh_token"]] {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "<html>Forbidden</html>")
			return
		}
		delete(current, body["refresh_token"]) // rotation
		n++
		next := fmt.Sprintf("rt-%d", n)
		current[next] = true
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"at-%d","refresh_token":%q,"expires_in":3600,"token_type":"Bearer"}`, n, next)
	}))
	defer idp.Close()

	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	out, err := cli("csecret\n", "provider", "add", "jira", "--preset", "atlassian", "--token-url", idp.URL+"/oauth/token",
		"--client-id", "cid", "--client-secret-file", "-", "--json")
	if err != nil || !strings.Contains(out, `"preset": "atlassian"`) && !strings.Contains(out, `"preset":"atlassian"`) {
		t.Fatalf("provider add --preset atlassian: %v %s", err, out)
	}
	if out, err := cli("rt-0\n", "credential", "add", "alice", "--provider", "jira", "--grant-type", "refresh_token",
		"--refresh-token-file", "-"); err != nil {
		t.Fatalf("credential add: %v %s", err, out)
	}
	// Two refreshes, each reporting the current token as rejected (which
	// a forced refresh honours at once).
	refresh := func(rejected string) string {
		req, _ := http.NewRequest("POST", sb.url+"/v1/credentials/alice/refresh", strings.NewReader(fmt.Sprintf(`{"rejected_token":%q}`, rejected)))
		req.Header.Set("Authorization", "Bearer "+sb.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tv struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tv)
		return tv.AccessToken
	}
	for i := 2; i <= 3; i++ {
		if got := refresh(fmt.Sprintf("at-%d", i-1)); got != fmt.Sprintf("at-%d", i) {
			t.Fatalf("refresh %d gave %q", i, got)
		}
	}

	// The grant dies at the provider: the next refresh is answered 403
	// without an OAuth code, which the profile classifies invalid_grant.
	mu.Lock()
	clear(current)
	before := calls
	mu.Unlock()
	refresh("at-3")
	out, err = cli("", "credential", "show", "alice", "--json")
	if err != nil || !strings.Contains(out, "needs_reauth") {
		t.Errorf("after a 403: %v %s", err, out)
	}
	mu.Lock()
	if calls-before != 1 {
		t.Errorf("%d provider calls for the dead grant, want 1", calls-before)
	}
	mu.Unlock()
}

// TestProviderAddIssuer discovers an oauthtest server's endpoints with
// --issuer, then checks that a document naming another issuer is refused
// and creates nothing.
func TestProviderAddIssuer(t *testing.T) {
	idp := oauthtest.NewServer(oauthtest.WithOIDC(true), oauthtest.WithClient("app", "s3cret"))
	defer idp.Close()
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":%q}`, idp.URL(), idp.TokenURL())
	}))
	defer liar.Close()
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		s := out.String() + errb.String()
		if err != nil {
			s += err.Error()
		}
		return s, err
	}
	out, err := cli("s3cret\n", "provider", "add", "idp", "--issuer", idp.URL(), "--client-id", "app", "--client-secret-file", "-", "--json")
	if err != nil || !strings.Contains(out, idp.TokenURL()) || !strings.Contains(out, idp.AuthorizeURL()) {
		t.Fatalf("provider add --issuer: %v %s", err, out)
	}
	var added struct {
		Issuer string `json:"issuer"`
	}
	if json.Unmarshal([]byte(out), &added) != nil || added.Issuer != idp.URL() {
		t.Errorf("provider add --issuer does not keep the issuer: %s", out)
	}
	if out, err := cli("", "provider", "show", "idp"); err != nil || !strings.Contains(out, "issuer:") || !strings.Contains(out, idp.URL()) {
		t.Errorf("provider show does not show the issuer: %v %s", err, out)
	}
	// The discovered provider works: a client-credentials credential of it
	// gets a token the provider accepts.
	if out, err := cli("", "credential", "add", "svc", "--provider", "idp"); err != nil {
		t.Fatalf("credential add: %v %s", err, out)
	}
	if tok, err := cli("", "token", "svc"); err != nil || !idp.ValidAccessToken(strings.TrimSpace(tok)) {
		t.Fatalf("token: %v %q", err, tok)
	}
	out, err = cli("s3cret\n", "provider", "add", "liar", "--issuer", liar.URL, "--client-id", "app", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "not the one given") {
		t.Errorf("issuer mismatch: %v %s", err, out)
	}
	out, err = cli("s3cret\n", "provider", "add", "plain", "--issuer", "http://idp.example", "--client-id", "app", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "no TLS") {
		t.Errorf("http issuer: %v %s", err, out)
	}
	out, _ = cli("", "provider", "list")
	if strings.Contains(out, "liar") || strings.Contains(out, "plain") {
		t.Errorf("a failed discovery created a provider: %s", out)
	}
}

// TestPresetKeepAlive: a grant of a preset whose refresh tokens die after
// 30 minutes idle (keycloak) is scheduled for a keep-alive refresh after 15
// minutes, although its access token is good for an hour.
func TestPresetKeepAlive(t *testing.T) {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"at","refresh_token":"rt-next","expires_in":3600,"token_type":"Bearer"}`)
	}))
	defer idp.Close()
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	for _, name := range []string{"kc", "plain"} {
		args := []string{"provider", "add", name, "--token-url", idp.URL + "/token", "--client-id", "cid", "--client-secret-file", "-"}
		if name == "kc" {
			args = append(args, "--preset", "keycloak", "--var", "domain=kc.example.com", "--var", "realm=main")
		}
		if out, err := cli("s\n", args...); err != nil {
			t.Fatalf("provider add %s: %v %s", name, err, out)
		}
		if out, err := cli("rt-0\n", "credential", "add", name+"-alice", "--provider", name, "--grant-type", "refresh_token",
			"--refresh-token-file", "-"); err != nil {
			t.Fatalf("credential add: %v %s", err, out)
		}
	}
	next := func(name string) time.Duration {
		out, err := cli("", "credential", "show", name, "--json")
		var v struct {
			NextRefreshAt time.Time `json:"next_refresh_at"`
		}
		if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.NextRefreshAt.IsZero() {
			t.Fatalf("credential show %s: %v %s", name, err, out)
		}
		return time.Until(v.NextRefreshAt)
	}
	if d := next("kc-alice"); d < 14*time.Minute || d > 15*time.Minute+5*time.Second {
		t.Errorf("keycloak grant's next refresh in %s, want the 15 min keep-alive", d)
	}
	if d := next("plain-alice"); d < 50*time.Minute {
		t.Errorf("grant without preset: next refresh in %s, want its token's schedule (about 55 min)", d)
	}
}

// TestKeepAliveIntervalFlag: serve --keep-alive-interval takes 1h or more
// and refuses less, naming the flag, before anything starts.
func TestKeepAliveIntervalFlag(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tk.db")
	for _, v := range []string{"30m", "0s", "-1h"} {
		var out, errb syncBuffer
		err := run(context.Background(), []string{"tokenkeeper", "serve", "--addr", "127.0.0.1:0", "--database", db, "--keep-alive-interval", v},
			func(string) string { return "" }, strings.NewReader(""), &out, &errb)
		if err == nil || !strings.Contains(err.Error()+errb.String(), "--keep-alive-interval must be at least 1h") {
			t.Errorf("--keep-alive-interval %s: %v %s", v, err, errb.String())
		}
	}
	// Notion's tokens never expire and no idle limit is known: its grants
	// are kept alive at the configured interval.
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"at","refresh_token":"rt-next","token_type":"bearer","bot_id":"b"}`)
	}))
	defer idp.Close()
	sb := startServe(t, map[string]string{"TOKENKEEPER_KEEP_ALIVE_INTERVAL": "2h"}, "--database", db)
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := cli("s\n", "provider", "add", "nt", "--preset", "notion", "--token-url", idp.URL+"/token", "--client-id", "cid", "--client-secret-file", "-"); err != nil {
		t.Fatalf("provider add: %v %s", err, out)
	}
	if out, err := cli("rt-0\n", "credential", "add", "nt-alice", "--provider", "nt", "--grant-type", "refresh_token", "--refresh-token-file", "-"); err != nil {
		t.Fatalf("credential add: %v %s", err, out)
	}
	out, err := cli("", "credential", "show", "nt-alice", "--json")
	var v struct {
		NextRefreshAt time.Time `json:"next_refresh_at"`
	}
	if err != nil || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("credential show: %v %s", err, out)
	}
	if d := time.Until(v.NextRefreshAt); d < 115*time.Minute || d > 2*time.Hour {
		t.Errorf("notion grant's next refresh in %s, want the 2h keep-alive interval", d)
	}
}
