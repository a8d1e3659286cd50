package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb syncBuffer
	// Bounded: a serve that should have refused to start stops here.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = run(ctx, append([]string{"tokenkeeper"}, args...), func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

// L5: every command that creates a SQLite file creates it 0600.
func TestMigrateCreatesPrivateDatabase(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"migrate", "--database", filepath.Join(dir, "migrated.db")},
		{"init", "--database", filepath.Join(dir, "inited.db")},
	} {
		if _, errs, err := runCmd(t, args...); err != nil {
			t.Fatalf("%s: %v %s", args[0], err, errs)
		}
		db := args[len(args)-1]
		for _, p := range []string{db, db + "-wal", db + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s created %s with mode %#o, want 0600", args[0], filepath.Base(p), perm)
			}
		}
	}
}

// L5: serve refuses a database file that the group or others can read,
// saying which chmod to run.
func TestServeRefusesReadableDatabase(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	db := filepath.Join(t.TempDir(), "tk.db")
	if _, errs, err := runCmd(t, "init", "--database", db); err != nil {
		t.Fatalf("init: %v %s", err, errs)
	}
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCmd(t, "serve", "--addr", "127.0.0.1:0", "--database", db)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+db) {
		t.Fatalf("serve on a 0644 database: %v", err)
	}
	// The key file too.
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(db+".key", 0o640); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCmd(t, "serve", "--addr", "127.0.0.1:0", "--database", db)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+db+".key") {
		t.Fatalf("serve with a 0640 key file: %v", err)
	}
}

