package main

import (
	"fmt"
	"os"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
)

// cmdAdminRecover creates an admin API key offline, with the database and
// its master key: the way back in after every admin credential is gone
// (as Vault's operator generate-root is). Whoever holds the database and
// the master key can read every secret anyway, so it grants nothing more.
func (e *env) cmdAdminRecover(c *command) runFunc {
	c.commandEnv("key-name") // init's --key-name names the first key
	c.describe("tokenkeeper admin recover [--database PATH_OR_URL] [--master-key-file PATH] [--json]",
		`Creates a new admin API key directly in the database, without a running
broker, and prints it once: the way back in when no admin API key or admin
user is left. It needs the database and its master key (the same as init),
and records the recovery in the audit log. A running broker accepts the new
key at once.`)
	var so storeOptions
	so.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	keyName := c.fs.String("key-name", "", "name of the new admin API key (default recovery-<UTC time>)")
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		if err := so.check(); err != nil {
			return err
		}
		if !isPostgres(so.database) {
			if _, err := os.Stat(so.database); err != nil {
				return fmt.Errorf("database %s: %w (admin recover works on an existing database; give its path with --database)", so.database, err)
			}
		}
		name := *keyName
		now := time.Now().UTC()
		if name == "" {
			name = "recovery-" + now.Format("20060102-150405")
		}
		if err := tokenkeeper.ValidateName(name); err != nil {
			return usagef("--key-name: %s", tokenkeeper.ErrorMessage(err))
		}
		store, err := e.openStore(&so, discardLogger(), false)
		if err != nil {
			return err
		}
		defer store.Close()
		key, rec := tkhttp.NewAPIKey(name, tokenkeeper.RoleAdmin, nil)
		if err := store.CreateAPIKey(e.ctx, rec); err != nil {
			return fmt.Errorf("create admin API key: %w", err)
		}
		if as, ok := store.(tokenkeeper.AuthStore); ok {
			host, _ := os.Hostname()
			if err := as.AddAudit(e.ctx, &tokenkeeper.AuditRecord{Time: now, Actor: "local:admin-recover", Action: "admin.recover",
				Target: name, Outcome: "ok", RemoteAddr: "local",
				Detail: fmt.Sprintf("admin API key %s… created offline with the master key on host %s", rec.Prefix, host)}); err != nil {
				// The key exists; say so rather than hide it behind an error.
				fmt.Fprintf(e.stderr, "warning: the recovery could not be recorded in the audit log: %v\n", err)
			}
		}
		if *asJSON {
			return printJSON(e.stdout, map[string]string{"database": redactURL(so.database), "admin_api_key": key, "name": name})
		}
		fmt.Fprintf(e.stdout, "Created admin API key %q in %s. It is shown only this once; keep it safe:\n\n    %s\n\n", name, redactURL(so.database), key)
		fmt.Fprintf(e.stdout, "Use it with: export TOKENKEEPER_API_KEY=%s\n", key)
		return nil
	}
}
