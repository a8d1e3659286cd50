package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// masterKeyRotator is what the stores of both dialects offer for
// rotate-master (sqlstore.Store.RotateMasterKey).
type masterKeyRotator interface {
	RotateMasterKey(ctx context.Context, newMaster []byte) (int, error)
}

func (e *env) cmdKeysRotateMaster(c *command) runFunc {
	c.describe("tokenkeeper keys rotate-master [--database PATH_OR_URL] [--master-key-file OLD] --new-master-key-file NEW",
		`Re-wraps the data keys under a new master key, in one transaction, working on
the database directly (like init and migrate; no server needed). The current
master key comes from where serve reads it ($TOKENKEEPER_MASTER_KEY,
--master-key-file, or the SQLite database path + .key); the new one from
--new-master-key-file or $TOKENKEEPER_NEW_MASTER_KEY (base64 of 32 random bytes,
e.g. from 'openssl rand -base64 32'). A current key that does not match is
refused before anything changes. Then put the new key where serve reads it and
restart every replica: until then they hold the old one (stop SQLite's serve
first; on PostgreSQL, do not run 'keys rotate' before the replicas restart).`)
	var so storeOptions
	so.register(c)
	newFile := c.fs.String("new-master-key-file", "", "file holding the new base64 master key (mode 0600); $TOKENKEEPER_NEW_MASTER_KEY holds the key itself")
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		newKey, err := e.newMasterKey(*newFile)
		if err != nil {
			return err
		}
		if !isPostgres(so.database) {
			// No serve may keep using the old key on this file.
			unlock, err := sqlite.Lock(so.database)
			if err != nil {
				return err
			}
			defer unlock()
		}
		store, err := e.openStore(&so, discardLogger(), false)
		if err != nil {
			return fmt.Errorf("rotate master key: the current master key: %w", err)
		}
		defer store.Close()
		r, ok := store.(masterKeyRotator)
		if !ok {
			return fmt.Errorf("rotate master key: this database does not support it")
		}
		n, err := r.RotateMasterKey(e.ctx, newKey)
		if err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, map[string]any{"rewrapped_data_keys": n})
		}
		where := "$TOKENKEEPER_MASTER_KEY or the file --master-key-file names"
		if !isPostgres(so.database) && so.masterKeyFile == "" && e.getenv("TOKENKEEPER_MASTER_KEY") == "" {
			where = sqlite.KeyFilePath(so.database)
		}
		fmt.Fprintf(e.stdout, "Re-wrapped %d data keys under the new master key.\n", n)
		fmt.Fprintf(e.stdout, "Now replace the master key in %s with the new one, and restart every replica: the old key no longer opens this database.\n", where)
		return nil
	}
}

// newMasterKey reads the new master key of rotate-master.
func (e *env) newMasterKey(file string) ([]byte, error) {
	env := strings.TrimSpace(e.getenv("TOKENKEEPER_NEW_MASTER_KEY"))
	switch {
	case env != "" && file != "":
		return nil, usagef("both $TOKENKEEPER_NEW_MASTER_KEY and --new-master-key-file are set: use one")
	case env != "":
		key, err := seal.ParseMasterKey(env)
		if err != nil {
			return nil, fmt.Errorf("read $TOKENKEEPER_NEW_MASTER_KEY: %w", err)
		}
		return key, nil
	case file != "":
		return seal.ReadKeyFile(file)
	}
	return nil, usagef("the new master key is required: --new-master-key-file PATH or $TOKENKEEPER_NEW_MASTER_KEY")
}
