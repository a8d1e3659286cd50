package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// Every rm prints what it removed, as text or with --json as a JSON object
// a script can read; removing it again is a clear error that exits
// non-zero. apikey rm, user revoke-sessions, login and logout take --json
// too, and none of them prints a token.
func TestRemoveAndSessionCommandsJSON(t *testing.T) {
	dir := t.TempDir()
	secret := "app-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", secret))
	defer idp.Close()
	sb := startServe(t, nil, "--database", filepath.Join(dir, "tk.db"), "--webhook-allow-private")
	config := filepath.Join(dir, "config")
	cli := cliEnv(map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key, "XDG_CONFIG_HOME": config, "HOME": dir})

	create := func(path string, body map[string]any, out any) {
		t.Helper()
		if st := apiDo(t, "POST", sb.url+path, sb.key, body, out); st != http.StatusCreated {
			t.Fatalf("POST %s: %d", path, st)
		}
	}
	var hook struct{ ID string }
	create("/v1/webhooks", map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"credential.needs_reauth"}}, &hook)
	create("/v1/providers", map[string]any{"name": "idp", "authorization_url": idp.AuthorizeURL(), "token_url": idp.TokenURL(),
		"client_id": "app", "client_secret": secret}, nil)
	create("/v1/credentials", map[string]any{"name": "svc", "token_url": idp.TokenURL(), "grant_type": "client_credentials",
		"client_id": "app", "client_secret": secret}, nil)
	create("/v1/clients", map[string]any{"client_id": "billing", "credentials": []string{"svc"}}, nil)
	password := "bob-password-" + randomString()
	create("/v1/users", map[string]any{"username": "bob", "password": password, "role": "admin"}, nil)

	// --json: an object naming what went; then the same rm again fails
	// with the API's reason and changes nothing.
	for _, tc := range []struct{ kind, name string }{
		{"credential", "svc"}, {"provider", "idp"}, {"client", "billing"}, {"webhook", hook.ID},
	} {
		out, err := cli("", tc.kind, "rm", tc.name, "--json")
		var got removedView
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || got != (removedView{Removed: true, Kind: tc.kind, Name: tc.name}) {
			t.Fatalf("%s rm --json: %v %q", tc.kind, err, out)
		}
		out, err = cli("", tc.kind, "rm", tc.name)
		if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error()+out, "remove "+tc.kind) || !strings.Contains(err.Error()+out, "not found") {
			t.Errorf("%s rm of a removed one: %v %q", tc.kind, err, out)
		}
	}

	// A user's sessions: two logins, ended in one call; then logout finds
	// the session gone from the broker and forgets it.
	for range 2 {
		out, err := cli(password+"\n", "login", "bob", "--password-stdin", "--json")
		if err != nil {
			t.Fatalf("login: %v %q", err, out)
		}
		var got sessionView
		if err := json.Unmarshal([]byte(out[:strings.LastIndexByte(out, '}')+1]), &got); err != nil ||
			got != (sessionView{LoggedIn: true, Server: sb.url, Username: "bob", SessionsFile: filepath.Join(config, "tokenkeeper", "sessions.json")}) {
			t.Fatalf("login --json: %v %q", err, out)
		}
		if !strings.Contains(out, "warning: $TOKENKEEPER_API_KEY is set") {
			t.Errorf("login with an API key set does not warn: %q", out)
		}
		s, _ := (&sessionStore{dir: filepath.Join(config, "tokenkeeper")}).get(sb.url)
		if s == nil || strings.Contains(out, s.AccessToken) || strings.Contains(out, s.RefreshToken) {
			t.Fatalf("login --json: no session kept, or a token printed: %q", out)
		}
	}
	out, err := cli("", "user", "revoke-sessions", "bob", "--json")
	var ended struct {
		Username string `json:"username"`
		Revoked  int    `json:"revoked_sessions"`
	}
	if err != nil || json.Unmarshal([]byte(out), &ended) != nil || ended.Username != "bob" || ended.Revoked != 2 {
		t.Fatalf("user revoke-sessions --json: %v %q", err, out)
	}
	if out, err := cli("", "user", "revoke-sessions", "bob"); err != nil || !strings.Contains(out, `Ended 0 sessions of "bob"`) {
		t.Fatalf("user revoke-sessions again: %v %q", err, out)
	}
	out, err = cli("", "logout", "--json")
	var gone sessionView
	if err != nil || json.Unmarshal([]byte(out), &gone) != nil || !gone.LoggedOut || gone.Username != "bob" || gone.Server != sb.url {
		t.Fatalf("logout --json: %v %q", err, out)
	}
	out, err = cli("", "logout", "--json")
	gone = sessionView{}
	if err != nil || json.Unmarshal([]byte(out), &gone) != nil || gone.LoggedOut || gone.LoggedIn || gone.Username != "" {
		t.Fatalf("logout --json when logged out: %v %q", err, out)
	}
	out, err = cli("", "user", "rm", "bob", "--json")
	var rm removedView
	if err != nil || json.Unmarshal([]byte(out), &rm) != nil || rm != (removedView{Removed: true, Kind: "user", Name: "bob"}) {
		t.Fatalf("user rm --json: %v %q", err, out)
	}

	// apikey rm --json, twice: the second says it was already revoked.
	if out, err := cli("", "apikey", "add", "ops", "--role", "admin"); err != nil {
		t.Fatalf("apikey add: %v %s", err, out)
	}
	for _, already := range []bool{false, true} {
		out, err := cli("", "apikey", "rm", "ops", "--json")
		var got struct {
			Revoked        bool   `json:"revoked"`
			AlreadyRevoked bool   `json:"already_revoked"`
			Name           string `json:"name"`
		}
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || !got.Revoked || got.AlreadyRevoked != already || got.Name != "ops" {
			t.Fatalf("apikey rm --json (already revoked: %v): %v %q", already, err, out)
		}
	}
}
