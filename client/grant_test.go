package client

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

const (
	testClientID     = "svc"
	testClientSecret = "s3cr3t-client-secret-value"
)

// newIdP starts an oauthtest server on clk's time with the test client.
func newIdP(t *testing.T, clk *fakeClock, opts ...oauthtest.Option) *oauthtest.Server {
	t.Helper()
	opts = append([]oauthtest.Option{oauthtest.WithClient(testClientID, testClientSecret), oauthtest.WithNow(clk.Now)}, opts...)
	srv := oauthtest.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func idpConfig(srv *oauthtest.Server) Config {
	return Config{TokenURL: srv.TokenURL(), ClientID: testClientID, ClientSecret: testClientSecret, AuthStyle: AuthStyleHeader}
}

// closeSource closes s at the end of the test and checks for goroutines.
func closeSource(t *testing.T, s *TokenSource) *TokenSource {
	t.Helper()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkSourceStopped(t, s)
	})
	return s
}

func TestClientCredentialsAgainstIdP(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk, oauthtest.WithLifetime(2*time.Second))
	for _, style := range []AuthStyle{AuthStyleHeader, AuthStyleBody} {
		t.Run(style.String(), func(t *testing.T) {
			cfg := idpConfig(srv)
			cfg.AuthStyle = style
			s, err := ClientCredentials(cfg, WithClock(clk))
			if err != nil {
				t.Fatal(err)
			}
			closeSource(t, s)
			before := srv.Stats().TokenRequests["client_credentials"]
			tok := mustToken(t, s)
			if !srv.ValidAccessToken(tok.AccessToken) || tok.TokenType != "Bearer" || !tok.Expiry.Equal(clk.Now().Add(2*time.Second)) {
				t.Fatalf("token %s valid=%v expiry %v", tok.TokenType, srv.ValidAccessToken(tok.AccessToken), tok.Expiry.Sub(clk.Now()))
			}
			// Refreshed in the background a third of its life (667 ms) before expiry.
			clk.waitTimer(t, tok.Expiry.Add(-667*time.Millisecond))
			clk.AdvanceTo(tok.Expiry.Add(-667 * time.Millisecond))
			eventually(t, func() bool { return mustToken(t, s).AccessToken != tok.AccessToken }, "a new token")
			if got := srv.Stats().TokenRequests["client_credentials"] - before; got != 2 {
				t.Fatalf("token requests = %d, want 2", got)
			}
		})
	}
}

func TestRefreshTokenRotationPersistedAcrossRestarts(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk, oauthtest.WithLifetime(time.Minute), oauthtest.WithRotation(true), oauthtest.WithReuseDetection(0))
	issued := srv.IssueRefreshToken(testClientID, "")
	path := filepath.Join(t.TempDir(), "token.json")
	fs, err := NewFileStore(path)
	if err != nil {
		t.Fatal(err)
	}

	s, err := RefreshToken(idpConfig(srv), issued, WithStore(fs), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, s)
	for range 5 {
		at := tok.Expiry.Add(-20 * time.Second)
		clk.waitTimer(t, at)
		clk.AdvanceTo(at)
		old := tok.AccessToken
		eventually(t, func() bool { tok = mustToken(t, s); return tok.AccessToken != old }, "a refreshed token")
		if !srv.ValidAccessToken(tok.AccessToken) {
			t.Fatal("refreshed token not valid at the provider")
		}
	}
	stored, err := fs.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stored.RefreshToken == issued || stored.RefreshToken != tok.RefreshToken || stored.AccessToken != tok.AccessToken {
		t.Fatal("the file does not hold the latest rotated token")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart with the originally issued refresh token uses the stored,
	// rotated one: the provider never sees a refresh token twice.
	clk.Advance(2 * time.Minute)
	s2, err := RefreshToken(idpConfig(srv), issued, WithStore(fs), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s2)
	tok2 := mustToken(t, s2)
	if !srv.ValidAccessToken(tok2.AccessToken) {
		t.Fatal("token after restart not valid")
	}
	st := srv.Stats()
	if st.ReuseDetections != 0 || srv.MaxPresentations() != 1 || st.TokenRequests["refresh_token"] != 7 {
		t.Fatalf("reuse detections %d, max presentations %d, refreshes %d; want 0, 1, 7",
			st.ReuseDetections, srv.MaxPresentations(), st.TokenRequests["refresh_token"])
	}
}

