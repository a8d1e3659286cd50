package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --database: PostgreSQL in all its spellings, and a SQLite path that is
// refused, naming the problem, before anything is created.
func TestDatabaseFlag(t *testing.T) {
	for _, db := range []string{
		"postgres://u@127.0.0.1:1/x", "postgresql://u@127.0.0.1:1/x",
		"host=127.0.0.1 dbname=tokenkeeper", "dbname=tokenkeeper user=tk", " host=db port=5432",
	} {
		if !isPostgres(db) {
			t.Errorf("%q is not taken for PostgreSQL", db)
		}
	}
	for _, db := range []string{"tokenkeeper.db", "/var/lib/tk/host=1.db", "./a=b.db", "data/tk.db"} {
		if isPostgres(db) {
			t.Errorf("%q is taken for PostgreSQL", db)
		}
	}
	for in, want := range map[string]string{
		"host=db password=hunter2 dbname=x":    "host=db password=**** dbname=x",
		"host=db password='a b\\' c' dbname=x": "host=db password=**** dbname=x",
		"postgres://u:hunter2@db/x":            "postgres://u:****@db/x",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	// A keyword/value string is PostgreSQL: it asks for the shared master
	// key and creates no file named after it.
	_, errs, err := runCmd(t, "init", "--database", "host=127.0.0.1 port=1 dbname=nothing")
	if err == nil || !strings.Contains(err.Error()+errs, "PostgreSQL database needs a master key") {
		t.Fatalf("init with a keyword/value string: %v %s", err, errs)
	}
	if _, err := os.Stat("host=127.0.0.1 port=1 dbname=nothing.key"); err == nil {
		t.Fatal("a key file was created for a connection string")
	}

	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, []byte("these are my notes, not a database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(dir, "ro.db")
	if _, errs, err := runCmd(t, "init", "--database", readOnly); err != nil {
		t.Fatalf("init: %v %s", err, errs)
	}
	if err := os.Chmod(readOnly, 0o400); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.db")
	if _, errs, err := runCmd(t, "init", "--database", corrupt); err != nil {
		t.Fatalf("init: %v %s", err, errs)
	}
	data, err := os.ReadFile(corrupt)
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < len(data); i++ { // keep the header, wreck the rest
		data[i] ^= 0x5a
	}
	if err := os.WriteFile(corrupt, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{corrupt + "-wal", corrupt + "-shm"} {
		os.Remove(f)
	}

	cases := []struct {
		name, database, want string
	}{
		{"empty", "", "--database is empty"},
		{"missing directory", filepath.Join(dir, "typo", "tk.db"), "does not exist"},
		{"not a database", notDB, "is not a SQLite database"},
		{"read-only", readOnly, "read-only"},
		{"corrupt", corrupt, "is corrupt"},
	}
	for _, tc := range cases {
		for _, cmd := range []string{"serve", "init", "migrate", "admin recover"} {
			args := append(strings.Fields(cmd), "--database", tc.database)
			if cmd == "serve" {
				args = append(args, "--addr", "127.0.0.1:0")
			}
			if tc.name == "corrupt" && cmd == "init" {
				continue // init reads the key file first; serve and migrate open the database
			}
			_, errs, err := runCmd(t, args...)
			if err == nil || !strings.Contains(err.Error()+errs, tc.want) {
				t.Errorf("%s, %s: %v %s; want %q", tc.name, cmd, err, errs, tc.want)
				continue
			}
			if strings.Contains(err.Error(), "database unavailable") {
				t.Errorf("%s, %s: %v: a problem of the file is not an outage", tc.name, cmd, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); err == nil {
		t.Error("a mistyped directory was created")
	}
	for _, f := range []string{".key", ".lock"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("an empty --database created %s", f)
		}
	}
}
