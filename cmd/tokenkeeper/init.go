package main

import (
	"fmt"

	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

func (e *env) cmdInit(args []string) error {
	c := newCommand(e.stderr, "tokenkeeper init [--database PATH_OR_URL] [--master-key-file PATH] [--json]",
		`Creates the database (and, on the embedded default, its master key file),
applies the migrations and prints the first admin API key, once. It refuses a
database that already has API keys.`)
	var so storeOptions
	so.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	keyName := c.fs.String("key-name", "admin", "name of the first admin API key")
	if err := c.parse(args, e.getenv); err != nil {
		return err
	}
	if _, err := c.args(0, "no arguments"); err != nil {
		return err
	}
	if !isPostgres(so.database) {
		unlock, err := sqlite.Lock(so.database)
		if err != nil {
			return err
		}
		defer unlock()
	}
	store, err := e.openStore(&so, discardLogger(), true)
	if err != nil {
		return err
	}
	defer store.Close()
	key, err := ensureAdminKey(e.ctx, store, *keyName)
	if err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("database %s is already initialized (it has API keys): create more with 'tokenkeeper apikey create'", redactURL(so.database))
	}
	if *asJSON {
		return printJSON(e.stdout, map[string]string{"database": redactURL(so.database), "admin_api_key": key})
	}
	fmt.Fprintf(e.stdout, "Initialized %s.\n", redactURL(so.database))
	printAdminKey(e.stdout, key)
	return nil
}