func TestRefreshWithoutRotationKeepsRefreshToken(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk, oauthtest.WithLifetime(time.Minute))
	issued := srv.IssueRefreshToken(testClientID, "")
	st := NewMemoryStore()
	s, err := RefreshToken(idpConfig(srv), issued, WithStore(st), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	tok := mustToken(t, s)
	clk.waitTimer(t, tok.Expiry.Add(-20*time.Second))
	clk.AdvanceTo(tok.Expiry.Add(-20 * time.Second))
	eventually(t, func() bool { return mustToken(t, s).AccessToken != tok.AccessToken }, "a refreshed token")
	saved, _ := st.Load(context.Background())
	if saved.RefreshToken != issued || srv.Presentations(issued) != 2 {
		t.Fatalf("stored refresh token changed, or presented %d times (want 2)", srv.Presentations(issued))
	}
}

func TestProviderFaults(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk, oauthtest.WithLifetime(time.Hour))

	t.Run("503 with Retry-After", func(t *testing.T) {
		srv.Script(oauthtest.Fault{Kind: oauthtest.FaultServerError, Status: 503, RetryAfter: "7"})
		s, _ := ClientCredentials(idpConfig(srv), WithClock(clk), withRandom(0))
		closeSource(t, s)
		_, err := s.Token()
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != 503 || RetryAfter(err) != 7*time.Second || IsPermanent(err) {
			t.Fatalf("err = %v", err)
		}
		// The next attempt waits for the Retry-After, not the 0.5 s backoff.
		next := clk.Now().Add(7 * time.Second)
		clk.waitTimer(t, next)
		clk.AdvanceTo(next)
		eventually(t, func() bool { _, err := s.Token(); return err == nil }, "a token after the retry")
	})
	t.Run("429", func(t *testing.T) {
		srv.Script(oauthtest.Fault{Kind: oauthtest.FaultTooManyRequests, RetryAfter: "3"})
		s, _ := ClientCredentials(idpConfig(srv), WithClock(clk), withRandom(0))
		closeSource(t, s)
		if _, err := s.Token(); RetryAfter(err) != 3*time.Second || IsPermanent(err) {
			t.Fatalf("err = %v", err)
		}
		clk.waitTimer(t, clk.Now().Add(3*time.Second))
	})
	t.Run("missing expires_in", func(t *testing.T) {
		srv.Script(oauthtest.Fault{Kind: oauthtest.FaultMissingExpiresIn})
		s, _ := ClientCredentials(idpConfig(srv), WithClock(clk), WithDefaultLifetime(20*time.Minute))
		closeSource(t, s)
		tok := mustToken(t, s)
		if !tok.Expiry.Equal(clk.Now().Add(20 * time.Minute)) {
			t.Fatalf("expiry in %v, want the default lifetime 20m", tok.Expiry.Sub(clk.Now()))
		}
	})
	t.Run("invalid_grant", func(t *testing.T) {
		srv.Script(oauthtest.Fault{Kind: oauthtest.FaultOAuthError, Code: "invalid_grant"})
		s, _ := RefreshToken(idpConfig(srv), "some-refresh-token", WithClock(clk))
		closeSource(t, s)
		before := srv.Stats().TokenRequests["refresh_token"]
		for range 3 {
			if _, err := s.Token(); !errors.Is(err, ErrInvalidGrant) || !IsPermanent(err) {
				t.Fatalf("err = %v", err)
			}
		}
		clk.Advance(time.Hour)
		time.Sleep(5 * time.Millisecond)
		if got := srv.Stats().TokenRequests["refresh_token"] - before; got != 1 {
			t.Fatalf("token requests = %d, want exactly 1", got)
		}
	})
	t.Run("client auth style refused: one request", func(t *testing.T) {
		strict := newIdP(t, clk, oauthtest.WithAuthStyles(true, false))
		cfg := idpConfig(strict)
		cfg.AuthStyle = AuthStyleBody
		s, _ := ClientCredentials(cfg, WithClock(clk))
		closeSource(t, s)
		if _, err := s.Token(); !errors.Is(err, ErrInvalidClient) || !IsPermanent(err) {
			t.Fatalf("err = %v", err)
		}
		if got := strict.Stats().TokenRequests["client_credentials"]; got != 1 {
			t.Fatalf("token requests = %d, want 1 (no probing of another style)", got)
		}
	})
}

