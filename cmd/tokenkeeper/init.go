package main

import (
	"fmt"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

func (e *env) cmdInit(c *command) runFunc {
	c.describe("tokenkeeper init [--database PATH_OR_URL] [--master-key-file PATH] [--json]",
		`Creates the database (and, on the embedded default, its master key file),
applies the migrations and prints the first admin API key, once. It refuses a
database that already has API keys.`)
	var so storeOptions
	var lo logOptions
	so.register(c)
	lo.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	keyName := c.fs.String("key-name", "admin", "name of the first admin API key")
	adminUser := c.fs.String("admin-user", "", "also create this admin user (asks for the password, or see --password-stdin)")
	pwStdin := c.fs.Bool("password-stdin", false, "read the admin user's password from standard input")
	c.envless("password-stdin")
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		logger, err := lo.logger(e.stderr)
		if err != nil {
			return err
		}
		if err := so.check(); err != nil {
			return err
		}
		if !isPostgres(so.database) {
			unlock, err := sqlite.Lock(so.database)
			if err != nil {
				return err
			}
			defer unlock()
		}
		var password string
		if *adminUser != "" {
			if err := auth.ValidateUsername(*adminUser); err != nil {
				return usagef("--admin-user: %s", tokenkeeper.ErrorMessage(err))
			}
			pw, err := e.readPassword(*pwStdin, "Password for "+*adminUser)
			if err != nil {
				return err
			}
			if err := auth.CheckPasswordPolicy(pw); err != nil {
				return usagef("%s", tokenkeeper.ErrorMessage(err))
			}
			password = pw
		} else if *pwStdin {
			return usagef("--password-stdin needs --admin-user")
		}
		store, err := e.openStore(&so, logger, true)
		if err != nil {
			return err
		}
		defer store.Close()
		key, err := ensureAdminKey(e.ctx, store, *keyName)
		if err != nil {
			return err
		}
		if key == "" {
			return fmt.Errorf("database %s is already initialized (it has API keys): create more with 'tokenkeeper apikey add'", redactURL(so.database))
		}
		if *adminUser != "" {
			as, ok := store.(tokenkeeper.AuthStore)
			if !ok {
				return fmt.Errorf("this database cannot hold users")
			}
			hash, err := auth.HashPassword(password)
			if err != nil {
				return err
			}
			if err := as.CreateUser(e.ctx, &tokenkeeper.User{Username: *adminUser, PasswordHash: hash, Role: tokenkeeper.RoleAdmin}); err != nil {
				return fmt.Errorf("create admin user: %w", err)
			}
		}
		if *asJSON {
			out := map[string]string{"database": redactURL(so.database), "admin_api_key": key}
			if *adminUser != "" {
				out["admin_user"] = *adminUser
			}
			return printJSON(e.stdout, out)
		}
		if *adminUser != "" {
			logger.Info("created the admin user", "user", *adminUser)
		}
		logger.Info("initialized the database", "database", redactURL(so.database))
		// The key goes to standard output, the one stream that is not logs.
		printAdminKey(e.stdout, key)
		return nil
	}
}
