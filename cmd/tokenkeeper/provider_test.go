package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// TestProviderCLI runs provider add, list, show, update and rm, and the
// credential commands of a provider, against serve: the secret comes from
// standard input or the environment, never shows in an answer, and a
// rotation is one update that every credential's next refresh uses.
func TestProviderCLI(t *testing.T) {
	secret := "provider-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", secret))
	defer idp.Close()
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := cli(secret+"\n", "provider", "add", "idp", "--authorization-url", idp.AuthorizeURL(), "--token-url", idp.TokenURL(),
		"--client-id", "app", "--client-secret-file", "-", "--scopes", "read,write", "--token-param", "audience=api"); err != nil {
		t.Fatalf("provider add: %v %s", err, out)
	}
	// The environment form of the secret.
	env["TOKENKEEPER_CLIENT_SECRET"] = "public-is-not"
	out, err := cli("", "provider", "add", "idp2", "--token-url", idp.TokenURL(), "--client-id", "app2", "--pkce=false", "--json")
	delete(env, "TOKENKEEPER_CLIENT_SECRET")
	var p2 map[string]any
	if err != nil || json.Unmarshal([]byte(out), &p2) != nil || p2["has_client_secret"] != true || p2["pkce"] != false || strings.Contains(out, "public-is-not") {
		t.Fatalf("provider add from the environment: %v %s", err, out)
	}
	out, err = cli("", "provider", "list")
	if err != nil || !strings.Contains(out, "idp2") || !strings.Contains(out, "sealed") || strings.Contains(out, secret) {
		t.Fatalf("provider list: %v %s", err, out)
	}

	rt := idp.IssueRefreshToken("app", "read write") // the provider's default scopes
	if out, err := cli(rt+"\n", "credential", "add", "alice", "--provider", "idp", "--grant-type", "refresh_token",
		"--refresh-token-file", "-", "--end-user-id", "alice@corp"); err != nil {
		t.Fatalf("credential add --provider: %v %s", err, out)
	}
	if out, err := cli("", "credential", "add", "svc", "--provider", "idp"); err != nil {
		t.Fatalf("credential add --provider (client credentials): %v %s", err, out)
	}
	for _, name := range []string{"alice", "svc"} {
		if tok, err := cli("", "token", name); err != nil || !idp.ValidAccessToken(strings.TrimSpace(tok)) {
			t.Fatalf("token %s: %v %q", name, err, tok)
		}
	}
	out, err = cli("", "provider", "show", "idp")
	if err != nil || !strings.Contains(out, "credentials:") || !strings.Contains(out, "audience=api") || strings.Contains(out, secret) {
		t.Fatalf("provider show: %v %s", err, out)
	}
	if !strings.Contains(out, "2") {
		t.Fatalf("provider show does not count 2 credentials: %s", out)
	}
	out, err = cli("", "credential", "list", "--provider", "idp", "--end-user-id", "alice@corp")
	if err != nil || !strings.Contains(out, "alice") || strings.Contains(out, "svc") {
		t.Fatalf("credential list --provider --end-user-id: %v %s", err, out)
	}
	out, err = cli("", "credential", "show", "alice")
	if err != nil || !strings.Contains(out, "provider:") || !strings.Contains(out, "alice@corp") {
		t.Fatalf("credential show: %v %s", err, out)
	}

	// Rotation: one update; the next refresh of each uses the new secret,
	// which is now the only one the provider accepts.
	newSecret := "rotated-secret-" + randomString()
	idp.AddClient("app", newSecret)
	if out, err := cli(newSecret+"\n", "provider", "update", "idp", "--client-secret-file", "-"); err != nil {
		t.Fatalf("provider update: %v %s", err, out)
	}
	for _, name := range []string{"alice", "svc"} {
		if out, err := cli("", "credential", "refresh", name); err != nil || !strings.Contains(out, "expires in") {
			t.Fatalf("refresh %s after the rotation: %v %s", name, err, out)
		}
	}

	// The API base URL and how the proxy presents the token.
	if out, err := cli("", "provider", "update", "idp", "--api-base-url", "https://api.example/v1", "--api-token", "X-Api-Key:"); err != nil {
		t.Fatalf("provider update --api-base-url: %v %s", err, out)
	}
	if out, err := cli("", "provider", "show", "idp"); err != nil || !strings.Contains(out, "https://api.example/v1") || !strings.Contains(out, "X-Api-Key:") {
		t.Fatalf("provider show: %v %s", err, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"provider", "update", "idp", "--api-base-url", "http://api.example/"}, "https"},
		{[]string{"provider", "update", "idp", "--api-token", "Bearer"}, "--api-token"},
		{[]string{"provider", "update", "idp", "--api-token", "Host:"}, "cannot carry a token"},
		{[]string{"provider", "rm", "idp"}, "2 credential"},
		{[]string{"provider", "show", "nope"}, `provider "nope" not found`},
		{[]string{"provider", "update", "idp"}, "nothing to update"},
		{[]string{"provider", "add", "x", "--token-url", "http://example.com/t", "--client-id", "x"}, "https"},
		{[]string{"credential", "add", "y", "--provider", "idp", "--token-url", idp.TokenURL()}, "--token-url is the provider's"},
		{[]string{"credential", "add", "y", "--provider", "nope"}, `provider "nope" not found`},
	} {
		out, err := cli("", tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: err %v, output %q; want %q", tc.args, err, out, tc.want)
		}
	}
	out, _ = cli("", "provider", "add", "--help")
	if i, j := strings.Index(out, "--client-secret-file"), strings.Index(out, "--client-secret string"); i < 0 || j < i {
		t.Errorf("provider add --help does not show the file form before the inline one:\n%s", out)
	}
	for _, args := range [][]string{{"credential", "rm", "alice"}, {"credential", "rm", "svc"}, {"provider", "rm", "idp"}} {
		if out, err := cli("", args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
}
