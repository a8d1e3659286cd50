package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
)

// personality is a loopback token endpoint that behaves as a profile says
// its provider does: it takes only the body format and client
// authentication of the profile (and its Accept header), answers in the
// profile's response shape (nested paths, no expires_in where the provider
// sends none), rotates refresh tokens when the profile says so, and
// answers a dead grant in the profile's error style.
type personality struct {
	p       *catalog.Profile
	mu      sync.Mutex
	current string // the refresh token that works
	n       int
	calls   int
	dead    bool
	refused []string // why requests were refused
}

func setPath(m map[string]any, path string, v any) {
	segs := strings.Split(path, ".")
	for _, s := range segs[:len(segs)-1] {
		sub, ok := m[s].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[s] = sub
		}
		m = sub
	}
	m[segs[len(segs)-1]] = v
}

func (ps *personality) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.calls++
	refuse := func(why string) {
		ps.refused = append(ps.refused, why)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_request"}`)
	}
	p := ps.p
	body, _ := io.ReadAll(r.Body)
	params := map[string]string{}
	if p.BodyFormat == "json" {
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &params) != nil {
			refuse("not a JSON body")
			return
		}
	} else {
		q, err := url.ParseQuery(string(body))
		if err != nil || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			refuse("not a form body")
			return
		}
		for k := range q {
			params[k] = q.Get(k)
		}
	}
	if p.Accept != "" && r.Header.Get("Accept") != p.Accept {
		refuse("wrong Accept")
		return
	}
	if p.AuthStyle == "header" {
		if r.Header.Get("Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte("cid:csecret")) || params["client_secret"] != "" {
			refuse("not client_secret_basic")
			return
		}
	} else if params["client_id"] != "cid" || params["client_secret"] != "csecret" || r.Header.Get("Authorization") != "" {
		refuse("not client_secret_post")
		return
	}
	for k, v := range p.TokenParams {
		if params[k] != v {
			refuse("token param " + k + " missing")
			return
		}
	}
	if params["grant_type"] != "refresh_token" || ps.dead || params["refresh_token"] != ps.current {
		if len(p.Errors.InvalidGrantStatuses) > 0 {
			w.WriteHeader(p.Errors.InvalidGrantStatuses[0])
			fmt.Fprint(w, "<html>no</html>")
			return
		}
		status := http.StatusBadRequest
		if p.Errors.ErrorIn200 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		fmt.Fprint(w, `{"ok":false,"error":"invalid_grant"}`)
		return
	}
	ps.n++
	resp := map[string]any{"token_type": "Bearer"}
	at := fmt.Sprintf("at-%d", ps.n)
	setPath(resp, or(p.Response.AccessToken, "access_token"), at)
	if p.RefreshTokens.Rotates {
		ps.current = fmt.Sprintf("rt-%d", ps.n)
	}
	setPath(resp, or(p.Response.RefreshToken, "refresh_token"), ps.current)
	if *p.TokensExpire && p.DefaultLifetime == "" {
		setPath(resp, or(p.Response.ExpiresIn, "expires_in"), 3600)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestEveryPresetRefreshes runs each preset that issues refresh tokens
// against its personality through serve: a provider from the preset
// (its token URL pointed at the personality), a grant, two refreshes that
// each serve the provider's new token, and a dead grant that turns
// needs_reauth after one call.
func TestEveryPresetRefreshes(t *testing.T) {
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	// Forced refreshes are rate-limited per caller: each preset's are
	// made with a key of its own.
	forced := func(key, name, rejected string) string {
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
			t.Logf("forced refresh of %s: HTTP %d %s", name, resp.StatusCode, b)
		}
		return tv.AccessToken
	}
	tested := 0
	for _, p := range catalog.All() {
		if !*p.RefreshTokens.Issued {
			continue
		}
		tested++
		t.Run(p.Name, func(t *testing.T) {
			ps := &personality{p: p, current: "rt-0"}
			srv := httptest.NewServer(ps)
			defer srv.Close()
			args := []string{"provider", "add", "p-" + p.Name, "--preset", p.Name, "--token-url", srv.URL + "/token",
				"--client-id", "cid", "--client-secret-file", "-"}
			for _, v := range p.Needs() {
				args = append(args, "--var", v+"=acme.example.com")
			}
			if out, err := cli("csecret\n", args...); err != nil {
				t.Fatalf("provider add: %v %s", err, out)
			}
			name := "c-" + p.Name
			var k struct {
				Key string `json:"key"`
			}
			if st := apiDo(t, "POST", sb.url+"/v1/apikeys", sb.key, map[string]string{"name": "k-" + p.Name, "role": "admin"}, &k); st != http.StatusCreated || k.Key == "" {
				t.Fatalf("apikey: %d", st)
			}
			if out, err := cli("rt-0\n", "credential", "add", name, "--provider", "p-"+p.Name,
				"--grant-type", "refresh_token", "--refresh-token-file", "-"); err != nil {
				t.Fatalf("credential add: %v %s (refused: %v)", err, out, ps.refused)
			}
			for i := 2; i <= 3; i++ {
				if got := forced(k.Key, name, fmt.Sprintf("at-%d", i-1)); got != fmt.Sprintf("at-%d", i) {
					t.Fatalf("refresh %d served %q (refused: %v)", i, got, ps.refused)
				}
			}
			ps.mu.Lock()
			ps.dead = true
			before := ps.calls
			ps.mu.Unlock()
			forced(k.Key, name, "at-3")
			out, err := cli("", "credential", "show", name, "--json")
			if err != nil || !strings.Contains(out, "needs_reauth") {
				t.Errorf("dead grant: %v %s", err, out)
			}
			ps.mu.Lock()
			if ps.calls-before != 1 || len(ps.refused) > 0 {
				t.Errorf("%d calls for the dead grant (want 1); refused: %v", ps.calls-before, ps.refused)
			}
			ps.mu.Unlock()
		})
	}
	if tested < 25 {
		t.Errorf("only %d presets exercised", tested)
	}
}
