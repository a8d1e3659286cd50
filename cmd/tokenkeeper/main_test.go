package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls f until it returns a non-empty string or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, f func() string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if s := f(); s != "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	// urlRE finds the URL in serve's "tokenkeeper serving" log line, in
	// the text or the JSON format.
	urlRE = regexp.MustCompile(`tokenkeeper serving".*?"?url"?[=:]"?(http://[0-9.:]+)`)
	keyRE = regexp.MustCompile(`\b(tk_[A-Za-z0-9_-]{40,})`)
)

// servedBroker is a broker started through run.
type servedBroker struct {
	url, key       string
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startServe starts serve with --allow-private-token-urls: the tests'
// provider is oauthtest on loopback.
func startServe(t *testing.T, env map[string]string, args ...string) *servedBroker {
	t.Helper()
	return startServeGuarded(t, env, append([]string{"--allow-private-token-urls"}, args...)...)
}

// startServeGuarded starts serve with exactly the flags given.
func startServeGuarded(t *testing.T, env map[string]string, args ...string) *servedBroker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sb := &servedBroker{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	getenv := func(k string) string { return env[k] }
	go func() {
		sb.done <- run(ctx, append([]string{"tokenkeeper", "serve", "--addr", "127.0.0.1:0"}, args...), getenv, strings.NewReader(""), sb.stdout, sb.stderr)
	}()
	sb.url = waitFor(t, "the serving line", 10*time.Second, func() string {
		if m := urlRE.FindStringSubmatch(sb.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-sb.done:
			t.Fatalf("serve exited: %v\n%s", err, sb.stderr.String())
		default:
		}
		return ""
	})
	if m := keyRE.FindStringSubmatch(sb.stdout.String()); m != nil {
		sb.key = m[1]
	}
	waitFor(t, "healthz", 5*time.Second, func() string {
		resp, err := http.Get(sb.url + "/healthz")
		if err != nil {
			return ""
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return "ok"
		}
		return ""
	})
	t.Cleanup(func() { sb.stop(t) })
	return sb
}

func (sb *servedBroker) stop(t *testing.T) {
	sb.cancel()
	select {
	case err := <-sb.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
		sb.done <- nil
	case <-time.After(20 * time.Second):
		t.Error("serve did not stop within 20s")
	}
}

func apiDo(t *testing.T, method, url, key string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(data, out)
	}
	return resp.StatusCode
}

// The end-to-end test of the broker issue: a 2 s token with rotation, 20 s
// of reads through the HTTP API of a broker started by run: no expired
// token, each refresh token presented once, no reuse detection, no secret in
// any log line.
func TestEndToEndRotationThroughRun(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: a 20 s end-to-end run")
	}
	secret := "e2e-client-secret-" + randomString()
	logs := &syncBuffer{}
	idp := oauthtest.NewServer(oauthtest.WithLifetime(2*time.Second), oauthtest.WithRotation(true),
		oauthtest.WithReuseDetection(0), oauthtest.WithClient("app", secret))
	defer idp.Close()
	rt := idp.IssueRefreshToken("app", "read")

	dir := t.TempDir()
	sb := startServe(t, map[string]string{"TOKENKEEPER_LOG_LEVEL": "debug"}, "--database", filepath.Join(dir, "tk.db"))
	if sb.key == "" {
		t.Fatalf("serve printed no admin key:\n%s", sb.stdout.String())
	}
	if st := apiDo(t, "POST", sb.url+"/v1/credentials", sb.key, map[string]any{
		"name": "rotating", "token_url": idp.TokenURL(), "grant_type": "refresh_token",
		"client_id": "app", "client_secret": secret, "refresh_token": rt,
	}, nil); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}

	seen := map[string]bool{}
	reads, expired := 0, 0
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		var tok struct {
			AccessToken string    `json:"access_token"`
			ExpiresAt   time.Time `json:"expires_at"`
		}
		st := apiDo(t, "GET", sb.url+"/v1/credentials/rotating/token", sb.key, nil, &tok)
		if st != http.StatusOK {
			t.Fatalf("read %d: status %d", reads, st)
		}
		reads++
		if !tok.ExpiresAt.After(time.Now()) || !idp.ValidAccessToken(tok.AccessToken) {
			expired++
		}
		seen[tok.AccessToken] = true
		time.Sleep(25 * time.Millisecond)
	}
	st := idp.Stats()
	t.Logf("%d reads, %d distinct tokens, %d refreshes at the provider, max presentations %d, reuse detections %d",
		reads, len(seen), st.TokenRequests["refresh_token"], idp.MaxPresentations(), st.ReuseDetections)
	if expired != 0 {
		t.Errorf("%d reads returned an expired token", expired)
	}
	if p := idp.MaxPresentations(); p != 1 {
		t.Errorf("a refresh token was presented %d times, want exactly 1", p)
	}
	if st.ReuseDetections != 0 {
		t.Errorf("%d reuse detections", st.ReuseDetections)
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct tokens in 20 s of 2 s tokens", len(seen))
	}

	sb.stop(t)
	all := sb.stdout.String() + sb.stderr.String() + logs.String()
	if !strings.Contains(sb.stderr.String(), "level=DEBUG") {
		t.Fatal("debug logs were not captured: the test would prove nothing")
	}
	secrets := []string{secret, rt}
	for tok := range seen {
		secrets = append(secrets, tok)
	}
	for _, s := range secrets {
		if strings.Contains(sb.stderr.String(), s) {
			t.Fatalf("a secret appears in the logs")
		}
	}
	if strings.Count(all, sb.key) != 2 { // printed once on stdout (key line and the export hint)
		t.Fatalf("the admin key appears %d times in the output, want only the one-time banner", strings.Count(all, sb.key))
	}
}

