package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// credential add waits for the first token: 0 with its expiry, non-zero
// with the provider's error code within the provider timeout; the failed
// credential is kept and the message says how to fix or remove it.
func TestCredentialAddWaitsForFirstToken(t *testing.T) {
	secret := "wait-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", secret))
	defer idp.Close()
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"), "--provider-timeout", "3s")
	cli := cliEnv(map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key})

	out, err := cli(secret+"\n", "credential", "add", "good", "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret-file", "-")
	if err != nil || !strings.Contains(out, "first token expires in") {
		t.Fatalf("add with the right secret: %v %s", err, out)
	}

	start := time.Now()
	out, err = cli("wrong-secret\n", "credential", "add", "bad", "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret-file", "-")
	took := time.Since(start)
	if err == nil || exitCode(err) == 0 {
		t.Fatalf("add with a wrong secret succeeded: %s", out)
	}
	msg := err.Error() + out
	for _, want := range []string{"invalid_client", "needs_reauth", "tokenkeeper credential update bad", "tokenkeeper credential rm bad"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message does not say %q: %s", want, msg)
		}
	}
	t.Log(msg)
	if strings.Contains(msg, "wrong-secret") {
		t.Error("the message quotes the secret")
	}
	if took > 3*time.Second {
		t.Errorf("the failure took %s, more than the provider timeout", took)
	}
	if out, err := cli("", "credential", "show", "bad"); err != nil || !strings.Contains(out, "needs_reauth") {
		t.Fatalf("the failed credential is not kept: %v %s", err, out)
	}

	// An unreachable token endpoint: a temporary error, reported too.
	dead := oauthtest.NewServer()
	deadURL := dead.TokenURL()
	dead.Close()
	out, err = cli("s\n", "credential", "add", "unreachable", "--token-url", deadURL, "--client-id", "app", "--client-secret-file", "-")
	if err == nil || !strings.Contains(err.Error()+out, "status error") {
		t.Fatalf("add with an unreachable token URL: %v %s", err, out)
	}

	// --no-wait returns at once, whatever the provider will say.
	out, err = cli("wrong\n", "credential", "add", "later", "--no-wait", "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret-file", "-")
	if err != nil || !strings.Contains(out, "fetching its first token") {
		t.Fatalf("add --no-wait: %v %s", err, out)
	}

	// Missing flags are named as typed.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"credential", "add", "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret", "x"}, "expected the credential name"},
		{[]string{"credential", "add", "n", "--client-id", "app", "--client-secret", "x"}, "--token-url is required"},
		{[]string{"credential", "add", "n", "--token-url", idp.TokenURL(), "--client-secret", "x"}, "--client-id is required"},
		{[]string{"credential", "add", "n", "--token-url", idp.TokenURL(), "--client-id", "app"}, "--client-secret is required for --grant-type client_credentials"},
	} {
		if out, err := cli("", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v %s; want %q", tc.args, err, out, tc.want)
		}
	}
}
