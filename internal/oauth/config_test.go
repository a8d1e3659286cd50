package oauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorded is one request seen by a fakeEndpoint.
type recorded struct {
	Method string
	Path   string
	Header http.Header
	Form   url.Values
}

// fakeEndpoint is a token endpoint on a loopback httptest server that
// records every request and answers with handler.
type fakeEndpoint struct {
	*httptest.Server
	handler http.HandlerFunc

	mu   sync.Mutex // guards reqs
	reqs []recorded
}

func newEndpoint(t *testing.T, handler http.HandlerFunc) *fakeEndpoint {
	t.Helper()
	f := &fakeEndpoint{handler: handler}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Form: form})
		f.mu.Unlock()
		f.handler(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEndpoint) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// jsonHandler answers every request with status and body as JSON.
func jsonHandler(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const okBody = `{"access_token":"at-new","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-new"}`

func validConfig(tokenURL string) *Config {
	return &Config{TokenURL: tokenURL, ClientID: "client", ClientSecret: "secret", AuthStyle: AuthStyleHeader}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []string // substrings of the error; none means valid
	}{
		{"valid header", func(c *Config) {}, nil},
		{"valid body", func(c *Config) { c.AuthStyle = AuthStyleBody }, nil},
		{"valid http loopback with query", func(c *Config) { c.TokenURL = "http://127.0.0.1:9/token?tenant=x" }, nil},
		{"public client without secret", func(c *Config) { c.ClientSecret = "" }, nil},
		{"valid scopes and params", func(c *Config) {
			c.Scopes = []string{"read", "write:all"}
			c.Params = url.Values{"audience": {"api"}, "resource": {"https://a", "https://b"}}
		}, nil},
		{"empty TokenURL", func(c *Config) { c.TokenURL = "" }, []string{"TokenURL is empty"}},
		{"relative TokenURL", func(c *Config) { c.TokenURL = "/oauth/token" }, []string{"TokenURL is relative"}},
		{"host without scheme", func(c *Config) { c.TokenURL = "idp.example.com/token" }, []string{"TokenURL is relative"}},
		{"non-http scheme", func(c *Config) { c.TokenURL = "ftp://idp.example.com/token" }, []string{`scheme "ftp" is not http or https`}},
		{"file scheme", func(c *Config) { c.TokenURL = "file:///etc/passwd" }, []string{`scheme "file"`}},
		{"no host", func(c *Config) { c.TokenURL = "https:///token" }, []string{"TokenURL has no host"}},
		{"opaque", func(c *Config) { c.TokenURL = "https:idp.example.com" }, []string{"TokenURL has no host"}},
		{"unparseable", func(c *Config) { c.TokenURL = "https://idp.example.com/%zz" }, []string{"TokenURL is not a valid URL"}},
		{"user info", func(c *Config) { c.TokenURL = "https://user:pw@idp.example.com/token" }, []string{"user information"}},
		{"fragment", func(c *Config) { c.TokenURL = "https://idp.example.com/token#x" }, []string{"fragment"}},
		{"missing ClientID", func(c *Config) { c.ClientID = "" }, []string{"ClientID is empty"}},
		{"zero AuthStyle", func(c *Config) { c.AuthStyle = 0 }, []string{"AuthStyle is not set", "AuthStyleHeader", "AuthStyleBody"}},
		{"unknown AuthStyle", func(c *Config) { c.AuthStyle = 7 }, []string{"AuthStyle 7 is unknown"}},
		{"negative DefaultLifetime", func(c *Config) { c.DefaultLifetime = -time.Second }, []string{"DefaultLifetime -1s is negative"}},
		{"scope with a space", func(c *Config) { c.Scopes = []string{"read write"} }, []string{"Scopes[0] is not a valid scope token"}},
		{"empty scope", func(c *Config) { c.Scopes = []string{"read", ""} }, []string{"Scopes[1]"}},
		{"reserved params", func(c *Config) {
			c.Params = url.Values{"grant_type": {"password"}, "client_secret": {"px-value-42"}, "audience": {"ok"}}
		}, []string{"Params may not set client_secret, grant_type"}},
		{"several problems at once", func(c *Config) { c.TokenURL = ""; c.ClientID = ""; c.AuthStyle = 0 },
			[]string{"TokenURL is empty", "ClientID is empty", "AuthStyle is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig("https://idp.example.com/oauth/token")
			c.ClientSecret = "cs-value-42"
			tt.modify(c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate succeeded, want an error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if msg := err.Error(); strings.Contains(msg, "cs-value-42") || strings.Contains(msg, "px-value-42") || strings.Contains(msg, "pw@") {
				t.Errorf("error %q quotes a secret", err)
			}
		})
	}
	var nilConfig *Config
	if err := nilConfig.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil Config: Validate = %v, want ErrInvalidConfig", err)
	}
}

