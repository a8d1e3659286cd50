package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
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
	if err != nil || !strings.Contains(out, `Ended 1 session of "ann"`) {
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

// --audit-read-window takes a duration from 1s to 1h; anything else is
// refused with an error naming the flag, before anything starts.
func TestAuditReadWindowFlag(t *testing.T) {
	for _, v := range []string{"0", "500ms", "-1m", "2h", "a minute"} {
		_, stderr, err := runCmd(t, "serve", "--database", filepath.Join(t.TempDir(), "tk.db"), "--audit-read-window", v)
		if err == nil || !strings.Contains(stderr+err.Error(), "audit-read-window") {
			t.Errorf("--audit-read-window %s: %v %s", v, err, stderr)
		}
	}
}

// TOKENKEEPER_AUDIT_READ_WINDOW sets the window of the token reads' audit
// records: with 1s, three reads make one record within a few seconds.
func TestAuditReadWindowServe(t *testing.T) {
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", "window-secret"))
	defer idp.Close()
	sb := startServe(t, map[string]string{"TOKENKEEPER_AUDIT_READ_WINDOW": "1s"}, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	var out, errb syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "credential", "add", "w", "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret-file", "-"},
		func(k string) string { return env[k] }, strings.NewReader("window-secret\n"), &out, &errb); err != nil {
		t.Fatalf("add: %v %s %s", err, out.String(), errb.String())
	}
	for range 3 {
		if st := apiDo(t, "GET", sb.url+"/v1/credentials/w/token", sb.key, nil, nil); st != http.StatusOK {
			t.Fatalf("token read: %d", st)
		}
	}
	waitFor(t, "the token.read record", 5*time.Second, func() string {
		var audit struct {
			Records []struct{ Detail string } `json:"records"`
		}
		apiDo(t, "GET", sb.url+"/v1/audit?action=token.read", sb.key, nil, &audit)
		if len(audit.Records) == 1 && strings.HasPrefix(audit.Records[0].Detail, "3 reads in ") {
			return "ok"
		}
		return ""
	})
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
		if out, errOut, err := cli("credential", "add", name, "--token-url", idp.TokenURL(), "--client-id", "app", "--client-secret-file", "-", "--param", "api_secret=param-secret-"+name); err != nil {
			t.Fatalf("add %s: %v %s %s", name, err, out, errOut)
		}
	}
	raw, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Someone with write access to the database moves good's sealed
	// secret param into bad's row (the client secret is the provider's,
	// which both share).
	if _, err := raw.Exec(`UPDATE credentials SET params = (SELECT params FROM credentials WHERE name = 'good') WHERE name = 'bad'`); err != nil {
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
	if logs := sb.stderr.String() + sb.stdout.String(); strings.Contains(logs, secret) || strings.Contains(logs, "param-secret-") {
		t.Fatal("a secret reached the broker's log")
	}
}

