package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog/catalogtest"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// TestEveryPresetConnects runs every preset of the catalog through serve
// against an oauthtest server with the preset's personality (its body
// format, client authentication, Accept header, scope separator, PKCE,
// parameters, response shape, errors, rotation and token presentation),
// one subtest each:
//
//   - provider add --preset (template variables given as --var), with the
//     endpoints and API base URL pointed at the personality;
//   - the connect flow: a connect session, its link opened by a browser
//     (an HTTP client with cookies), the authorization request (whose
//     parameters are checked against the profile), auto-approval, the
//     callback and the code exchange;
//   - the fields the profile keeps (instance_url, realmId, team.id) shown
//     by credential show;
//   - two forced refreshes, each serving a new token the provider accepts;
//   - a call of the protected resource through the broker's proxy, which
//     presents the token as the profile says;
//   - the grant revoked at the provider: the next refresh is one provider
//     call, answered in the profile's error style, and the credential
//     turns needs_reauth.
func TestEveryPresetConnects(t *testing.T) {
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	// Forced refreshes are rate-limited per caller: each preset's are
	// made with a key of its own.
	forced := func(t *testing.T, key, name, rejected string) string {
		req, _ := http.NewRequest("POST", sb.url+"/v1/credentials/"+name+"/refresh", strings.NewReader(fmt.Sprintf(`{"rejected_token":%q}`, rejected)))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var tv struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(b, &tv) != nil || tv.AccessToken == "" {
			t.Logf("forced refresh of %s: HTTP %d %.300s", name, resp.StatusCode, b)
		}
		return tv.AccessToken
	}
	tested := 0
	for _, p := range catalog.All() {
		tested++
		t.Run(p.Name, func(t *testing.T) {
			idp := oauthtest.NewServer(oauthtest.WithClient("cid", "csecret"), oauthtest.WithLifetime(time.Hour),
				oauthtest.WithPersonality(catalogtest.Personality(p)))
			defer idp.Close()
			prov, name := "p-"+p.Name, "c-"+p.Name
			args := []string{"provider", "add", prov, "--preset", p.Name, "--token-url", idp.TokenURL(),
				"--authorization-url", idp.AuthorizeURL(), "--api-base-url", idp.URL(),
				"--client-id", "cid", "--client-secret-file", "-"}
			for _, v := range p.Needs() {
				args = append(args, "--var", v+"=acme")
			}
			if out, err := cli("csecret\n", args...); err != nil {
				t.Fatalf("provider add: %v %s", err, out)
			}
			var k struct {
				Key string `json:"key"`
			}
			if st := apiDo(t, "POST", sb.url+"/v1/apikeys", sb.key, map[string]string{"name": "k-" + p.Name, "role": "admin"}, &k); st != http.StatusCreated || k.Key == "" {
				t.Fatalf("apikey: %d", st)
			}

			// The connect flow, the test being the browser.
			var session struct {
				URL string `json:"url"`
			}
			if st := apiDo(t, "POST", sb.url+"/v1/connect/sessions", k.Key, map[string]string{"provider": prov, "name": name}, &session); st != http.StatusCreated {
				t.Fatalf("connect session: %d", st)
			}
			jar, _ := cookiejar.New(nil)
			var authorize *url.URL
			browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
				if strings.HasPrefix(r.URL.String(), idp.AuthorizeURL()) {
					authorize = r.URL
				}
				return nil
			}}
			resp, err := browser.Get(session.URL)
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || authorize == nil {
				t.Fatalf("connect flow: HTTP %d %.500s", resp.StatusCode, page)
			}
			checkAuthorizeRequest(t, p, authorize.Query())

			out, err := cli("", "credential", "show", name, "--json")
			var shown struct {
				Status string            `json:"status"`
				Extras map[string]string `json:"extras"`
			}
			if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.Status != "active" {
				t.Fatalf("credential after connect: %v %s", err, out)
			}
			for _, kept := range append(append([]string{}, p.Response.Keep...), p.Response.KeepFromRedirect...) {
				if shown.Extras[kept] != catalogtest.KeptValue(kept) {
					t.Errorf("kept field %s = %q (extras %v)", kept, shown.Extras[kept], shown.Extras)
				}
			}
			if text, _ := cli("", "credential", "show", name); len(p.Response.Keep)+len(p.Response.KeepFromRedirect) > 0 &&
				!strings.Contains(text, catalogtest.KeptValue(append(p.Response.Keep, p.Response.KeepFromRedirect...)[0])) {
				t.Errorf("credential show does not show the kept fields: %s", text)
			}

			var tok struct {
				AccessToken string `json:"access_token"`
			}
			if st := apiDo(t, "GET", sb.url+"/v1/credentials/"+name+"/token", k.Key, nil, &tok); st != http.StatusOK || !idp.ValidAccessToken(tok.AccessToken) {
				t.Fatalf("token after connect: %d, valid %v", st, idp.ValidAccessToken(tok.AccessToken))
			}
			prev := tok.AccessToken
			for i := 1; i <= 2; i++ {
				got := forced(t, k.Key, name, prev)
				if got == "" || got == prev || !idp.ValidAccessToken(got) {
					t.Fatalf("refresh %d served %q, valid at the provider: %v", i, got, idp.ValidAccessToken(got))
				}
				prev = got
			}
			if n := idp.Stats().TokenRequests["refresh_token"]; n != 2 {
				t.Errorf("%d refresh requests, want 2", n)
			}

			// The protected resource, through the proxy.
			var res struct {
				OK       bool   `json:"ok"`
				ClientID string `json:"client_id"`
			}
			if st := apiDo(t, "GET", sb.url+"/v1/proxy/"+name+"/resource", k.Key, nil, &res); st != http.StatusOK || !res.OK || res.ClientID != "cid" {
				t.Errorf("resource through the proxy: %d %+v", st, res)
			}
			if ck := p.Check; ck != nil {
				// The profile's token check, as the keep-alive calls it.
				method := ck.Method
				if method == "" {
					method = "GET"
				}
				res.OK = false
				if st := apiDo(t, method, sb.url+"/v1/proxy/"+name+ck.Path, k.Key, nil, &res); st != http.StatusOK || !res.OK {
					t.Errorf("token check %s %s through the proxy: %d %+v", method, ck.Path, st, res)
				}
			}

			// A dead grant: one call, needs_reauth.
			idp.RevokeClientTokens("cid")
			before := idp.Stats().TokenRequests["refresh_token"]
			forced(t, k.Key, name, prev)
			if n := idp.Stats().TokenRequests["refresh_token"] - before; n != 1 {
				t.Errorf("%d provider calls for the dead grant, want 1", n)
			}
			if out, err := cli("", "credential", "show", name, "--json"); err != nil || !strings.Contains(out, `"needs_reauth"`) {
				t.Errorf("dead grant: %v %s", err, out)
			}
		})
	}
	if tested < 25 {
		t.Errorf("only %d presets exercised", tested)
	}
	if strings.Contains(sb.stderr.String()+sb.stdout.String(), "csecret") {
		t.Error("a client secret reached the broker's log")
	}
}

// checkAuthorizeRequest checks the authorization request the broker sent
// for p's provider: the profile's authorize parameters (Google's
// access_type=offline and prompt=consent, Dropbox's token_access_type,
// Atlassian's audience and prompt), its default scopes joined with its
// separator, and a code challenge exactly when the profile uses PKCE.
func checkAuthorizeRequest(t *testing.T, p *catalog.Profile, q url.Values) {
	t.Helper()
	for k, v := range p.AuthorizeParams {
		if q.Get(k) != v {
			t.Errorf("authorize param %s = %q, want %q", k, q.Get(k), v)
		}
	}
	sep := p.ScopeSeparator
	if sep == "" {
		sep = " "
	}
	if want := strings.Join(p.DefaultScopes, sep); q.Get("scope") != want {
		t.Errorf("scope %q, want %q", q.Get("scope"), want)
	}
	if has := q.Get("code_challenge") != "" && q.Get("code_challenge_method") == "S256"; has != *p.PKCE {
		t.Errorf("code challenge sent: %v, profile's pkce: %v", has, *p.PKCE)
	}
	if q.Get("response_type") != "code" || q.Get("client_id") != "cid" || q.Get("state") == "" {
		t.Errorf("authorization request: %v", q)
	}
}