func TestInvalidRequestsAreNotSent(t *testing.T) {
	f := newEndpoint(t, jsonHandler(200, okBody))
	verifier := strings.Repeat("v", 43)
	tests := []struct {
		name string
		call func(c *Config) (*Token, error)
		bad  func(c *Config)
	}{
		{"empty TokenURL", func(c *Config) (*Token, error) { return c.ClientCredentials(t.Context()) }, func(c *Config) { c.TokenURL = "" }},
		{"relative TokenURL", func(c *Config) (*Token, error) { return c.Refresh(t.Context(), "rt") }, func(c *Config) { c.TokenURL = "/token" }},
		{"missing ClientID", func(c *Config) (*Token, error) { return c.Exchange(t.Context(), "code", "", verifier) }, func(c *Config) { c.ClientID = "" }},
		{"zero AuthStyle", func(c *Config) (*Token, error) { return c.Refresh(t.Context(), "rt") }, func(c *Config) { c.AuthStyle = 0 }},
		{"reserved param", func(c *Config) (*Token, error) { return c.ClientCredentials(t.Context()) }, func(c *Config) { c.Params = url.Values{"scope": {"x"}} }},
		{"empty refresh token", func(c *Config) (*Token, error) { return c.Refresh(t.Context(), "") }, nil},
		{"empty code", func(c *Config) (*Token, error) { return c.Exchange(t.Context(), "", "", verifier) }, nil},
		{"short PKCE verifier", func(c *Config) (*Token, error) { return c.Exchange(t.Context(), "code", "", "short") }, nil},
		{"PKCE verifier with bad characters", func(c *Config) (*Token, error) {
			return c.Exchange(t.Context(), "code", "", strings.Repeat("v", 42)+"!")
		}, nil},
		{"grant without grant_type", func(c *Config) (*Token, error) {
			return c.Grant(t.Context(), url.Values{"audience": {"x"}})
		}, nil},
		{"grant with client_secret", func(c *Config) (*Token, error) {
			return c.Grant(t.Context(), url.Values{"grant_type": {"client_credentials"}, "client_secret": {"x"}})
		}, nil},
		{"nil context", func(c *Config) (*Token, error) {
			var ctx context.Context
			return c.ClientCredentials(ctx)
		}, nil},
		{"nil Config", func(c *Config) (*Token, error) {
			var nilConfig *Config
			return nilConfig.ClientCredentials(t.Context())
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(f.URL + "/token")
			if tt.bad != nil {
				tt.bad(c)
			}
			tok, err := tt.call(c)
			if err == nil || tok != nil {
				t.Fatalf("got token %v, err %v; want an error", tok, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error", err)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			if Class(err) != "invalid_config" || !IsPermanent(err) || e.StatusCode != 0 {
				t.Errorf("Class %q, permanent %v, status %d; want invalid_config, true, 0", Class(err), IsPermanent(err), e.StatusCode)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
		})
	}
}

func TestGrantRequests(t *testing.T) {
	verifier := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	tests := []struct {
		name     string
		style    AuthStyle
		call     func(c *Config) (*Token, error)
		wantForm url.Values // without client authentication and Config.Params
	}{
		{"client_credentials", AuthStyleHeader,
			func(c *Config) (*Token, error) { return c.ClientCredentials(t.Context()) },
			url.Values{"grant_type": {"client_credentials"}, "scope": {"read write:all"}}},
		{"refresh_token", AuthStyleHeader,
			func(c *Config) (*Token, error) { return c.Refresh(t.Context(), "rt-old") },
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-old"}, "scope": {"read write:all"}}},
		{"authorization_code with PKCE", AuthStyleHeader,
			func(c *Config) (*Token, error) {
				return c.Exchange(t.Context(), "code-1", "https://app.example.com/cb", verifier)
			},
			url.Values{"grant_type": {"authorization_code"}, "code": {"code-1"}, "redirect_uri": {"https://app.example.com/cb"}, "code_verifier": {verifier}}},
		{"authorization_code without redirect or verifier", AuthStyleBody,
			func(c *Config) (*Token, error) { return c.Exchange(t.Context(), "code-1", "", "") },
			url.Values{"grant_type": {"authorization_code"}, "code": {"code-1"}}},
		{"client_credentials body", AuthStyleBody,
			func(c *Config) (*Token, error) { return c.ClientCredentials(t.Context()) },
			url.Values{"grant_type": {"client_credentials"}, "scope": {"read write:all"}}},
		{"refresh_token body", AuthStyleBody,
			func(c *Config) (*Token, error) { return c.Refresh(t.Context(), "rt-old") },
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-old"}, "scope": {"read write:all"}}},
		{"generic grant", AuthStyleHeader,
			func(c *Config) (*Token, error) {
				return c.Grant(t.Context(), url.Values{
					"grant_type":    {"urn:ietf:params:oauth:grant-type:token-exchange"},
					"subject_token": {"st"},
					"audience":      {"override"},
				})
			},
			url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {"st"}, "audience": {"override"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newEndpoint(t, jsonHandler(200, okBody))
			c := &Config{
				TokenURL:     f.URL + "/oauth/token",
				ClientID:     "client-1",
				ClientSecret: "secret-1",
				AuthStyle:    tt.style,
				Scopes:       []string{"read", "write:all"},
				Params:       url.Values{"audience": {"https://api.example.com"}, "resource": {"https://r1", "https://r2"}},
			}
			tok, err := tt.call(c)
			if err != nil {
				t.Fatalf("grant: %v", err)
			}
			if tok.AccessToken != "at-new" || tok.RefreshToken != "rt-new" {
				t.Errorf("token = %#v", tokenFields(*tok))
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/oauth/token" {
				t.Errorf("request %s %s, want POST /oauth/token", r.Method, r.Path)
			}
			if got := r.Header.Get("Accept"); got != "application/json" {
				t.Errorf("Accept = %q", got)
			}
			if got := r.Header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", got)
			}

			want := url.Values{}
			for k, v := range c.Params {
				want[k] = v
			}
			for k, v := range tt.wantForm {
				want[k] = v
			}
			switch tt.style {
			case AuthStyleHeader:
				id, secret, ok := parseBasic(t, r.Header.Get("Authorization"))
				if !ok || id != "client-1" || secret != "secret-1" {
					t.Errorf("Basic credentials = %q, %q, %v", id, secret, ok)
				}
			case AuthStyleBody:
				if h := r.Header.Get("Authorization"); h != "" {
					t.Errorf("Authorization = %q, want none with client_secret_post", h)
				}
				want.Set("client_id", "client-1")
				want.Set("client_secret", "secret-1")
			}
			if !reflect.DeepEqual(r.Form, want) {
				t.Errorf("form\n got %v\nwant %v", r.Form, want)
			}
		})
	}
}

// parseBasic decodes a client_secret_basic header, undoing the form
// encoding of RFC 6749 §2.3.1.
func parseBasic(t *testing.T, h string) (id, secret string, ok bool) {
	t.Helper()
	raw, found := strings.CutPrefix(h, "Basic ")
	if !found {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		t.Fatalf("decode Basic: %v", err)
	}
	encID, encSecret, found := strings.Cut(string(dec), ":")
	if !found {
		return "", "", false
	}
	id, err1 := url.QueryUnescape(encID)
	secret, err2 := url.QueryUnescape(encSecret)
	return id, secret, err1 == nil && err2 == nil
}

func TestBasicAuthFormEncodesCredentials(t *testing.T) {
	f := newEndpoint(t, jsonHandler(200, okBody))
	c := &Config{TokenURL: f.URL, ClientID: "my client:1", ClientSecret: "p@ss:w/rd+é%", AuthStyle: AuthStyleHeader}
	if _, err := c.ClientCredentials(t.Context()); err != nil {
		t.Fatalf("ClientCredentials: %v", err)
	}
	got := f.requests()[0].Header.Get("Authorization")
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("my+client%3A1:p%40ss%3Aw%2Frd%2B%C3%A9%25"))
	if got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}
	id, secret, ok := parseBasic(t, got)
	if !ok || id != c.ClientID || secret != c.ClientSecret {
		t.Errorf("round trip: %q %q %v", id, secret, ok)
	}
	if form := f.requests()[0].Form; form.Has("client_id") || form.Has("client_secret") {
		t.Errorf("client_secret_basic also sent credentials in the body: %v", form)
	}
}

func TestPublicClientSendsOnlyClientID(t *testing.T) {
	for _, style := range []AuthStyle{AuthStyleHeader, AuthStyleBody} {
		f := newEndpoint(t, jsonHandler(200, okBody))
		c := &Config{TokenURL: f.URL, ClientID: "public", AuthStyle: style}
		if _, err := c.Exchange(t.Context(), "code", "", strings.Repeat("v", 43)); err != nil {
			t.Fatalf("%s: Exchange: %v", style, err)
		}
		r := f.requests()[0]
		if r.Form.Get("client_id") != "public" || r.Form.Has("client_secret") {
			t.Errorf("%s: form = %v, want client_id and no client_secret", style, r.Form)
		}
		if h := r.Header.Get("Authorization"); h != "" {
			t.Errorf("%s: Authorization = %q, want none for a public client", style, h)
		}
	}
}

func TestRefreshIsExactlyOnePOST(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		timeout time.Duration
		class   string
	}{
		{"success", jsonHandler(200, okBody), 0, ""},
		{"invalid_grant", jsonHandler(400, `{"error":"invalid_grant"}`), 0, "invalid_grant"},
		{"invalid_client", jsonHandler(401, `{"error":"invalid_client"}`), 0, "invalid_client"},
		{"server error", jsonHandler(500, `{"error":"server_error"}`), 0, "server_error"},
		{"503 HTML", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
			io.WriteString(w, "<h1>down</h1>")
		}, 0, "http_503"},
		{"429", jsonHandler(429, `{}`), 0, "http_429"},
		{"malformed", jsonHandler(200, `{"access_token":`), 0, "malformed_response"},
		{"connection dropped", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, 0, "network"},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, 100 * time.Millisecond, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newEndpoint(t, tt.handler)
			for _, style := range []AuthStyle{AuthStyleHeader, AuthStyleBody} {
				before := len(f.requests())
				c := validConfig(f.URL)
				c.AuthStyle = style
				if tt.timeout > 0 {
					c.HTTPClient = &http.Client{Timeout: tt.timeout}
				}
				_, err := c.Refresh(t.Context(), "rt-once")
				if got := Class(err); got != tt.class {
					t.Errorf("%s: Class = %q, want %q (err %v)", style, got, tt.class, err)
				}
				if err != nil {
					var e *Error
					if !errors.As(err, &e) {
						t.Errorf("%s: error %T is not an *Error", style, err)
					}
				}
				// A second attempt would be made before Refresh returns: the
				// handler records a request before it answers.
				reqs := f.requests()[before:]
				if len(reqs) != 1 {
					t.Fatalf("%s: %d requests, want exactly 1", style, len(reqs))
				}
				if got := reqs[0].Form.Get("refresh_token"); got != "rt-once" {
					t.Errorf("%s: refresh_token = %q", style, got)
				}
			}
		})
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	target := newEndpoint(t, jsonHandler(200, okBody))
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			f := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/stolen", status)
			})
			_, err := validConfig(f.URL).Refresh(t.Context(), "rt-once")
			if got, want := Class(err), fmt.Sprintf("http_%d", status); got != want {
				t.Errorf("Class = %q, want %q (err %v)", got, want, err)
			}
			if n := len(f.requests()); n != 1 {
				t.Errorf("%d requests to the endpoint, want 1", n)
			}
			if n := len(target.requests()); n != 0 {
				t.Errorf("redirect followed: %d requests to the target", n)
			}
		})
	}
}

