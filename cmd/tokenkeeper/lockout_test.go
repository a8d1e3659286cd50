package main

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cliEnv runs CLI commands through run with the given environment.
func cliEnv(env map[string]string) func(stdin string, args ...string) (string, error) {
	return func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err := run(ctx, append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		return out.String() + errb.String(), err
	}
}

// No lock-out: the last admin key cannot be revoked (API 409, CLI message),
// and after a forced lock-out (no admin left in the database) admin recover gets back in and is audited.
func TestNoLockOutAndAdminRecover(t *testing.T) {
	db := filepath.Join(t.TempDir(), "tk.db")
	sb := startServe(t, nil, "--database", db)
	cli := cliEnv(map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key})

	// The API refuses with 409 and the reason.
	var p struct{ Detail, Code string }
	if st := apiDo(t, "DELETE", sb.url+"/v1/apikeys/admin", sb.key, nil, &p); st != http.StatusConflict || !strings.Contains(p.Detail, "last admin credential") {
		t.Fatalf("revoke the last admin key over the API: %d %+v", st, p)
	}
	// So does the CLI, exiting non-zero.
	out, err := cli("", "apikey", "revoke", "admin")
	if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error()+out, "last admin credential") || !strings.Contains(err.Error()+out, "admin recover") {
		t.Fatalf("apikey revoke admin: %v %s", err, out)
	}
	if out, err := cli("", "credential", "list"); err != nil {
		t.Fatalf("the refused revocation locked us out: %v %s", err, out)
	}
	// With a second admin key the first may go; revoking it twice says so.
	if out, err := cli("", "apikey", "create", "ops", "--role", "admin"); err != nil {
		t.Fatalf("apikey create: %v %s", err, out)
	}
	if out, err := cli("", "apikey", "revoke", "ops"); err != nil || !strings.Contains(out, "Revoked") {
		t.Fatalf("revoke a second admin key: %v %s", err, out)
	}
	if out, err := cli("", "apikey", "revoke", "ops"); err != nil || !strings.Contains(out, "already revoked") {
		t.Fatalf("revoke twice: %v %s", err, out)
	}
	// The name of a revoked key can be given to a new one.
	if out, err := cli("", "apikey", "add", "ops", "--role", "admin"); err != nil {
		t.Fatalf("reuse a revoked key's name: %v %s", err, out)
	}
	if out, err := cli("", "apikey", "rm", "ops"); err != nil || !strings.Contains(out, "Revoked") {
		t.Fatalf("revoke the new key by its reused name: %v %s", err, out)
	}
	// The last admin user cannot be removed while no key exists either:
	// the guard counts users and keys together.
	if out, err := cli("pw-of-carol-long\n", "user", "add", "carol", "--role", "admin", "--password-stdin"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	if out, err := cli("", "user", "rm", "carol"); err != nil {
		t.Fatalf("remove an admin user while an admin key exists: %v %s", err, out)
	}
	sb0key := sb.key
	sb.stop(t)

	// A forced lock-out behind the broker's back: every API key demoted to
	// a consumer, every user deleted. (Deleting the keys would not do: serve
	// creates a first admin key in a database without any.)
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`UPDATE api_keys SET role = 'consumer', credentials = '["none"]'`, `DELETE FROM users`} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	sb = startServe(t, nil, "--database", db)
	if sb.key != "" {
		t.Fatal("serve created a new admin key on an initialized database")
	}
	if st := apiDo(t, "GET", sb.url+"/v1/credentials", sb0key, nil, nil); st != http.StatusForbidden {
		t.Fatalf("locked out: %d", st)
	}
	// admin recover, offline tooling on the same database while it serves.
	var out2, errb syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "admin", "recover", "--database", db}, func(string) string { return "" }, strings.NewReader(""), &out2, &errb); err != nil {
		t.Fatalf("admin recover: %v %s", err, errb.String())
	}
	m := keyRE.FindStringSubmatch(out2.String())
	if m == nil {
		t.Fatalf("admin recover printed no key: %s", out2.String())
	}
	cli = cliEnv(map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": m[1]})
	if out, err := cli("", "credential", "list"); err != nil {
		t.Fatalf("the recovered key does not work: %v %s", err, out)
	}
	out, err = cli("", "audit", "--action", "admin.recover")
	// The table shows the whole detail (no truncated causes) and a dated,
	// zoned time.
	if err != nil || !strings.Contains(out, "admin.recover") || !strings.Contains(out, "local:admin-recover") ||
		!strings.Contains(out, "created offline with the master key on host") || !datedRE.MatchString(out) {
		t.Fatalf("the recovery is not in the audit log: %v %s", err, out)
	}
	if strings.Contains(out, m[1]) {
		t.Fatal("the audit log holds the recovered key")
	}
	// A database that does not exist is not created by recover.
	missing := filepath.Join(t.TempDir(), "none.db")
	if _, errs, err := runCmd(t, "admin", "recover", "--database", missing); err == nil || !strings.Contains(err.Error()+errs, "no such file") {
		t.Fatalf("recover on a missing database: %v %s", err, errs)
	}
}
