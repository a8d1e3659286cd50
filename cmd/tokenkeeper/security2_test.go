package main

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// M2: tokenkeeper user revoke-sessions NAME ends the user's sessions.
func TestUserRevokeSessionsCommand(t *testing.T) {
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := cli("ann's long password\n", "user", "add", "ann", "--role", "viewer", "--password-stdin"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	if st := apiDo(t, "POST", sb.url+"/v1/auth/login", "", map[string]string{"username": "ann", "password": "ann's long password"}, &tokens); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	if st := apiDo(t, "GET", sb.url+"/v1/auth/whoami", tokens.AccessToken, nil, nil); st != http.StatusOK {
		t.Fatalf("whoami before: %d", st)
	}
	out, err := cli("", "user", "revoke-sessions", "ann")
	if err != nil || !strings.Contains(out, `Ended 1 sessions of "ann"`) {
		t.Fatalf("revoke-sessions: %v %s", err, out)
	}
	if st := apiDo(t, "GET", sb.url+"/v1/auth/whoami", tokens.AccessToken, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("whoami after revoke-sessions: %d", st)
	}
	if out, err := cli("", "user", "revoke-sessions", "nobody"); err == nil || !strings.Contains(err.Error()+out, "not found") {
		t.Fatalf("unknown user: %v %s", err, out)
	}
}

// M1: --audit-retention takes a duration of at least an hour, or 0.
func TestAuditRetentionFlag(t *testing.T) {
	for _, v := range []string{"-1h", "30m", "ninety days"} {
		_, stderr, err := runCmd(t, "serve", "--database", filepath.Join(t.TempDir(), "tk.db"), "--audit-retention", v)
		if err == nil || !strings.Contains(stderr+err.Error(), "audit-retention") {
			t.Errorf("--audit-retention %s: %v %s", v, err, stderr)
		}
	}
}

// Info (tampered row): a credential whose sealed fields do not open is
// skipped by GET /v1/credentials and named in "unreadable", instead of a
// 500; the CLI list shows the others and a warning line.
func TestTamperedRowSkippedInList(t *testing.T) {
	secret := "tamper-client-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", secret))
	defer idp.Close()
	dbPath := filepath.Join(t.TempDir(), "tk.db")
	sb := startServe(t, nil, "--database", dbPath)
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(args ...string) (stdout, stderr string, err error) {
		var out, errb syncBuffer
		err = run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(secret+"\n"), &out, &errb)
		return out.String(), errb.String(), err
	}
	for _, name := range []string{"good", "bad"} {
		if out, errOut, err := cli("credential", "add", "--name", name, "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret-file", "-"); err != nil {
			t.Fatalf("add %s: %v %s %s", name, err, out, errOut)
		}
	}
	raw, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Someone with write access to the database moves good's sealed
	// client secret into bad's row.
	if _, err := raw.Exec(`UPDATE credentials SET client_secret = (SELECT client_secret FROM credentials WHERE name = 'good') WHERE name = 'bad'`); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Credentials []struct{ Name string } `json:"credentials"`
		Unreadable  []string                `json:"unreadable"`
	}
	if st := apiDo(t, "GET", sb.url+"/v1/credentials", sb.key, nil, &list); st != http.StatusOK {
		t.Fatalf("GET /v1/credentials with a tampered row: %d", st)
	}
	if len(list.Credentials) != 1 || list.Credentials[0].Name != "good" || len(list.Unreadable) != 1 || list.Unreadable[0] != "bad" {
		t.Fatalf("list = %+v", list)
	}
	out, errOut, err := cli("credential", "list")
	if err != nil || !strings.Contains(out, "good") || strings.Contains(out, "bad") ||
		!strings.Contains(errOut, "warning: 1 credentials skipped") || !strings.Contains(errOut, "bad") {
		t.Fatalf("credential list: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	if strings.Contains(sb.stderr.String()+sb.stdout.String(), secret) {
		t.Fatal("the client secret reached the broker's log")
	}
}