func TestHTTPClientIsNotModified(t *testing.T) {
	f := newEndpoint(t, jsonHandler(200, okBody))
	hc := &http.Client{Timeout: 5 * time.Second}
	c := validConfig(f.URL)
	c.HTTPClient = hc
	if _, err := c.ClientCredentials(t.Context()); err != nil {
		t.Fatalf("ClientCredentials: %v", err)
	}
	if hc.CheckRedirect != nil {
		t.Error("the caller's http.Client was modified")
	}
}

func TestContextErrors(t *testing.T) {
	arrived := make(chan struct{}, 1)
	f := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-arrived
			cancel()
		}()
		_, err := validConfig(f.URL).Refresh(ctx, "rt")
		if !errors.Is(err, context.Canceled) || Class(err) != "canceled" {
			t.Fatalf("err = %v (class %q), want context.Canceled", err, Class(err))
		}
		var e *Error
		if !errors.As(err, &e) || e.Permanent() {
			t.Errorf("want a temporary *Error, got %#v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := validConfig(f.URL).ClientCredentials(ctx)
		<-arrived
		if !errors.Is(err, context.DeadlineExceeded) || Class(err) != "timeout" {
			t.Fatalf("err = %v (class %q), want a timeout", err, Class(err))
		}
	})
	t.Run("already canceled", func(t *testing.T) {
		before := len(f.requests())
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := validConfig(f.URL).ClientCredentials(ctx)
		if Class(err) != "canceled" {
			t.Fatalf("err = %v (class %q), want canceled", err, Class(err))
		}
		if n := len(f.requests()) - before; n != 0 {
			t.Errorf("%d requests sent with a canceled context", n)
		}
	})
}