// L6: a secret given inline on the command line prints a warning, and the
// help lists the file, standard input and environment forms first.
func TestInlineSecretFlagsWarn(t *testing.T) {
	_, errs, err := runCmd(t, "credential", "add", "--server", "http://127.0.0.1:1", "--api-key", "tk_x",
		"a", "--token-url", "https://idp.example.com/token", "--client-id", "c", "--client-secret", "s")
	if err == nil {
		t.Fatal("credential add against a closed port succeeded")
	}
	for _, f := range []string{"--api-key", "--client-secret"} {
		if !strings.Contains(errs, "warning: "+f+" puts a secret on the command line") {
			t.Errorf("no warning for %s: %s", f, errs)
		}
	}
	if strings.Contains(errs, "tk_x") || strings.Contains(errs, " s ") {
		t.Error("the warning quotes the secret")
	}
	// From the environment: no warning.
	var out, errb syncBuffer
	env := map[string]string{"TOKENKEEPER_API_KEY": "tk_x"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = run(ctx, []string{"tokenkeeper", "credential", "list", "--server", "http://127.0.0.1:1"}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	if strings.Contains(errb.String(), "warning") {
		t.Errorf("a key from the environment warns: %s", errb.String())
	}

	for _, cmd := range [][]string{{"credential", "add"}, {"credential", "update"}, {"testidp"}} {
		help, _, _ := runCmd(t, append(cmd, "--help")...)
		inline := map[string]string{"credential": "--client-secret ", "testidp": "--client "}[cmd[0]]
		safe := map[string]string{"credential": "--client-secret-file", "testidp": "--clients-file"}[cmd[0]]
		i, j := strings.Index(help, "  "+safe), strings.Index(help, "  "+inline)
		if i < 0 || j < 0 || i > j || !strings.Contains(help[max(0, j-200):], "process list") {
			t.Errorf("%s --help: %s at %d, %s at %d:\n%s", cmd, safe, i, inline, j, help)
		}
	}
	if _, _, err := runCmd(t, "testidp", "--clients-file", filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "clients file") {
		t.Errorf("testidp with a missing clients file: %v", err)
	}
}

// L1: serve without --allow-private-token-urls refuses token URLs on
// internal addresses when a credential is created, and its provider
// client refuses them when it dials, so a name that resolves to loopback
// gets nowhere either.
func TestServeRefusesPrivateTokenURLs(t *testing.T) {
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", "s3cret"))
	defer idp.Close()
	sb := startServeGuarded(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	api := &apiClient{base: sb.url, key: sb.key, client: &http.Client{Timeout: 10 * time.Second}}
	add := func(name, tokenURL string) error {
		return api.do(context.Background(), "POST", "/v1/credentials", map[string]any{"name": name, "token_url": tokenURL,
			"grant_type": "client_credentials", "client_id": "app", "client_secret": "s3cret"}, nil)
	}
	for _, u := range []string{idp.TokenURL(), "https://10.0.0.1/token", "https://169.254.169.254/latest/meta-data/"} {
		if err := add("direct", u); err == nil || !strings.Contains(err.Error(), "internal network") {
			t.Fatalf("add with %s: %v", u, err)
		}
	}
	// A name that resolves to loopback passes validation; the dial is
	// refused.
	host, _ := os.Hostname()
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 || !net.ParseIP(addrs[0]).IsLoopback() || strings.EqualFold(host, "localhost") {
		t.Skipf("the host name %q does not resolve to loopback (%v): no name to test the dial-time check with", host, addrs)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(idp.URL(), "http://"))
	if err := add("rebound", "https://"+host+":"+port+"/token"); err != nil {
		t.Fatalf("add with a name: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var c struct {
			Status    string `json:"status"`
			LastError string `json:"last_error"`
		}
		if err := api.do(context.Background(), "GET", "/v1/credentials/rebound", nil, &c); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(c.LastError, "internal network address refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal at dial time: %+v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := idp.Stats().TokenRequests["client_credentials"]; n != 0 {
		t.Fatalf("the loopback provider got %d token requests", n)
	}
}

// Info: the RFC 8414 metadata names the configured issuer (--public-url,
// or the listen address), never the Host header a client sends.
func TestMetadataIssuerIgnoresHostHeader(t *testing.T) {
	issuerOf := func(sb *servedBroker) string {
		req, _ := http.NewRequest("GET", sb.url+"/.well-known/oauth-authorization-server", nil)
		req.Host = "evil.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if te, _ := m["token_endpoint"].(string); strings.Contains(te, "evil.example") {
			t.Fatalf("token_endpoint from the Host header: %s", te)
		}
		s, _ := m["issuer"].(string)
		return s
	}
	sb := startServe(t, map[string]string{"TOKENKEEPER_PUBLIC_URL": "https://broker.example.com/"}, "--database", filepath.Join(t.TempDir(), "a.db"))
	if got := issuerOf(sb); got != "https://broker.example.com" {
		t.Fatalf("issuer with --public-url: %q", got)
	}
	sb = startServe(t, nil, "--database", filepath.Join(t.TempDir(), "b.db"))
	if got := issuerOf(sb); got != sb.url {
		t.Fatalf("issuer without --public-url: %q, want the listen address %s", got, sb.url)
	}
	if _, _, err := runCmd(t, "serve", "--public-url", "http://broker.example.com", "--database", filepath.Join(t.TempDir(), "c.db")); err == nil || !strings.Contains(err.Error(), "--public-url") {
		t.Fatalf("plain-http --public-url off loopback: %v", err)
	}
}

// Info: the CLI refuses a plain-http server that is not on loopback unless
// told it is fine.
func TestCLIRefusesPlainHTTPServerOffLoopback(t *testing.T) {
	_, _, err := runCmd(t, "credential", "list", "--server", "http://broker.example.com:8080")
	if err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("credential list over http off loopback: %v", err)
	}
	// Allowed: the request is tried (and fails on the missing key, before
	// any connection).
	_, _, err = runCmd(t, "credential", "list", "--server", "http://broker.example.com:8080", "--allow-insecure-server")
	if err == nil || strings.Contains(err.Error(), "plain http") {
		t.Fatalf("--allow-insecure-server: %v", err)
	}
}
