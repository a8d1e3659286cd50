package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb syncBuffer
	// Bounded: a serve that should have refused to start stops here.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = run(ctx, append([]string{"tokenkeeper"}, args...), func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

// L5: every command that creates a SQLite file creates it 0600.
func TestMigrateCreatesPrivateDatabase(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"migrate", "--database", filepath.Join(dir, "m", "migrated.db")},
		{"init", "--database", filepath.Join(dir, "i", "inited.db")},
	} {
		if _, errs, err := runCmd(t, args...); err != nil {
			t.Fatalf("%s: %v %s", args[0], err, errs)
		}
		db := args[len(args)-1]
		for _, p := range []string{db, db + "-wal", db + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s created %s with mode %#o, want 0600", args[0], filepath.Base(p), perm)
			}
		}
		if fi, err := os.Stat(filepath.Dir(db)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s created the directory with mode %v", args[0], fi.Mode().Perm())
		}
	}
}

// L5: serve refuses a database file that the group or others can read,
// saying which chmod to run.
func TestServeRefusesReadableDatabase(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	db := filepath.Join(t.TempDir(), "tk.db")
	if _, errs, err := runCmd(t, "init", "--database", db); err != nil {
		t.Fatalf("init: %v %s", err, errs)
	}
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCmd(t, "serve", "--addr", "127.0.0.1:0", "--database", db)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+db) {
		t.Fatalf("serve on a 0644 database: %v", err)
	}
	// The key file too.
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(db+".key", 0o640); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCmd(t, "serve", "--addr", "127.0.0.1:0", "--database", db)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+db+".key") {
		t.Fatalf("serve with a 0640 key file: %v", err)
	}
}
