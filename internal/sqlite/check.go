package sqlite

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tokenkeeper/tokenkeeper"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// CheckFile checks the database path before anything is created: it must
// not be empty, its directory must exist (a mistyped directory must not
// become a new, empty database: the CLI calls CheckFile before Open, which
// would create it), and an existing file must be a writable SQLite
// database. Each error names the problem and the path.
func CheckFile(path string) error {
	if path == "" {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "the database path is empty: give a SQLite file path or a PostgreSQL URL")
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the directory %s of the database %s does not exist: create it first (tokenkeeper does not create directories, so that a mistyped path does not become a new database)", dir, path)
	case err != nil:
		return fmt.Errorf("database directory %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%s, the directory of the database %s, is not a directory", dir, path)
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("database %s is not a regular file", path)
	}
	return checkExisting(path)
}

// checkExisting checks an existing database file: writable, and a SQLite
// database. A missing file (a new database) passes.
func checkExisting(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
		return nil // a new database, or one SQLite will refuse by itself
	} else if err != nil {
		return fmt.Errorf("database file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err == nil && fi.Mode().Perm()&0o200 == 0 {
		// Writable only because we are root: the mode says read-only.
		f.Close()
		err = fs.ErrPermission
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("database file %s is read-only for this user (mode %v): the broker writes to it; fix its mode or owner", path, fi.Mode().Perm())
	} else if err != nil {
		return fmt.Errorf("open database file %s: %w", path, err)
	}
	defer f.Close()
	if fi.Size() == 0 {
		return nil // created empty, e.g. by a previous run that stopped early
	}
	head := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, sqliteHeader) {
		return fmt.Errorf("%s is not a SQLite database (it does not start with the SQLite header): check --database", path)
	}
	return nil
}

// describeOpenError names the problem of an error met while opening the
// database at path, when it is one of the file itself (corrupt, read-only,
// not a database) rather than an outage.
func describeOpenError(path string, err error) error {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	// The message quotes SQLite's own words, not the "unavailable" that
	// the store says of an outage.
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CORRUPT:
		return fmt.Errorf("database file %s is corrupt (%s): restore it from a backup", path, se.Error())
	case sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%s is not a SQLite database (%s): check --database", path, se.Error())
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM:
		return fmt.Errorf("database file %s, or its directory %s, is read-only for this user (%s): the broker writes to it and beside it (-wal, -shm)", path, filepath.Dir(path), se.Error())
	}
	return err
}