// Info (master-key rotation): keys rotate-master re-wraps the data keys
// under a new master key, offline, on SQLite and PostgreSQL; the old key
// stops opening the database, the new one opens every secret, and a wrong
// current key changes nothing.
func TestKeysRotateMaster(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dir := t.TempDir()
			var env map[string]string
			var oldKey []byte
			if dialect == "postgres" {
				env = pgEnv(t)
				k, err := seal.ParseMasterKey(env["TOKENKEEPER_MASTER_KEY"])
				if err != nil {
					t.Fatal(err)
				}
				oldKey = k
			} else {
				env = map[string]string{"TOKENKEEPER_DATABASE": filepath.Join(dir, "tk.db")}
			}
			cli := func(extra map[string]string, args ...string) (string, error) {
				var out, errb syncBuffer
				getenv := func(k string) string {
					if v, ok := extra[k]; ok {
						return v
					}
					return env[k]
				}
				err := run(context.Background(), append([]string{"tokenkeeper"}, args...), getenv, strings.NewReader(""), &out, &errb)
				return out.String() + errb.String(), err
			}
			if out, err := cli(nil, "init"); err != nil {
				t.Fatalf("init: %v %s", err, out)
			}
			if oldKey == nil {
				k, err := seal.ReadKeyFile(sqlite.KeyFilePath(env["TOKENKEEPER_DATABASE"]))
				if err != nil {
					t.Fatal(err)
				}
				oldKey = k
			}
			open := func(key []byte) (tokenkeeper.Store, error) {
				if dialect == "postgres" {
					return postgres.Open(context.Background(), env["TOKENKEEPER_DATABASE"], key)
				}
				return sqlite.Open(context.Background(), env["TOKENKEEPER_DATABASE"], key)
			}
			secret := "rotate-master-secret-" + randomString()
			st, err := open(oldKey)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.CreateCredential(context.Background(), &tokenkeeper.Credential{Name: "svc", TokenURL: "https://idp.example/token",
				GrantType: tokenkeeper.GrantClientCredentials, ClientID: "app", ClientSecret: secret, AuthStyle: tokenkeeper.AuthStyleHeader}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.RotateKey(context.Background()); err != nil { // two data keys
				t.Fatal(err)
			}
			st.Close()

			newKey := make([]byte, seal.KeySize)
			_, _ = rand.Read(newKey)
			newFile := filepath.Join(dir, "new.key")
			if err := os.WriteFile(newFile, []byte(seal.EncodeMasterKey(newKey)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			// A wrong current key is refused; nothing changes.
			wrong := make([]byte, seal.KeySize)
			_, _ = rand.Read(wrong)
			out, err := cli(map[string]string{"TOKENKEEPER_MASTER_KEY": seal.EncodeMasterKey(wrong)}, "keys", "rotate-master", "--new-master-key-file", newFile)
			if err == nil || !strings.Contains(err.Error(), "master key does not match") {
				t.Fatalf("rotate-master with a wrong current key: %v %s", err, out)
			}
			if st, err := open(oldKey); err != nil {
				t.Fatalf("after a refused rotation, the old key: %v", err)
			} else {
				st.Close()
			}
			if out, err := cli(nil, "keys", "rotate-master"); err == nil || !strings.Contains(err.Error()+out, "new master key is required") {
				t.Fatalf("rotate-master without a new key: %v %s", err, out)
			}

			out, err = cli(nil, "keys", "rotate-master", "--new-master-key-file", newFile)
			if err != nil || !strings.Contains(out, "Re-wrapped 2 data keys") || !strings.Contains(out, "restart every replica") {
				t.Fatalf("rotate-master: %v %s", err, out)
			}
			if strings.Contains(out, seal.EncodeMasterKey(newKey)) || strings.Contains(out, seal.EncodeMasterKey(oldKey)) {
				t.Fatal("rotate-master printed a master key")
			}
			if _, err := open(oldKey); !errors.Is(err, seal.ErrMasterKeyMismatch) {
				t.Fatalf("the old key after rotation: %v, want a mismatch", err)
			}
			st, err = open(newKey)
			if err != nil {
				t.Fatalf("the new key: %v", err)
			}
			defer st.Close()
			c, err := st.Credential(context.Background(), "svc")
			if err != nil || c.ClientSecret != secret {
				t.Fatalf("the secret under the new key: %v", err)
			}
		})
	}
}

// --vacuum-interval takes 0 (never) or a duration of at least 1s; anything
// else is refused with an error naming the flag, before anything starts.
func TestVacuumIntervalFlag(t *testing.T) {
	for _, v := range []string{"500ms", "-1s", "often"} {
		_, stderr, err := runCmd(t, "serve", "--database", filepath.Join(t.TempDir(), "tk.db"), "--vacuum-interval", v)
		if err == nil || !strings.Contains(stderr+err.Error(), "vacuum-interval") {
			t.Errorf("--vacuum-interval %s: %v %s", v, err, stderr)
		}
	}
	// The flag's 0 is never; brokers that take no flags (bench, demo)
	// keep the refresher's default (the zero value).
	for v, want := range map[string]time.Duration{"0": -1, "1m": time.Minute, "": refresh.DefaultVacuumInterval} {
		var o brokerOptions
		c := &command{fs: pflag.NewFlagSet("serve", pflag.ContinueOnError)}
		o.register(c)
		var args []string
		if v != "" {
			args = []string{"--vacuum-interval", v}
		}
		if err := c.fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil || o.vacuumInterval != want {
			t.Errorf("--vacuum-interval %q: %v, %s; want %s", v, err, o.vacuumInterval, want)
		}
	}
	if (brokerOptions{}).vacuumInterval != 0 {
		t.Error("the zero brokerOptions must leave the refresher's default")
	}
}
