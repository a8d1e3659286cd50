package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
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