func TestBadInputStoresNothing(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk)
	good := idpConfig(srv)
	dir := t.TempDir()
	path := filepath.Join(dir, "token.json")
	fs, err := NewFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordStore{}
	noURL := good
	noURL.TokenURL = ""
	noStyle := good
	noStyle.AuthStyle = 0
	noID := good
	noID.ClientID = ""
	for _, tc := range []struct {
		name string
		mk   func() (*TokenSource, error)
		want string
	}{
		{"empty token URL", func() (*TokenSource, error) { return ClientCredentials(noURL, WithStore(fs)) }, "TokenURL is empty"},
		{"empty token URL refresh", func() (*TokenSource, error) { return RefreshToken(noURL, "rt", WithStore(rec)) }, "TokenURL is empty"},
		{"no auth style", func() (*TokenSource, error) { return ClientCredentials(noStyle, WithStore(fs)) }, "AuthStyle"},
		{"no client id", func() (*TokenSource, error) { return ClientCredentials(noID, WithStore(fs)) }, "ClientID"},
		{"negative lead", func() (*TokenSource, error) { return ClientCredentials(good, WithStore(fs), WithLead(-time.Second)) }, "lead must not be negative"},
		{"nil store", func() (*TokenSource, error) { return RefreshToken(good, "rt", WithStore(nil)) }, "store must not be nil"},
		{"fraction 0", func() (*TokenSource, error) { return ClientCredentials(good, WithStore(fs), WithLeadFraction(0)) }, "(0, 1)"},
		{"fraction 1", func() (*TokenSource, error) { return ClientCredentials(good, WithStore(fs), WithLeadFraction(1)) }, "(0, 1)"},
		{"no refresh token", func() (*TokenSource, error) { return RefreshToken(good, "") }, "empty refresh token"},
		{"nil wrapped source", func() (*TokenSource, error) { return Wrap(nil, WithStore(fs)) }, "nil token source"},
		{"broker empty URL", func() (*TokenSource, error) { return Broker("", "k", "c", WithStore(fs)) }, "empty broker URL"},
		{"broker bad scheme", func() (*TokenSource, error) { return Broker("ftp://x", "k", "c") }, "http or https"},
		{"broker no key", func() (*TokenSource, error) { return Broker("http://127.0.0.1:1", "", "c") }, "empty API key"},
		{"broker no credential", func() (*TokenSource, error) { return Broker("http://127.0.0.1:1", "k", "") }, "empty credential"},
		{"reserved param", func() (*TokenSource, error) {
			c := good
			c.Params = map[string][]string{"grant_type": {"password"}}
			return ClientCredentials(c, WithStore(fs))
		}, "grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.mk()
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if s != nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "client: ") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testClientSecret) {
				t.Fatal("error contains the client secret")
			}
		})
	}
	checkNoSourceGoroutines(t)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("token file exists after bad input: %v", err)
	}
	if rec.saveCount() != 0 || srv.Stats().TokenRequests["client_credentials"]+srv.Stats().TokenRequests["refresh_token"] != 0 {
		t.Fatal("bad input caused a save or a request")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("files written: %v", entries)
	}
}