func TestBodyReadTimeout(t *testing.T) {
	f := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		io.WriteString(w, `{"access_token":`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c := validConfig(f.URL)
	c.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond}
	_, err := c.ClientCredentials(t.Context())
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 200 || Class(err) != "timeout" {
		t.Fatalf("err = %v (class %q), want a timeout reading a 200 body", err, Class(err))
	}
}

func TestNetworkErrorHidesURLQuery(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	c := validConfig("http://" + addr + "/token?api_key=querysecret123")
	_, err = c.ClientCredentials(t.Context())
	if Class(err) != "network" {
		t.Fatalf("err = %v (class %q), want network", err, Class(err))
	}
	if IsPermanent(err) {
		t.Error("a network error is permanent")
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("the *url.Error is not reachable through errors.As: %v", err)
	}
	if strings.Contains(err.Error(), "querysecret123") {
		t.Errorf("error quotes the URL query: %v", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not say which endpoint failed", err)
	}
}

func TestHugeBodyIsReadAtMostOnce(t *testing.T) {
	var written int64
	var mu sync.Mutex // guards written
	f := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		io.WriteString(w, `{"access_token":"at","pad":"`)
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for i := 0; i < 1024; i++ { // up to 32 MiB, unless the client hangs up
			n, err := w.Write(chunk)
			mu.Lock()
			written += int64(n)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	_, err := validConfig(f.URL).ClientCredentials(t.Context())
	if !errors.Is(err, ErrMalformedResponse) || Class(err) != "malformed_response" {
		t.Fatalf("err = %v (class %q), want a malformed response", err, Class(err))
	}
	if !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("error %q does not say the body is too large", err)
	}
	f.Close() // waits for the handler
	mu.Lock()
	defer mu.Unlock()
	if written >= 32<<20 {
		t.Errorf("the server wrote all %d bytes: the client kept reading", written)
	}
}

func TestClockAndDefaultLifetime(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	body := `{"access_token":"at"}`
	f := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	c := validConfig(f.URL)
	c.Now = func() time.Time { return now }
	c.DefaultLifetime = 10 * time.Minute

	tok, err := c.ClientCredentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Expiry.Equal(now.Add(10*time.Minute)) || tok.ExpiresIn != 0 {
		t.Errorf("missing expires_in: Expiry %v, ExpiresIn %v", tok.Expiry, tok.ExpiresIn)
	}

	body = `{"access_token":"at","expires_in":"90"}`
	tok, err = c.ClientCredentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Expiry.Equal(now.Add(90*time.Second)) || tok.ExpiresIn != 90*time.Second {
		t.Errorf("expires_in 90: Expiry %v, ExpiresIn %v", tok.Expiry, tok.ExpiresIn)
	}

	c.Now = nil
	before := time.Now()
	tok, err = c.ClientCredentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Expiry.Before(before.Add(90*time.Second)) || tok.Expiry.After(time.Now().Add(90*time.Second)) {
		t.Errorf("real clock: Expiry %v not within the request", tok.Expiry)
	}
}

func TestRequestSecretsAreScrubbedFromErrors(t *testing.T) {
	// Short secrets that no heuristic would recognize: only knowing what the
	// request carried can keep them out of errors.
	const (
		clientSecret = "hunter2 pw+/"
		refreshToken = "rt-short"
		code         = "abc"
		verifier     = "VERIFIERverifierVERIFIERverifierVERIFIERver"
		assertion    = "assert-xyz"
	)
	secrets := []string{clientSecret, url.QueryEscape(clientSecret), refreshToken, code, verifier, assertion}

	echoForm := func(r *http.Request) string {
		r.ParseForm()
		return r.PostForm.Encode() + " " + strings.Join(valuesOf(r.PostForm), " ")
	}
	handlers := map[string]http.HandlerFunc{
		"JSON description": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":"invalid_grant","error_description":%q}`, "got "+echoForm(r))
		},
		"JSON message": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			fmt.Fprintf(w, `{"message":%q}`, echoForm(r))
		},
		"HTML page": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(502)
			fmt.Fprintf(w, "<html><body><pre>%s</pre></body></html>", echoForm(r))
		},
		"error_uri": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":"invalid_request","error_uri":%q}`, "https://idp.example.com/?"+echoForm(r))
		},
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			f := newEndpoint(t, h)
			for _, style := range []AuthStyle{AuthStyleHeader, AuthStyleBody} {
				c := validConfig(f.URL)
				c.ClientSecret = clientSecret
				c.AuthStyle = style
				c.Params = url.Values{"client_assertion": {assertion}}
				_, err := c.Refresh(t.Context(), refreshToken)
				if err == nil {
					t.Fatal("Refresh succeeded")
				}
				assertNoSecrets(t, err, secrets)
				_, err = c.Exchange(t.Context(), code, "", verifier)
				if err == nil {
					t.Fatal("Exchange succeeded")
				}
				assertNoSecrets(t, err, secrets)
			}
		})
	}
}

