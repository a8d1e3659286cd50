package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQuirks runs each departure from RFC 6749 that Config can describe
// against a loopback endpoint and checks both what was sent and what was
// parsed.
func TestQuirks(t *testing.T) {
	type seen struct {
		path, contentType, accept string
		body                      []byte
	}
	tests := []struct {
		name     string
		cfg      func(c *Config, base string)
		status   int
		respond  string
		refresh  bool
		check    func(t *testing.T, s seen)
		wantTok  func(t *testing.T, tok *Token)
		wantCode string
	}{
		{
			name:   "JSON body",
			cfg:    func(c *Config, _ string) { c.BodyFormat = BodyJSON; c.AuthStyle = AuthStyleBody },
			status: 200, respond: okBody, refresh: true,
			check: func(t *testing.T, s seen) {
				if s.contentType != "application/json" {
					t.Errorf("Content-Type = %q", s.contentType)
				}
				var m map[string]string
				if err := json.Unmarshal(s.body, &m); err != nil {
					t.Fatalf("body is not a JSON object of strings: %v", err)
				}
				if m["grant_type"] != "refresh_token" || m["refresh_token"] != "rt-old" || m["client_id"] != "client" || m["client_secret"] != "secret" {
					t.Errorf("JSON body members = %v", m)
				}
			},
		},
		{
			name: "Accept header and comma scopes",
			cfg: func(c *Config, _ string) {
				c.Accept = "application/vnd.example+json"
				c.ScopeSeparator = ","
				c.Scopes = []string{"a", "b"}
			},
			status: 200, respond: okBody, refresh: true,
			check: func(t *testing.T, s seen) {
				if s.accept != "application/vnd.example+json" {
					t.Errorf("Accept = %q", s.accept)
				}
				if !bytes.Contains(s.body, []byte("scope=a%2Cb")) {
					t.Errorf("body %q has no comma-joined scope", s.body)
				}
			},
		},
		{
			name: "refresh params on refresh only",
			cfg: func(c *Config, _ string) {
				c.RefreshParams = map[string][]string{"duration": {"permanent"}}
			},
			status: 200, respond: okBody, refresh: true,
			check: func(t *testing.T, s seen) {
				if !bytes.Contains(s.body, []byte("duration=permanent")) {
					t.Errorf("refresh body %q lacks the refresh param", s.body)
				}
			},
		},
		{
			name: "refresh params not on other grants",
			cfg: func(c *Config, _ string) {
				c.RefreshParams = map[string][]string{"duration": {"permanent"}}
			},
			status: 200, respond: okBody,
			check: func(t *testing.T, s seen) {
				if bytes.Contains(s.body, []byte("duration")) {
					t.Errorf("client_credentials body %q has the refresh param", s.body)
				}
			},
		},
		{
			name:   "separate refresh URL",
			cfg:    func(c *Config, base string) { c.RefreshURL = base + "/refresh" },
			status: 200, respond: okBody, refresh: true,
			check: func(t *testing.T, s seen) {
				if s.path != "/refresh" {
					t.Errorf("refresh went to %q, want /refresh", s.path)
				}
			},
		},
		{
			name:   "refresh URL is not used for other grants",
			cfg:    func(c *Config, base string) { c.RefreshURL = base + "/refresh" },
			status: 200, respond: okBody,
			check: func(t *testing.T, s seen) {
				if s.path != "/token" {
					t.Errorf("client_credentials went to %q, want /token", s.path)
				}
			},
		},
		{
			name: "nested response paths",
			cfg: func(c *Config, _ string) {
				c.Response = ResponsePaths{AccessToken: "authed_user.access_token", RefreshToken: "authed_user.refresh_token",
					ExpiresIn: "authed_user.expires_in", Scope: "authed_user.scope"}
			},
			status:  200,
			respond: `{"ok":true,"access_token":"bot","authed_user":{"access_token":"user-at","refresh_token":"user-rt","expires_in":120,"scope":"a,b"}}`,
			wantTok: func(t *testing.T, tok *Token) {
				if tok.AccessToken != "user-at" || tok.RefreshToken != "user-rt" || tok.ExpiresIn != 120*time.Second || tok.Scope != "a,b" {
					t.Errorf("token = %+v %q %q", tok, tok.AccessToken, tok.RefreshToken)
				}
			},
		},
		{
			name:    "path that leads nowhere falls back to the top-level member",
			cfg:     func(c *Config, _ string) { c.Response.AccessToken = "data.token" },
			status:  200,
			respond: `{"access_token":"top","expires_in":60}`,
			wantTok: func(t *testing.T, tok *Token) {
				if tok.AccessToken != "top" || tok.ExpiresIn != time.Minute {
					t.Errorf("token = %+v", tok)
				}
			},
		},
		{
			name:     "no access token at the path nor at the top is a malformed response",
			cfg:      func(c *Config, _ string) { c.Response.AccessToken = "data.token" },
			status:   200,
			respond:  `{"data":{"other":"x"}}`,
			wantCode: "",
		},
		{
			name:     "error in a 200 body",
			cfg:      func(*Config, string) {},
			status:   200,
			respond:  `{"ok":false,"error":"invalid_grant"}`,
			wantCode: "invalid_grant",
		},
		{
			name:     "bare 403 classified invalid_grant",
			cfg:      func(c *Config, _ string) { c.InvalidGrantStatuses = []int{403} },
			status:   403,
			respond:  `<html>forbidden</html>`,
			wantCode: "invalid_grant",
		},
		{
			name:     "bare 403 without the quirk is not permanent",
			cfg:      func(*Config, string) {},
			status:   403,
			respond:  `{"message":"forbidden"}`,
			wantCode: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []seen
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = append(got, seen{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Accept"), b})
				mu.Unlock()
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.respond)
			}))
			defer srv.Close()
			c := validConfig(srv.URL + "/token")
			tt.cfg(c, srv.URL)
			var tok *Token
			var err error
			if tt.refresh {
				tok, err = c.Refresh(context.Background(), "rt-old")
			} else {
				tok, err = c.ClientCredentials(context.Background())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("%d requests, want 1", len(got))
			}
			if tt.check != nil {
				tt.check(t, got[0])
			}
			if tt.wantTok != nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				tt.wantTok(t, tok)
				return
			}
			if tt.check != nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if e.Code != tt.wantCode {
				t.Errorf("Code = %q, want %q (%v)", e.Code, tt.wantCode, err)
			}
			if (tt.wantCode == "invalid_grant") != e.Permanent() {
				t.Errorf("Permanent = %v for %v", e.Permanent(), err)
			}
			if strings.Contains(err.Error(), "user-at") {
				t.Errorf("error quotes a token: %v", err)
			}
		})
	}
}

func TestQuirkValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"bad refresh URL", func(c *Config) { c.RefreshURL = "ftp://x/refresh" }, "RefreshURL scheme"},
		{"bad body format", func(c *Config) { c.BodyFormat = 7 }, "BodyFormat 7"},
		{"bad path", func(c *Config) { c.Response.AccessToken = "a..b" }, "Response.AccessToken"},
		{"bad status", func(c *Config) { c.InvalidGrantStatuses = []int{200} }, "InvalidGrantStatuses: 200"},
		{"control in Accept", func(c *Config) { c.Accept = "a\nb" }, "Accept"},
		{"reserved refresh param", func(c *Config) { c.RefreshParams = map[string][]string{"refresh_token": {"x"}} }, "Params may not set refresh_token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig("https://example.test/token")
			tt.mod(c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want one naming %q", err, tt.want)
			}
		})
	}
	for _, s := range []string{"", "json", "form"} {
		if _, err := ParseBodyFormat(s); err != nil {
			t.Errorf("ParseBodyFormat(%q) = %v", s, err)
		}
	}
	if _, err := ParseBodyFormat("xml"); err == nil {
		t.Error("ParseBodyFormat(xml) succeeded")
	}
}

// TestKeepAndScopeSeparator: the members a profile keeps are read by path
// as strings (objects, lists, empty and oversized values left out), and a
// scope joined with the provider's separator is split.
func TestKeepAndScopeSeparator(t *testing.T) {
	body := `{"access_token":"at","scope":"chat:write,channels:read","instance_url":"https://acme.my.salesforce.com",
	"team":{"id":"T1","name":"Acme"},"issued_at":1700000000123,"ok":true,"list":["a"],"obj":{"a":1},"empty":"",
	"big":"` + strings.Repeat("x", 600) + `"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	c := &Config{TokenURL: srv.URL, ClientID: "c", ClientSecret: "s", AuthStyle: AuthStyleHeader, ScopeSeparator: ","}
	tok, err := c.Refresh(context.Background(), "rt")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Scope != "chat:write channels:read" {
		t.Errorf("scope %q", tok.Scope)
	}
	got := tok.Keep([]string{"instance_url", "team.id", "team.name", "issued_at", "ok", "list", "obj", "empty", "big", "missing", "team.id.x"})
	want := map[string]string{"instance_url": "https://acme.my.salesforce.com", "team.id": "T1", "team.name": "Acme",
		"issued_at": "1700000000123", "ok": "true"}
	if len(got) != len(want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("kept %s = %q, want %q", k, got[k], v)
		}
	}
	if (&Token{}).Keep([]string{"a"}) != nil {
		t.Error("nothing to keep should be nil")
	}
}
