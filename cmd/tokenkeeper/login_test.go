package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tokenkeeper login, then client commands without an API key: they keep
// working past the access token's lifetime (the session is refreshed and
// its refresh token rotated), a sensitive command on a session that is no
// longer fresh asks for the password again, TOKENKEEPER_API_KEY wins, and
// logout ends it.
func TestLoginSession(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: waits 11 s for a 10 s access token to expire")
	}
	dir := t.TempDir()
	sb := startServe(t, nil, "--database", filepath.Join(dir, "tk.db"), "--access-token-lifetime", "10s")
	password := "alice-password-" + randomString()
	if st := apiDo(t, "POST", sb.url+"/v1/users", sb.key, map[string]string{"username": "alice", "password": password, "role": "admin"}, nil); st != http.StatusCreated {
		t.Fatalf("create alice: %d", st)
	}
	config := filepath.Join(dir, "config")
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "XDG_CONFIG_HOME": config, "HOME": dir}
	cli := cliEnv(env)

	if out, err := cli("", "credential", "list"); err == nil || !strings.Contains(err.Error(), "tokenkeeper login") {
		t.Fatalf("without a key or a login: %v %s", err, out)
	}
	if out, err := cli("wrong password\n", "login", "alice", "--password-stdin"); err == nil || exitCode(err) == 0 {
		t.Fatalf("login with a wrong password: %s", out)
	}
	if out, err := cli(password+"\n", "login", "alice", "--password-stdin"); err != nil {
		t.Fatalf("login: %v %s", err, out)
	}
	file := filepath.Join(config, "tokenkeeper", "sessions.json")
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sessions file: %v %v", err, fi)
	}
	if di, err := os.Stat(filepath.Dir(file)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("sessions directory: %v %v", err, di)
	}
	readSession := func() *session {
		s, err := (&sessionStore{dir: filepath.Dir(file)}).get(sb.url)
		if err != nil || s == nil {
			t.Fatalf("read session: %v %v", s, err)
		}
		return s
	}
	first := readSession()
	if data, _ := os.ReadFile(file); strings.Contains(string(data), password) {
		t.Fatal("the sessions file holds the password")
	}
	if out, err := cli("", "credential", "list"); err != nil {
		t.Fatalf("credential list after login: %v %s", err, out)
	}
	if out, err := cli("", "whoami"); err != nil || !strings.Contains(out, "user alice") || !strings.Contains(out, "login session") || !strings.Contains(out, "fresh") {
		t.Fatalf("whoami: %v %s", err, out)
	}

	// Past the access token's lifetime.
	time.Sleep(11 * time.Second)
	if out, err := cli("", "credential", "list"); err != nil {
		t.Fatalf("credential list past the access token's lifetime: %v %s", err, out)
	}
	second := readSession()
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("the session was not refreshed and rotated")
	}
	// The refreshed session is not fresh: a sensitive command asks again.
	if out, err := cli("", "apikey", "create", "ops", "--role", "admin"); err == nil || !strings.Contains(err.Error(), "--login-password-stdin") {
		t.Fatalf("a sensitive command without a terminal: %v %s", err, out)
	}
	if out, err := cli(password+"\n", "apikey", "create", "ops", "--role", "admin", "--login-password-stdin"); err != nil {
		t.Fatalf("a sensitive command with --login-password-stdin: %v %s", err, out)
	}
	if out, err := cli("", "whoami"); err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("whoami after a fresh login: %v %s", err, out)
	}
	// An API key wins over the session.
	withKey := cliEnv(map[string]string{"TOKENKEEPER_SERVER": sb.url, "XDG_CONFIG_HOME": config, "HOME": dir, "TOKENKEEPER_API_KEY": sb.key})
	if out, err := withKey("", "whoami"); err != nil || !strings.Contains(out, "apikey admin") {
		t.Fatalf("whoami with an API key: %v %s", err, out)
	}
	// logout revokes the session at the broker and forgets it.
	last := readSession()
	if out, err := cli("", "logout"); err != nil || !strings.Contains(out, "Logged out") {
		t.Fatalf("logout: %v %s", err, out)
	}
	var ans loginAnswer
	if err := postJSON(context.Background(), http.DefaultClient, sb.url+"/v1/auth/refresh", map[string]string{"refresh_token": last.RefreshToken}, &ans); err == nil {
		t.Fatal("the refresh token works after logout")
	}
	if out, err := cli("", "credential", "list"); err == nil || !strings.Contains(err.Error(), "tokenkeeper login") {
		t.Fatalf("after logout: %v %s", err, out)
	}
}
