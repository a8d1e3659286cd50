package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// defaultDatabase is the embedded default: a SQLite file in the working
// directory.
const defaultDatabase = "tokenkeeper.db"

func isPostgres(database string) bool { return postgres.IsURL(database) }

// storeOptions are the flags that select and open a database.
type storeOptions struct {
	database      string
	masterKeyFile string
}

func (o *storeOptions) register(c *command) {
	c.fs.StringVar(&o.database, "database", defaultDatabase, "SQLite file path (its directory must exist), or PostgreSQL: a postgres:// or postgresql:// URL or a host=... dbname=... connection string")
	c.fs.StringVar(&o.masterKeyFile, "master-key-file", "", "file holding the base64 master key (default for SQLite: the database path + .key, created on first start); $TOKENKEEPER_MASTER_KEY holds the key itself")
}

// check refuses a --database that cannot be right before anything is
// created: an empty one, a SQLite path whose directory does not exist, or
// an existing file that is read-only or not a SQLite database.
func (o *storeOptions) check() error {
	if strings.TrimSpace(o.database) == "" {
		return usagef("--database is empty: give a SQLite file path or a PostgreSQL URL (postgres://... or host=... dbname=...)")
	}
	if isPostgres(o.database) {
		return nil
	}
	return sqlite.CheckFile(o.database)
}

// masterKey finds the master key: $TOKENKEEPER_MASTER_KEY, --master-key-file,
// or for a new embedded SQLite database a generated key file beside it.
// created reports that a key file was generated.
func (e *env) masterKey(o *storeOptions, mayCreate bool) (key []byte, created string, err error) {
	if err := o.check(); err != nil {
		return nil, "", err
	}
	if v := e.getenv("TOKENKEEPER_MASTER_KEY"); v != "" {
		if o.masterKeyFile != "" {
			return nil, "", usagef("both $TOKENKEEPER_MASTER_KEY and --master-key-file are set: use one")
		}
		key, err := seal.ParseMasterKey(strings.TrimSpace(v))
		if err != nil {
			return nil, "", fmt.Errorf("read $TOKENKEEPER_MASTER_KEY: %w", err)
		}
		return key, "", nil
	}
	if o.masterKeyFile != "" {
		key, err := seal.ReadKeyFile(o.masterKeyFile)
		return key, "", err
	}
	if isPostgres(o.database) {
		return nil, "", usagef("a PostgreSQL database needs a master key shared by every replica: set $TOKENKEEPER_MASTER_KEY (base64 of 32 random bytes, e.g. from 'openssl rand -base64 32') or --master-key-file")
	}
	path := sqlite.KeyFilePath(o.database)
	key, err = seal.ReadKeyFile(path)
	if err == nil {
		return key, "", nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", err
	}
	if _, serr := os.Stat(o.database); serr == nil {
		return nil, "", fmt.Errorf("database %s exists but its master key file %s is missing: restore the key file or pass --master-key-file", o.database, path)
	}
	if !mayCreate {
		return nil, "", fmt.Errorf("database %s does not exist (run 'tokenkeeper init' or 'tokenkeeper serve' first)", o.database)
	}
	if err := sqlite.EnsureDir(o.database); err != nil {
		return nil, "", err
	}
	key, err = seal.CreateKeyFile(path)
	if err != nil {
		return nil, "", err
	}
	return key, path, nil
}

// openStore opens the selected database, creating the embedded default and
// its master key if mayCreate.
func (e *env) openStore(o *storeOptions, logger *slog.Logger, mayCreate bool) (tokenkeeper.Store, error) {
	key, created, err := e.masterKey(o, mayCreate)
	if err != nil {
		return nil, err
	}
	if created != "" {
		logger.Warn("Generated a master key (mode 0600). Back it up: without it the secrets in the database cannot be opened.", "path", created, "database", redactURL(o.database))
	}
	if isPostgres(o.database) {
		db, err := postgres.Open(e.ctx, o.database, key, postgres.WithLogger(logger))
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL database: %w", err)
		}
		return db, nil
	}
	if err := createPrivate(o.database); err != nil {
		return nil, err
	}
	db, err := sqlite.Open(e.ctx, o.database, key, sqlite.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", o.database, err)
	}
	return db, nil
}

func (e *env) cmdMigrate(c *command) runFunc {
	c.describe("tokenkeeper migrate [--database PATH_OR_URL] [--json]",
		"Applies the pending schema migrations (serve also applies them at start).")
	var o storeOptions
	var lo logOptions
	c.fs.StringVar(&o.database, "database", defaultDatabase, "SQLite file path (its directory must exist), or PostgreSQL: a postgres:// or postgresql:// URL or a host=... dbname=... connection string")
	asJSON := c.fs.Bool("json", false, "print JSON on standard output instead of log lines on standard error")
	lo.register(c)
	return func(args []string) error {
		logger, err := lo.logger(e.stderr)
		if err != nil {
			return err
		}
		if err := o.check(); err != nil {
			return err
		}
		var applied []string
		if isPostgres(o.database) {
			applied, err = postgres.Migrate(e.ctx, o.database)
		} else {
			if err := createPrivate(o.database); err != nil {
				return err
			}
			applied, err = sqlite.Migrate(e.ctx, o.database)
		}
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if *asJSON {
			if applied == nil {
				applied = []string{}
			}
			return printJSON(e.stdout, map[string]any{"applied": applied})
		}
		if len(applied) == 0 {
			logger.Info("the schema is up to date", "database", redactURL(o.database))
		}
		for _, m := range applied {
			logger.Info("applied database migration", "name", m, "database", redactURL(o.database))
		}
		return nil
	}
}

// createPrivate creates the SQLite database file at path, if it does not
// exist, private to its owner (0600) like its key, in a directory that must
// exist: SQLite gives the -wal and -shm files the same mode. Every command
// that may create a database calls it before SQLite opens the file.
func createPrivate(path string) error {
	if err := sqlite.EnsureDir(path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return fmt.Errorf("create database file: %w", err)
}

// checkPrivate refuses a database file (and its -wal and -shm files) that
// the group or others may access, naming the chmod to run. The master key
// file gets the same check where it is read.
func checkPrivate(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			continue // absent: created private
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("database file %s has mode %#o: the group or others can read the sealed secrets and the API key hashes; run `chmod 600 %s` (and the same for its -wal and -shm files)", p, perm, p)
		}
	}
	return nil
}