func valuesOf(v url.Values) []string {
	var out []string
	for _, vs := range v {
		out = append(out, vs...)
	}
	return out
}

func TestErrorAndTokenLoggingHideSecrets(t *testing.T) {
	f := newEndpoint(t, jsonHandler(200, `{"access_token":"`+echoAccess+`","refresh_token":"`+echoRefresh+`","expires_in":60,"scope":"read"}`))
	c := validConfig(f.URL)
	c.ClientSecret = echoSecret
	tok, err := c.Refresh(t.Context(), "rt-old")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("refreshed", "token", tok, "token_value", *tok, "config", c, "config_value", *c)
	fmt.Fprintf(&buf, "%v %+v %#v %s %v %+v %#v", tok, tok, tok, *tok, c, c, *c)

	out := buf.String()
	for _, s := range []string{echoAccess, echoRefresh, echoSecret} {
		if strings.Contains(out, s) {
			t.Errorf("secret %q in formatted output:\n%s", s, out)
		}
	}
	for _, want := range []string{"read", "client_secret_basic", "has_refresh_token"} {
		if !strings.Contains(out, want) {
			t.Errorf("formatted output lacks %q:\n%s", want, out)
		}
	}
}

func TestAuthStyleNames(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want AuthStyle
	}{
		{"header", AuthStyleHeader}, {"client_secret_basic", AuthStyleHeader},
		{"body", AuthStyleBody}, {"client_secret_post", AuthStyleBody},
	} {
		got, err := ParseAuthStyle(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseAuthStyle(%q) = %v, %v", tt.in, got, err)
		}
	}
	for _, bad := range []string{"", "auto", "Header"} {
		if _, err := ParseAuthStyle(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseAuthStyle(%q) = %v, want ErrInvalidConfig", bad, err)
		}
	}
	if AuthStyleHeader.String() != "client_secret_basic" || AuthStyleBody.String() != "client_secret_post" || AuthStyle(0).String() != "AuthStyle(0)" {
		t.Error("AuthStyle.String")
	}
}