func TestCLIAgainstServe(t *testing.T) {
	secret := "cli-client-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", secret))
	defer idp.Close()
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := cli(secret+"\n", "credential", "add", "svc", "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret-file", "-"); err != nil {
		t.Fatalf("add: %v %s", err, out)
	}
	tok, err := cli("", "token", "svc")
	if err != nil || !idp.ValidAccessToken(strings.TrimSpace(tok)) {
		t.Fatalf("token: %v %q", err, tok)
	}
	out, err := cli("", "credential", "list")
	if err != nil || !strings.Contains(out, "svc") || !strings.Contains(out, "active") {
		t.Fatalf("list: %v %s", err, out)
	}
	out, err = cli("", "credential", "show", "svc", "--json")
	var shown map[string]any
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown["name"] != "svc" {
		t.Fatalf("show --json: %v %s", err, out)
	}
	if strings.Contains(out, secret) {
		t.Fatal("show prints the client secret")
	}
	if out, err := cli("", "credential", "events", "svc"); err != nil || !strings.Contains(out, "refresh") {
		t.Fatalf("events: %v %s", err, out)
	}
	if out, err := cli("", "credential", "events", "svc", "--kind", "operator"); err != nil || !strings.Contains(out, "created") || strings.Contains(out, "refresh ") {
		t.Fatalf("events --kind operator: %v %s", err, out)
	}
	if out, err := cli("", "credential", "refresh", "svc"); err != nil || !strings.Contains(out, "expires in") {
		t.Fatalf("refresh: %v %s", err, out)
	}
	out, err = cli("", "apikey", "create", "reader", "--role", "consumer", "--credentials", "svc", "--json")
	var created struct{ Key string }
	if err != nil || json.Unmarshal([]byte(out), &created) != nil || !strings.HasPrefix(created.Key, "tk_") {
		t.Fatalf("apikey create: %v %s", err, out)
	}
	tok, _ = cli("", "token", "svc")
	if out, err := cli("", "keys", "rotate"); err != nil || !strings.Contains(out, "re-sealed") || !strings.Contains(out, "JWT signing key") {
		t.Fatalf("keys rotate: %v %s", err, out)
	}
	if tok2, err := cli("", "token", "svc"); err != nil || strings.TrimSpace(tok2) != strings.TrimSpace(tok) {
		t.Fatalf("token after key rotation: %v", err)
	}
	// Errors are clear and exit non-zero.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "nope"}, `credential "nope" not found`},
		{[]string{"credential", "add", "bad name", "--token-url", idp.TokenURL(), "--client-id", "x", "--client-secret", "y"}, "invalid name"},
		{[]string{"credential", "add", "plain", "--token-url", "http://example.com/t", "--client-id", "x", "--client-secret", "y"}, "https"},
		{[]string{"token"}, "expected the credential name"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"credential", "update", "svc"}, "nothing to update"},
	} {
		out, err := cli("", tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: err %v, output %q; want %q", tc.args, err, out, tc.want)
		}
	}
	if out, err := cli("", "credential", "rm", "svc"); err != nil {
		t.Fatalf("rm: %v %s", err, out)
	}
}

func TestInitRefusesInitializedDatabase(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tk.db")
	var out, errb syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "init", "--database", db}, func(string) string { return "" }, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("init: %v %s", err, errb.String())
	}
	if !keyRE.MatchString(out.String()) || !strings.Contains(errb.String(), "Generated a master key") {
		t.Fatalf("init output: %s / %s", out.String(), errb.String())
	}
	err := run(context.Background(), []string{"tokenkeeper", "init", "--database", db}, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "already initialized") {
		t.Fatalf("second init: %v", err)
	}
}

func TestHelpAndFlagsFromEnvironment(t *testing.T) {
	var out, errb syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "--help"}, func(string) string { return "" }, nil, &out, &errb); err != nil || !strings.Contains(out.String(), "serve") {
		t.Fatalf("--help: %v %s", err, out.String())
	}
	out.buf.Reset()
	err := run(context.Background(), []string{"tokenkeeper", "serve", "--help"}, func(string) string { return "" }, nil, &out, &errb)
	if err != nil || !strings.Contains(out.String(), "$TOKENKEEPER_ADDR") {
		t.Fatalf("serve --help: %v %s", err, out.String())
	}
	// An environment variable sets a flag; the command line wins.
	runEnv := func(env map[string]string, args ...string) error {
		var out, errb syncBuffer
		return run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	}
	env := map[string]string{"TOKENKEEPER_SERVER": "ftp://from-env"}
	if err := runEnv(env, "token", "x"); err == nil || !strings.Contains(err.Error(), "ftp://from-env") {
		t.Fatalf("env: %v", err)
	}
	if err := runEnv(env, "token", "x", "--server", "ftp://from-flag"); err == nil || !strings.Contains(err.Error(), "ftp://from-flag") {
		t.Fatalf("flag: %v", err)
	}
	err = runEnv(map[string]string{"TOKENKEEPER_PROVIDER_TIMEOUT": "soon"}, "serve")
	if err == nil || !strings.Contains(err.Error(), "TOKENKEEPER_PROVIDER_TIMEOUT") || exitCode(err) != 2 {
		t.Fatalf("bad env value: %v", err)
	}
	_ = fmt.Sprint()
}

func TestSecondServeOnOneSQLiteFileIsRefused(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tk.db")
	startServe(t, nil, "--database", db)
	var out, errb syncBuffer
	err := run(context.Background(), []string{"tokenkeeper", "serve", "--addr", "127.0.0.1:0", "--database", db}, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "in use by another tokenkeeper process") || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("second serve: %v", err)
	}
}