func TestWrap(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk, oauthtest.WithLifetime(time.Minute))
	// x/oauth2's own client credentials source: it caches until 10 s
	// before expiry, so only the wrapper's store, hook and single flight
	// are exercised here.
	var mu sync.Mutex
	calls := 0
	src := oauth2.TokenSource(tokenSourceFunc(func() (*oauth2.Token, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return &oauth2.Token{AccessToken: "wrapped-" + itoa(calls)}, nil
	}))
	var seen []string
	s, err := Wrap(src, WithClock(clk), WithDefaultLifetime(time.Minute),
		WithOnToken(func(t *oauth2.Token) { mu.Lock(); seen = append(seen, t.AccessToken); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	tok := mustToken(t, s)
	if tok.AccessToken != "wrapped-1" || !tok.Expiry.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("got %q expiring in %v", tok.AccessToken, tok.Expiry.Sub(clk.Now()))
	}
	clk.waitTimer(t, tok.Expiry.Add(-20*time.Second))
	clk.AdvanceTo(tok.Expiry.Add(-20 * time.Second))
	eventually(t, func() bool { return mustToken(t, s).AccessToken == "wrapped-2" }, "the second token")
	mu.Lock()
	if len(seen) != 2 {
		t.Fatalf("OnToken saw %v", seen)
	}
	mu.Unlock()
	_ = srv

	// An invalid_grant from a wrapped x/oauth2 source is permanent too.
	bad := &oauth2.Config{ClientID: testClientID, ClientSecret: testClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: srv.TokenURL(), AuthStyle: oauth2.AuthStyleInHeader}}
	s2, err := Wrap(bad.TokenSource(context.Background(), &oauth2.Token{RefreshToken: "unknown"}), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s2)
	if _, err := s2.Token(); !errors.Is(err, ErrInvalidGrant) || !IsPermanent(err) {
		t.Fatalf("err = %v, want invalid_grant", err)
	}
}

type tokenSourceFunc func() (*oauth2.Token, error)

func (f tokenSourceFunc) Token() (*oauth2.Token, error) { return f() }

func TestNoSecretInLogsOrErrors(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk, oauthtest.WithLifetime(time.Minute), oauthtest.WithRotation(true), oauthtest.WithReuseDetection(0))
	issued := srv.IssueRefreshToken(testClientID, "")
	lb, logger := newLogBuffer()
	var mu sync.Mutex
	var errs []error
	st := &recordStore{failN: 1}
	s, err := RefreshToken(idpConfig(srv), issued, WithClock(clk), WithLogger(logger), WithStore(st), withRandom(0),
		WithOnSaveError(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	tok := mustToken(t, s)
	// A failed save (retried after 0.5 s), a refresh ahead, a temporary
	// failure, a rejected token, and finally a permanent failure, all
	// logged.
	clk.waitTimer(t, clk.Now().Add(500*time.Millisecond))
	clk.Advance(500 * time.Millisecond)
	srv.Script(oauthtest.Fault{Kind: oauthtest.FaultHTML, Status: 502})
	clk.waitTimer(t, tok.Expiry.Add(-20*time.Second))
	clk.AdvanceTo(tok.Expiry.Add(-20 * time.Second))
	clk.waitTimer(t, clk.Now().Add(500*time.Millisecond))
	clk.Advance(500 * time.Millisecond)
	eventually(t, func() bool { return mustToken(t, s).AccessToken != tok.AccessToken }, "a refreshed token")
	tok = mustToken(t, s)
	s.Invalidate(tok)
	eventually(t, func() bool { return mustToken(t, s).AccessToken != tok.AccessToken }, "a new token")
	srv.RevokeAll()
	s.Invalidate(mustToken(t, s))
	eventually(t, func() bool { _, err := s.Token(); return errors.Is(err, ErrInvalidGrant) }, "invalid_grant")
	_, err = s.Token()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	errs = append(errs, err)
	// Every token obtained went through the store.
	secrets := []string{issued, testClientSecret}
	st.mu.Lock()
	for _, t := range st.saves {
		secrets = append(secrets, t.AccessToken, t.RefreshToken)
	}
	st.mu.Unlock()
	logs := lb.String()
	for _, want := range []string{"token request failed; will retry", "failed permanently", "saving the token failed", "rejected"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if len(secrets) < 10 {
		t.Fatalf("only %d secrets collected", len(secrets))
	}
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		if strings.Contains(logs, sec) {
			t.Errorf("a secret appears in the log:\n%s", logs)
		}
		for _, e := range errs {
			if strings.Contains(e.Error(), sec) {
				t.Errorf("a secret appears in an error: %v", e)
			}
		}
	}
}

func TestHTTPClientOption(t *testing.T) {
	clk := newFakeClock()
	srv := newIdP(t, clk)
	var mu sync.Mutex
	used := 0
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		used++
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})}
	s, err := ClientCredentials(idpConfig(srv), WithClock(clk), WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	mustToken(t, s)
	mu.Lock()
	defer mu.Unlock()
	if used != 1 {
		t.Fatalf("the given client sent %d requests, want 1", used)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
